"""Trajectory Consistency Distillation sampling (TCD, arXiv 2402.19159) in ComfyUI's sigma space.

TCD's "strategic stochastic sampling" takes each step in two moves. With gamma (eta) in
[0, 1] and the next noise level t_next:
  1. jump deterministically (DDIM-style) from the denoised estimate to the lower level
     s = (1 - gamma) * t_next, reusing the model's own noise estimate;
  2. noise forward again from s to t_next with fresh noise.
gamma = 0 is plain DDIM (identical to euler in sigma space); gamma = 1 re-noises from
(almost) the clean estimate, like LCM. Written from the paper's update rule; diffusers'
TCDScheduler.step is the reference it was checked against.

Data are written as x = a(sigma) * x0 + sigma * eps, where a = 1 in ComfyUI's
k-diffusion space for discrete (eps/v) models and a = 1 - sigma for flow (CONST) models.

Registering: ComfyUI's KSampler resolves a sampler name N by looking up
`comfy.k_diffusion.sampling.sample_N` (comfy.samplers.ksampler) and offers the names in
`comfy.samplers.KSAMPLER_NAMES` / `SAMPLER_NAMES` (`KSampler.SAMPLERS` is the same list).
register_tcd_sampler() adds "tcd" there, once; it is the only change to ComfyUI's shared
state this pack makes. A workflow saved with sampler "tcd" needs FewStep installed to load.
"""

from __future__ import annotations

import logging

import torch

from ..presets.registry import DEFAULT_TCD_ETA

TCD_NAME = "tcd"
# transformer_options key a FewStep preset uses to carry its eta to KSampler's "tcd".
ETA_OPTION = "fewstep_tcd_eta"

log = logging.getLogger("FewStep")


def _model_sampling(model):
    # `model` is KSamplerX0Inpaint -> CFGGuider -> BaseModel, as in core sample_lcm.
    return model.inner_model.inner_model.model_sampling


def _signal_scale(model_sampling, sigma: torch.Tensor) -> torch.Tensor:
    """a(sigma) in x = a * x0 + sigma * eps: 1 for discrete models, 1 - sigma for flow models."""
    import comfy.model_sampling

    if isinstance(model_sampling, comfy.model_sampling.CONST):
        return 1.0 - sigma
    return torch.ones_like(sigma)


def _is_discrete(model_sampling) -> bool:
    import comfy.model_sampling

    return isinstance(model_sampling, comfy.model_sampling.ModelSamplingDiscrete)


def _eta_from(extra_args: dict, eta: float | None) -> float:
    if eta is None:
        options = extra_args.get("model_options", {}).get("transformer_options", {})
        eta = options.get(ETA_OPTION, DEFAULT_TCD_ETA)
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"TCD eta (gamma) must be between 0 and 1, got {eta}")
    return eta


@torch.no_grad()
def sample_tcd(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None, eta=None):
    """k-diffusion style TCD sampler. eta None: the model's preset eta, else 0.3."""
    from comfy.k_diffusion.sampling import default_noise_sampler
    from tqdm.auto import trange

    extra_args = {} if extra_args is None else extra_args
    gamma = _eta_from(extra_args, eta)
    seed = extra_args.get("seed", None)
    noise_sampler = default_noise_sampler(x, seed=seed) if noise_sampler is None else noise_sampler
    ms = _model_sampling(model)
    s_in = x.new_ones([x.shape[0]])

    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})
        if sigma_next == 0:
            x = denoised
            continue
        eps = (x - _signal_scale(ms, sigma) * denoised) / sigma
        if gamma == 0:
            sigma_s = sigma_next
        else:
            t_s = (1.0 - gamma) * ms.timestep(sigma_next.reshape(1)).float()
            if _is_discrete(ms):
                t_s = t_s.floor()  # a training timestep, as diffusers' TCDScheduler indexes it
            sigma_s = ms.sigma(t_s).reshape(()).to(sigma_next)
            sigma_s = torch.minimum(sigma_s, sigma_next)
        a_s = _signal_scale(ms, sigma_s)
        x = a_s * denoised + sigma_s * eps  # deterministic jump to level s
        if gamma > 0:
            # Forward noise from s to the next level: keeps x = a * x0 + sigma * eps in law.
            ratio = _signal_scale(ms, sigma_next) / a_s
            extra = (sigma_next**2 - (ratio * sigma_s) ** 2).clamp(min=0).sqrt()
            x = ratio * x + extra * noise_sampler(sigma_s, sigma_next)
    return x


def register_tcd_sampler() -> bool:
    """Offer "tcd" in KSampler's list, once. Returns True if this call added it."""
    import comfy.k_diffusion.sampling as k_sampling
    import comfy.samplers

    existing = getattr(k_sampling, f"sample_{TCD_NAME}", None)
    if existing is not None and existing is not sample_tcd:
        log.warning("FewStep: another extension already provides sampler %r; leaving it in place", TCD_NAME)
    elif existing is None:
        setattr(k_sampling, f"sample_{TCD_NAME}", sample_tcd)

    added = False
    lists = [comfy.samplers.KSAMPLER_NAMES, comfy.samplers.SAMPLER_NAMES, comfy.samplers.KSampler.SAMPLERS]
    seen = set()
    for names in lists:
        if id(names) in seen:  # KSampler.SAMPLERS is SAMPLER_NAMES in current ComfyUI
            continue
        seen.add(id(names))
        if TCD_NAME not in names:
            names.insert(names.index("lcm") + 1 if "lcm" in names else len(names), TCD_NAME)
            added = True
    return added

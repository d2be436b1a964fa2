"""TCD as a ComfyUI sampler: a k-diffusion-style function KSampler and SamplerCustom run,
and its registration as "tcd" in KSampler's list (the pack's one change to ComfyUI's
shared state). A workflow saved with sampler "tcd" needs FewStep installed to load.
"""

from __future__ import annotations

import torch
from tqdm.auto import trange

from .. import comfy_compat
from .tcd import TCD_NAME, eta_from, jump, renoise


def _signal_scale(model_sampling, sigma: torch.Tensor) -> torch.Tensor:
    """a(sigma) in x = a * x0 + sigma * eps: 1 for discrete models, 1 - sigma for flow models."""
    return 1.0 - sigma if comfy_compat.is_flow_sampling(model_sampling) else torch.ones_like(sigma)


def _level_s(ms, sigma_next: torch.Tensor, gamma: float) -> torch.Tensor:
    """sigma at timestep (1 - gamma) * t_next, never above sigma_next."""
    if gamma == 0:
        return sigma_next
    t_s = (1.0 - gamma) * ms.timestep(sigma_next.reshape(1)).float()
    if comfy_compat.is_discrete_sampling(ms):
        t_s = t_s.floor()  # a training timestep, as diffusers' TCDScheduler indexes it
    return torch.minimum(ms.sigma(t_s).reshape(()).to(sigma_next), sigma_next)


@torch.no_grad()
def sample_tcd(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None, eta=None):
    """k-diffusion style TCD sampler. eta None: the model's preset eta, else 0.3."""
    extra_args = {} if extra_args is None else extra_args
    gamma = eta_from(extra_args, eta)
    if noise_sampler is None:
        noise_sampler = comfy_compat.default_noise_sampler(x, extra_args.get("seed", None))
    ms = comfy_compat.k_model_sampling(model)
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})
        if sigma_next == 0:
            x = denoised
            continue
        sigma_s = _level_s(ms, sigma_next, gamma)
        a_s = _signal_scale(ms, sigma_s)
        x = jump(x, denoised, sigma, _signal_scale(ms, sigma), sigma_s, a_s)
        if gamma > 0:
            x = renoise(x, sigma_s, a_s, sigma_next, _signal_scale(ms, sigma_next), noise_sampler(sigma_s, sigma_next))
    return x


def register_tcd_sampler() -> bool:
    """Offer "tcd" in KSampler's list, once. Returns True if this call added it."""
    return comfy_compat.register_k_diffusion_sampler(TCD_NAME, sample_tcd)

"""Sampling reach-ins: KSampler's sampler list, the denoiser a k-diffusion sampler gets,
model_sampling kinds and the noise-scaling patch, and core nodes (ModelSampling*, KSampler,
VAEDecode) called as library functions.

One small function per reach-in, each with the ComfyUI version it was checked against.
"""

from __future__ import annotations

import copy
import importlib
import inspect

import comfy.k_diffusion.sampling as k_sampling
import comfy.model_management
import comfy.model_sampling
import comfy.samplers
import torch

from .runtime import incompatible, log


# ---- samplers -----------------------------------------------------------------------------

def register_k_diffusion_sampler(name: str, function, after: str = "lcm") -> bool:
    """Offer `name` in KSampler's list, resolved like core samplers. 0.3.75: KSampler
    looks up `comfy.k_diffusion.sampling.sample_<name>`; the names live in
    KSAMPLER_NAMES and SAMPLER_NAMES (KSampler.SAMPLERS is SAMPLER_NAMES). Returns True
    when this call added it; never replaces another extension's sampler of that name."""
    existing = getattr(k_sampling, f"sample_{name}", None)
    if existing is None:
        setattr(k_sampling, f"sample_{name}", function)
    elif existing is not function:
        log.warning("FewStep: another extension already provides sampler %r; leaving it in place", name)
    added, seen = False, set()
    for names in (comfy.samplers.KSAMPLER_NAMES, comfy.samplers.SAMPLER_NAMES, comfy.samplers.KSampler.SAMPLERS):
        if id(names) in seen:
            continue
        seen.add(id(names))
        if name not in names:
            names.insert(names.index(after) + 1 if after in names else len(names), name)
            added = True
    return added


def k_model_sampling(k_model):
    """The model_sampling of the denoiser a k-diffusion sampler receives. 0.3.75:
    KSamplerX0Inpaint -> CFGGuider -> BaseModel (as core sample_lcm reads it)."""
    try:
        return k_model.inner_model.inner_model.model_sampling
    except AttributeError as e:
        raise incompatible("the sampler's model (inner_model.inner_model.model_sampling)") from e


def default_noise_sampler(x: torch.Tensor, seed):
    """0.3.75: comfy.k_diffusion.sampling.default_noise_sampler(x, seed=...)."""
    return k_sampling.default_noise_sampler(x, seed=seed)


def is_flow_sampling(model_sampling) -> bool:
    """x = (1 - sigma) x0 + sigma eps. 0.3.75: comfy.model_sampling.CONST. Later releases
    add CONST subclasses that noise differently (IMG_TO_IMG_FLOW in 0.33.0 returns the
    latent image), so the noising must also be CONST's own (probe, not a list of names)."""
    const = comfy.model_sampling.CONST
    return isinstance(model_sampling, const) and type(model_sampling).noise_scaling is const.noise_scaling


def is_discrete_sampling(model_sampling) -> bool:
    """An SD-style 1000-step schedule. 0.3.75: comfy.model_sampling.ModelSamplingDiscrete."""
    return isinstance(model_sampling, comfy.model_sampling.ModelSamplingDiscrete)


def is_discrete_flow_sampling(model_sampling) -> bool:
    """A shiftable flow schedule. 0.3.75: comfy.model_sampling.ModelSamplingDiscreteFlow."""
    return isinstance(model_sampling, comfy.model_sampling.ModelSamplingDiscreteFlow)


# ---- core model-sampling nodes ------------------------------------------------------------

def _run_core_node(module: str, name: str, v1_method: str, **inputs):
    """Call a core node as a library function: V1 classes through their FUNCTION, v3
    classes through `execute` (capability probe; 0.3.75 has these nodes as V1)."""
    cls = getattr(importlib.import_module(module), name, None)
    if cls is None:
        raise incompatible(f"core node {name} ({module})")
    method = getattr(cls, "execute", None)
    if method is not None and not hasattr(cls, "FUNCTION"):
        out = method(**inputs)
        return out.result[0] if hasattr(out, "result") else out[0]
    return getattr(cls(), getattr(cls, "FUNCTION", v1_method))(**inputs)[0]


def core_model_sampling_discrete(model, sampling: str):
    """Core ModelSamplingDiscrete(sampling, zsnr=False) on a clone. 0.3.75: V1 `patch`."""
    return _run_core_node("comfy_extras.nodes_model_advanced", "ModelSamplingDiscrete", "patch",
                          model=model, sampling=sampling, zsnr=False)


def core_model_sampling_sd3(model, shift: float):
    """Core ModelSamplingSD3 (multiplier 1000). 0.3.75: V1 `patch`."""
    return _run_core_node("comfy_extras.nodes_model_advanced", "ModelSamplingSD3", "patch", model=model, shift=shift)


def core_model_sampling_aura_flow(model, shift: float):
    """Core ModelSamplingAuraFlow (multiplier 1). 0.3.75: V1 `patch_aura`."""
    return _run_core_node("comfy_extras.nodes_model_advanced", "ModelSamplingAuraFlow", "patch_aura",
                          model=model, shift=shift)


class _UnscaledInitialNoise:
    """Start from unit-variance noise whatever the first sigma (DMD2's one-step UNet was
    trained on pure noise at t=399). 0.3.75: model_sampling.noise_scaling(sigma, noise,
    latent_image, max_denoise) scales by sigma unless max_denoise."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return super().noise_scaling(sigma, noise, latent_image, max_denoise=True)


def with_unscaled_initial_noise(sampling):
    """A copy of a model_sampling object whose first step takes unscaled noise."""
    if "max_denoise" not in inspect.signature(type(sampling).noise_scaling).parameters:
        raise incompatible("model_sampling.noise_scaling(max_denoise=...)")
    cls = type(f"UnscaledInitialNoise{type(sampling).__name__}", (_UnscaledInitialNoise, type(sampling)), {})
    patched = copy.copy(sampling)  # shares the (read-only) schedule buffers
    patched.__class__ = cls
    return patched


# ---- core sampling and decoding nodes (FewStepABTest) ------------------------------------

def core_ksampler(model, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str, positive, negative,
                  latent: dict) -> dict:
    """Core KSampler (denoise 1): noise from `seed` and the latent's shape alone, so two
    calls with the same seed and latent start from identical noise. 0.3.75: V1 `sample`."""
    return _run_core_node("nodes", "KSampler", "sample", model=model, seed=seed, steps=steps, cfg=cfg,
                          sampler_name=sampler_name, scheduler=scheduler, positive=positive, negative=negative,
                          latent_image=latent, denoise=1.0)


def core_vae_decode(vae, latent: dict) -> torch.Tensor:
    """Core VAEDecode: an IMAGE [B, H, W, C] (video frames folded into the batch). 0.3.75: V1 `decode`."""
    return _run_core_node("nodes", "VAEDecode", "decode", vae=vae, samples=latent)


def load_device(model_patcher):
    """The device the model samples on. 0.3.75: ModelPatcher.load_device."""
    device = getattr(model_patcher, "load_device", None)
    if device is None:
        raise incompatible("ModelPatcher.load_device")
    return device


def synchronize(device) -> None:
    """Wait for queued GPU work before a clock is read (CUDA and MPS run asynchronously);
    nothing on the CPU. 0.3.75: comfy.model_management.is_device_cuda / is_device_mps."""
    if comfy.model_management.is_device_cuda(device):
        torch.cuda.synchronize(device)
    elif comfy.model_management.is_device_mps(device):
        torch.mps.synchronize()


def sampler_sample_noise(args) -> torch.Tensor:
    """The noise of a SAMPLER_SAMPLE wrapper call. 0.3.75: Sampler.sample(model_wrap,
    sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)."""
    return args[4]

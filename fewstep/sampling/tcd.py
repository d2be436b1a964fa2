"""Trajectory Consistency Distillation sampling (TCD, arXiv 2402.19159): the update rule.

TCD's "strategic stochastic sampling" takes each step in two moves. With gamma (eta) in
[0, 1] and the next noise level t_next:
  1. jump deterministically (DDIM-style) from the denoised estimate to the lower level
     s = (1 - gamma) * t_next, reusing the model's own noise estimate;
  2. noise forward again from s to t_next with fresh noise.
gamma = 0 is plain DDIM (identical to euler in sigma space); gamma = 1 re-noises from
(almost) the clean estimate, like LCM. Written from the paper's update rule; diffusers'
TCDScheduler.step is the reference the tests check it against.

Data are written as x = a(sigma) * x0 + sigma * eps, where a = 1 in ComfyUI's
k-diffusion space for discrete (eps/v) models and a = 1 - sigma for flow models. Pure
torch: the sampler that feeds it from ComfyUI is in hooks.py.
"""

from __future__ import annotations

import torch

from ..presets.registry import DEFAULT_TCD_ETA

TCD_NAME = "tcd"
# transformer_options key a FewStep preset uses to carry its eta to KSampler's "tcd".
ETA_OPTION = "fewstep_tcd_eta"


def eta_from(extra_args: dict, eta: float | None) -> float:
    """The step's gamma: the explicit `eta`, else the preset's (model options), else 0.3."""
    if eta is None:
        options = extra_args.get("model_options", {}).get("transformer_options", {})
        eta = options.get(ETA_OPTION, DEFAULT_TCD_ETA)
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"TCD eta (gamma) must be between 0 and 1, got {eta}")
    return eta


def jump(x: torch.Tensor, denoised: torch.Tensor, sigma, a_sigma, sigma_s, a_s) -> torch.Tensor:
    """Move 1: from x at `sigma` to level `sigma_s` along the model's own noise estimate.
    x, denoised: [B, C, ...]; sigmas and signal scales a(.): scalars or broadcastable."""
    eps = (x - a_sigma * denoised) / sigma
    return a_s * denoised + sigma_s * eps


def renoise(x_s: torch.Tensor, sigma_s, a_s, sigma_next, a_next, noise: torch.Tensor) -> torch.Tensor:
    """Move 2: forward noise from level s to the next level, keeping x = a * x0 + sigma *
    eps in law. noise: unit Gaussian of x_s's shape."""
    ratio = a_next / a_s
    extra = (sigma_next**2 - (ratio * sigma_s) ** 2).clamp(min=0).sqrt()
    return ratio * x_s + extra * noise

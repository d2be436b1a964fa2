"""How far a fast result lands from a reference (PSNR, absolute errors, SSIM): shared by
FewStepCompare, FewStepABTest and bench/."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Difference:
    psnr_db: float  # inf when identical
    max_abs: float
    mean_abs: float
    value_range: float  # the peak used for PSNR

    def summary(self) -> str:
        psnr = "identical (inf dB)" if math.isinf(self.psnr_db) else f"{self.psnr_db:.2f} dB"
        return f"PSNR {psnr}, max |diff| {self.max_abs:.4g}, mean |diff| {self.mean_abs:.4g}"


def difference(reference: torch.Tensor, candidate: torch.Tensor, value_range: float | None = None) -> Difference:
    """PSNR and absolute errors of `candidate` against `reference` (same shape).

    `value_range` is the PSNR peak: 1.0 for ComfyUI images in [0, 1]; for latents
    (unbounded) pass None to use the reference's own max - min.
    """
    if reference.shape != candidate.shape:
        raise ValueError(
            f"cannot compare tensors of different shapes: reference {tuple(reference.shape)} "
            f"vs candidate {tuple(candidate.shape)}; make both from the same size and batch"
        )
    ref = reference.detach().to(torch.float64, copy=False).cpu()
    cand = candidate.detach().to(torch.float64, copy=False).cpu()
    if not (torch.isfinite(ref).all() and torch.isfinite(cand).all()):
        raise ValueError("cannot compare: an input contains NaN or Inf values")
    if value_range is None:
        value_range = float(ref.max() - ref.min()) or 1.0
    err = (cand - ref).abs()
    mse = float((err**2).mean())
    psnr = math.inf if mse == 0 else 10 * math.log10(value_range**2 / mse)
    return Difference(psnr, float(err.max()), float(err.mean()), value_range)


# ---- SSIM ---------------------------------------------------------------------------------
# The standard settings (Wang et al. 2004, as skimage/kornia/pytorch-msssim use them).
SSIM_WINDOW = 11  # px, Gaussian window
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """[size] normalised 1-D Gaussian, float64."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(reference: torch.Tensor, candidate: torch.Tensor, data_range: float = 1.0, channels_last: bool = True) -> float:
    """Mean SSIM of two image batches: 11-px Gaussian window (sigma 1.5), K1 0.01, K2 0.03,
    over the valid region (no padding), averaged over pixels, channels and batch.

    ComfyUI IMAGEs are [B, H, W, C] in [0, 1] (channels_last, data_range 1); pass
    channels_last=False for [B, C, H, W]. Computed in float64 on the CPU: a few small
    convolutions, and the value must not depend on the device. 1.0 means identical.
    """
    if reference.shape != candidate.shape:
        raise ValueError(
            f"cannot compare tensors of different shapes: reference {tuple(reference.shape)} "
            f"vs candidate {tuple(candidate.shape)}; make both from the same size and batch"
        )
    if reference.dim() != 4:
        raise ValueError(f"SSIM needs an image batch [B, H, W, C] or [B, C, H, W]; got shape {tuple(reference.shape)}")
    ref = reference.detach().to("cpu", torch.float64)
    cand = candidate.detach().to("cpu", torch.float64)
    if channels_last:
        ref, cand = ref.movedim(-1, 1), cand.movedim(-1, 1)
    height, width = ref.shape[-2:]
    if min(height, width) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} px (its Gaussian window is {SSIM_WINDOW} px); "
            f"these are {width}x{height} px. Compare larger images (e.g. decode a larger latent, or upscale both "
            "with ImageScale first)."
        )
    if not (torch.isfinite(ref).all() and torch.isfinite(cand).all()):
        raise ValueError("cannot compare: an input contains NaN or Inf values")
    if torch.equal(ref, cand):
        return 1.0
    channels = ref.shape[1]
    g = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA)
    rows = g.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    cols = g.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:  # separable, valid region only
        x = torch.nn.functional.conv2d(x, rows, groups=channels)
        return torch.nn.functional.conv2d(x, cols, groups=channels)

    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_r, mu_c = blur(ref), blur(cand)
    var_r = blur(ref * ref) - mu_r**2
    var_c = blur(cand * cand) - mu_c**2
    cov = blur(ref * cand) - mu_r * mu_c
    ssim_map = ((2 * mu_r * mu_c + c1) * (2 * cov + c2)) / ((mu_r**2 + mu_c**2 + c1) * (var_r + var_c + c2))
    return float(ssim_map.mean())

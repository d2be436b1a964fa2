"""How far a fast result lands from a reference: shared by FewStepCompare and bench/."""

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

"""Pictures of a difference: a heat map of |a - b| and A | B | heat side by side.

Pure torch. Images are ComfyUI IMAGEs, [B, H, W, C] float in [0, 1]; latents are
[B, C, H, W] (or video [B, C, T, H, W], whose frames are shown as batch items).
"""

from __future__ import annotations

import math

import torch

MIN_PREVIEW_PX = 64  # latent previews are scaled up (nearest) to at least this size


def hot_colours(values: torch.Tensor) -> torch.Tensor:
    """[...] in [0, 1] -> [..., 3]: black, red, yellow, white (brightness rises with value)."""
    v = values.clamp(0, 1) * 3
    return torch.stack([v.clamp(0, 1), (v - 1).clamp(0, 1), (v - 2).clamp(0, 1)], dim=-1)


def heat_map(reference: torch.Tensor, candidate: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(heat map [B, H, W, 3], scale): per-pixel |difference| averaged over channels, drawn
    relative to the largest one in the batch (`scale`, white). Identical inputs give a black
    picture and scale 0. Inputs: two IMAGEs [B, H, W, C] of the same shape."""
    if reference.shape != candidate.shape:
        raise ValueError(
            f"cannot draw the difference of tensors of different shapes: reference {tuple(reference.shape)} "
            f"vs candidate {tuple(candidate.shape)}; make both from the same size and batch")
    err = (candidate.detach().float().cpu() - reference.detach().float().cpu()).abs().mean(dim=-1)
    scale = float(err.max()) if err.numel() else 0.0
    return hot_colours(err / scale if scale > 0 else err), scale


def side_by_side(*pictures: torch.Tensor, gap: int | None = None) -> torch.Tensor:
    """Pictures [B, H, W, 3] of one size next to each other, split by white columns
    (`gap` px, default 1/32 of the width, at least 1) -> [B, H, n*W + (n-1)*gap, 3]."""
    first = pictures[0]
    if any(p.shape != first.shape for p in pictures):
        raise ValueError(f"side_by_side needs pictures of one shape; got {[tuple(p.shape) for p in pictures]}")
    gap = max(1, first.shape[2] // 32) if gap is None else gap
    white = torch.ones(first.shape[0], first.shape[1], gap, first.shape[3])
    parts: list[torch.Tensor] = []
    for i, p in enumerate(pictures):
        if i:
            parts.append(white)
        parts.append(p.detach().float().cpu())
    return torch.cat(parts, dim=2)


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W, C] -> [B, H, W, 3]: grey for one channel, the first three otherwise."""
    if images.shape[-1] == 1:
        return images.expand(*images.shape[:-1], 3)
    return images[..., :3]


def frames(latent: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] as is; video [B, C, T, H, W] -> [B*T, C, H, W]."""
    if latent.dim() == 5:
        return latent.movedim(2, 1).reshape(-1, latent.shape[1], *latent.shape[3:])
    if latent.dim() != 4:
        raise ValueError(f"expected a latent [B, C, H, W] or [B, C, T, H, W]; got shape {tuple(latent.shape)}")
    return latent


def latent_previews(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey pictures [B', H', W', 3] of two latents (channel mean, one shared min-max range,
    scaled up by a whole factor to at least MIN_PREVIEW_PX): what the A/B node shows
    without a VAE. Not a decoded image, only where the two latents differ."""
    fa, fb = frames(a.detach().float().cpu()).mean(dim=1), frames(b.detach().float().cpu()).mean(dim=1)
    low = min(float(fa.min()), float(fb.min()))
    span = max(float(fa.max()), float(fb.max())) - low or 1.0
    factor = max(1, math.ceil(MIN_PREVIEW_PX / min(fa.shape[-2:])))

    def grey(x: torch.Tensor) -> torch.Tensor:
        x = ((x - low) / span).repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
        return x[..., None].expand(*x.shape, 3).contiguous()

    return grey(fa), grey(fb)

"""Pictures a run returns: the loss curve and the teacher / before / after grid.

Pure: torch and Pillow (a ComfyUI dependency). Images are ComfyUI IMAGE tensors,
(1, H, W, 3) floats in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 640, 320, 40


def _to_image(picture: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0)[None]


def loss_curve(losses: list[float], heldout: list[tuple[int, float]]) -> torch.Tensor:
    """Training loss (blue, log scale, left axis) and held-out PSNR in dB (orange dots,
    right axis) over iterations; (1, 320, 640, 3)."""
    picture = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(picture)
    x0, x1, y0, y1 = MARGIN, WIDTH - MARGIN, MARGIN // 2, HEIGHT - MARGIN
    draw.rectangle([x0, y0, x1, y1], outline="black")
    total = max(len(losses), max((i for i, _ in heldout), default=0), 1)

    def xpos(i):
        return x0 + (x1 - x0) * i / total

    finite = [v for v in losses if v > 0 and math.isfinite(v)]
    if finite:
        lo, hi = math.log10(min(finite)), math.log10(max(finite))
        span = hi - lo or 1.0
        points = [(xpos(i + 1), y1 - (y1 - y0) * (math.log10(v) - lo) / span)
                  for i, v in enumerate(losses) if v > 0 and math.isfinite(v)]
        if len(points) > 1:
            draw.line(points, fill=(40, 90, 200), width=2)
        draw.text((x0 + 4, y0 + 2), f"loss {max(finite):.3g} .. {min(finite):.3g} (log)", fill=(40, 90, 200))
    psnrs = [(i, p) for i, p in heldout if math.isfinite(p)]
    if psnrs:
        lo, hi = min(p for _, p in psnrs), max(p for _, p in psnrs)
        span = hi - lo or 1.0
        for i, p in psnrs:
            x, y = xpos(i), y1 - (y1 - y0) * (p - lo) / span
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(230, 120, 20))
        draw.text((x0 + 4, y0 + 16), f"held-out PSNR {psnrs[0][1]:.1f} -> {psnrs[-1][1]:.1f} dB", fill=(230, 120, 20))
    draw.text((x0, y1 + 8), "0", fill="black")
    draw.text((x1 - 40, y1 + 8), f"{total} it", fill="black")
    return _to_image(picture)


def grid(rows: list[torch.Tensor]) -> torch.Tensor:
    """Stack IMAGE batches (N, H, W, 3) as rows of one picture: (1, R*H, N*W, 3)."""
    return torch.cat([torch.cat(list(r), dim=1) for r in rows], dim=0)[None].clamp(0, 1)


def latent_preview(latents: torch.Tensor) -> torch.Tensor:
    """IMAGE (N, H, W, 3) from the first three latent channels, normalised per batch: a
    rough view when no VAE is connected."""
    x = latents.detach().float().cpu()
    if x.ndim == 5:
        x = x[:, :, 0]
    x = x[:, :3] if x.shape[1] >= 3 else x[:, :1].repeat(1, 3, 1, 1)
    x = (x - x.amin()) / (x.amax() - x.amin() + 1e-8)
    return x.permute(0, 2, 3, 1)

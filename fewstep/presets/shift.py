"""Flow-matching shifts a preset can ask for, as plain functions (torch and stdlib only).

A flow model samples sigma in [0, 1]; a shift s bends an evenly spaced schedule towards
high noise: sigma = s t / (1 + (s - 1) t), the rule of ComfyUI's ModelSamplingSD3 /
ModelSamplingAuraFlow and of diffusers' and DiffSynth's flow schedulers.

`ResolutionShift` is the rule DiffSynth-Studio samples Qwen-Image with
(diffsynth/diffusion/flow_match.py `_calculate_shift_qwen_image`, fed by
pipelines/qwen_image.py with (height // 16) * (width // 16) image tokens): s = exp(mu),
mu linear in the token count, so the shift grows with the image size (about 2.0 at
1024 x 1024 and 2.3 at 1328 x 1328). The size is only known when sampling starts, so
presets/patches.py applies it then, from the latent's shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch


def time_shift(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """sigma [...] of an unshifted schedule (shift 1) -> the same steps at `shift`."""
    return shift * sigma / (1 + (shift - 1) * sigma)


@dataclass(frozen=True)
class ResolutionShift:
    """shift = exp(mu), mu = log_shift[0] at tokens[0] rising linearly to log_shift[1]
    at tokens[1] (and beyond, unclamped, as DiffSynth computes it). A token is a
    latent_patch x latent_patch square of the latent; the latent is the image / vae_scale."""

    tokens: tuple[int, int]
    log_shift: tuple[float, float]
    latent_patch: int
    vae_scale: int

    KEYS = ("tokens", "log_shift", "latent_patch", "vae_scale")

    @classmethod
    def from_json(cls, raw: Any) -> "ResolutionShift":
        """Raises ValueError saying which key is wrong."""
        if not (isinstance(raw, dict) and set(raw) == set(cls.KEYS)):
            raise ValueError(f"must be an object with exactly the keys {list(cls.KEYS)}")
        tokens, log_shift = raw["tokens"], raw["log_shift"]
        if not (_pair(tokens, int) and 0 < tokens[0] < tokens[1]):
            raise ValueError("'tokens' must be [low, high] integers with 0 < low < high")
        if not _pair(log_shift, (int, float)):
            raise ValueError("'log_shift' must be [at low, at high] numbers")
        for key in ("latent_patch", "vae_scale"):
            if not (isinstance(raw[key], int) and not isinstance(raw[key], bool) and raw[key] >= 1):
                raise ValueError(f"'{key}' must be a positive integer")
        return cls((tokens[0], tokens[1]), (float(log_shift[0]), float(log_shift[1])), raw["latent_patch"], raw["vae_scale"])

    def tokens_for_latent(self, shape: Sequence[int]) -> int:
        """Image tokens of a latent [..., H, W]."""
        return (int(shape[-2]) // self.latent_patch) * (int(shape[-1]) // self.latent_patch)

    def log_shift_for_tokens(self, tokens: int) -> float:
        """mu; core ModelSamplingFlux's base_shift/max_shift are mu at 256/4096 tokens."""
        (t0, t1), (mu0, mu1) = self.tokens, self.log_shift
        return mu0 + (tokens - t0) * (mu1 - mu0) / (t1 - t0)

    def shift_for_tokens(self, tokens: int) -> float:
        return math.exp(self.log_shift_for_tokens(tokens))

    def shift_for_latent(self, shape: Sequence[int]) -> float:
        return self.shift_for_tokens(self.tokens_for_latent(shape))

    def shift_for_image(self, width: int, height: int) -> float:
        return self.shift_for_latent((height // self.vae_scale, width // self.vae_scale))


def _pair(value: Any, kind) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, kind) and not isinstance(v, bool) and math.isfinite(v) for v in value))

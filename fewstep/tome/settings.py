"""What the FewStep Token Merge node fixes, its validation, and which UNet levels it
patches. Pure: no torch, no ComfyUI.

A UNet's *level* counts the downsamplings above it (0 = full latent resolution). Levels
come from the model's own block structure (fewstep.comfy_compat.unet_layout), never from
token counts, which merging itself changes. `max_depth` counts only levels that have
attention, from the top: max_depth 1 on SD1.5 is level 0 (64x64 tokens at 512 px); on
SDXL, whose top level has no attention, it is level 1 (64x64 tokens at 1024 px).

A DiT has no levels: all its blocks see the same tokens. There `max_depth` counts the
model's block groups in the order they run (Flux: 1 = its double-stream blocks, 2 = its
double- and single-stream blocks), read from the model (comfy_compat.flux_layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

METHODS = ("todo", "tome")
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Settings:
    method: str = "todo"
    ratio: float = 0.5  # ToMe: share of a level's tokens merged away
    downsample: float = 2.0  # ToDo: key/value grid downsampling factor per side
    max_depth: int = 1  # how many attention levels, from the top
    start_percent: float = 0.0
    end_percent: float = 1.0
    seed: int = 0

    @property
    def is_identity(self) -> bool:
        """Settings under which the patched model computes exactly the unpatched one."""
        return self.ratio == 0 if self.method == "tome" else self.downsample == 1


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check(method=None, ratio=None, downsample=None, max_depth=None, start_percent=None, end_percent=None,
          seed=None) -> str | None:
    """The reason these settings cannot work (with the fix), or None. None values are not checked."""
    if method is not None and method not in METHODS:
        return f"method must be one of {', '.join(METHODS)}, got {method!r}"
    if ratio is not None and (not _number(ratio) or not 0.0 <= ratio < 1.0):
        return f"ratio must be at least 0 and below 1 (0 = no merging; 0.3-0.5 typical), got {ratio!r}"
    if downsample is not None and (not _number(downsample) or downsample < 1.0):
        return f"downsample must be at least 1 (1 = off; 2-3 typical), got {downsample!r}"
    if max_depth is not None and (not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < 1):
        return f"max_depth must be a whole number >= 1 (1 = the top attention level only), got {max_depth!r}"
    for name, v in (("start_percent", start_percent), ("end_percent", end_percent)):
        if v is not None and (not _number(v) or not 0.0 <= v <= 1.0):
            return f"{name} must be between 0 and 1, got {v!r}"
    if start_percent is not None and end_percent is not None and start_percent >= end_percent:
        return f"start_percent ({start_percent}) must be smaller than end_percent ({end_percent})"
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED):
        return f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}"
    return None


class DepthError(ValueError):
    """max_depth asks for more attention levels than the model has."""


def selected_levels(attention_levels, max_depth: int, model_name: str = "this model") -> tuple[int, ...]:
    """The `max_depth` highest-resolution levels among those with attention; DepthError when
    the model has fewer."""
    levels = sorted(set(attention_levels))
    if max_depth > len(levels):
        raise DepthError(
            f"max_depth {max_depth} is beyond {model_name}, which has attention at {len(levels)} UNet "
            f"level(s) ({', '.join(map(str, levels)) or 'none'}): set max_depth to 1..{len(levels)}")
    return tuple(levels[:max_depth])


def selected_groups(groups, max_depth: int, model_name: str = "this model") -> tuple[str, ...]:
    """The first `max_depth` of a DiT's block groups ((name, block count) pairs, in the order
    they run); DepthError when the model has fewer."""
    if max_depth > len(groups):
        have = ", ".join(f"{name} ({count} blocks)" for name, count in groups) or "none"
        raise DepthError(
            f"max_depth {max_depth} is beyond {model_name}, which has {len(groups)} DiT block group(s): {have}; "
            f"set max_depth to 1..{len(groups)}")
    return tuple(name for name, _count in groups[:max_depth])


def active(sigma: float, start_sigma: float, end_sigma: float) -> bool:
    """Whether a call at `sigma` lies in [start_percent, end_percent] of the schedule
    (sigmas fall as sampling goes on: start_sigma >= end_sigma)."""
    return end_sigma <= sigma <= start_sigma

"""Learning-rate schedules as a pure function of the iteration, so a resumed run needs only
the iteration to be back on the same curve."""

from __future__ import annotations

import math

from .config import WARMUP_SHARE


def warmup_iterations(schedule: str, iterations: int) -> int:
    return max(1, round(iterations * WARMUP_SHARE)) if schedule.endswith("_warmup") else 0


def lr_factor(schedule: str, iteration: int, iterations: int) -> float:
    """Multiplier of the base learning rate for 0-based `iteration` of `iterations`.

    Warmup rises linearly to 1 over the first WARMUP_SHARE of the run; cosine then decays
    to 0 at the last iteration; constant stays at 1."""
    warmup = warmup_iterations(schedule, iterations)
    if iteration < warmup:
        return (iteration + 1) / (warmup + 1)
    if schedule.startswith("cosine"):
        span = max(1, iterations - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (iteration - warmup) / span)))
    return 1.0

"""Speed/quality points every teacher family records, and the Pareto frontier over them.

A point is one method at one setting, scored on the bench's samples: its cost is model
evaluations per sample (batch rows the UNet evaluates: a cfg > 1 step costs 2, a cfg-1 step
1, a skipped call 0) and its quality the latent PSNR against the teacher's own result.
Families record points as they score them (rows_caching, rows_fewstep); the frontier
family (rows_frontier) adds its own sweeps and draws them all in one chart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

KINDS = ("fewer steps", "step cache", "distilled")  # how a method saves model evaluations


@dataclass(frozen=True)
class Point:
    method: str  # a line in the chart: "EasyCache (core)", "uni_pc (core)", ...
    setting: str  # the point's label: a threshold, a step count, ...
    provider: str  # "core" or "fewstep"
    kind: str  # one of KINDS
    evals: float  # model evaluations per sample
    psnr: float  # latent PSNR vs the teacher's reference, dB
    prompted: float  # share read as the prompted digit
    model: Any = field(default=None, compare=False, repr=False)  # what to time: the MODEL sampled ...
    overrides: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # ... with these settings


def record(ctx, point: Point) -> None:
    """Keep `point` for the frontier chart of this bench process (the last score of a
    (method, setting) wins)."""
    ctx.memo("frontier-points", dict)[(point.method, point.setting)] = point


def recorded(ctx) -> list[Point]:
    return list(ctx.memo("frontier-points", dict).values())


def pareto(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats on both cost and quality, cheapest first."""
    best, out = -math.inf, []
    for p in sorted(points, key=lambda p: (p.evals, -p.psnr)):
        if p.psnr > best:
            out.append(p)
            best = p.psnr
    return out


def best_within(points: Sequence[Point], budget: float, **where) -> Point | None:
    """The highest-PSNR point costing at most `budget` evaluations per sample, among points
    whose attributes match `where` (e.g. provider="core", kind="step cache")."""
    fits = [p for p in points if p.evals <= budget + 1e-9 and all(getattr(p, k) == v for k, v in where.items())]
    return max(fits, key=lambda p: (p.psnr, -p.evals)) if fits else None

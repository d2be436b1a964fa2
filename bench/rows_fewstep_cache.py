"""FewStep TeaCache in `make bench`: rows beside core EasyCache/LazyCache, and its overhead.

- `caching` table (bench/rows_caching.py, same teacher, digits, seeds and columns): the two
  methods in TEACACHE run there next to the peers (bench/run.py passes both lists), so
  they are measured exactly like them.
  * "FewStep TeaCache": calibration off (the online estimate; nothing stored).
  * "FewStep TeaCache (calibrated)": calibration "calibrate on next run", fulfilled by one
    batch-1 run on a seed outside the scored samples (TeacherBench.calibration_run), which
    computes every step and fits the polynomial; every later run uses it. The file goes to
    a temporary folder, never to ComfyUI's user folder.
  Skipped calls are counted by rows_caching's innermost DIFFUSION_MODEL counter: the
  generic indicator skips above the UNet, so a skipped call never reaches it.
- `teacache_overhead`: what FewStep TeaCache costs when it skips nothing (threshold 0:
  indicator, decisions and caches still run) on random-weight full-size SD1.5 (512 px)
  and, under BENCH=full, SDXL (1024 px): the wrappers' own time per model call, measured
  inside them, as a share of one sampling step, plus the side-by-side wall-time ratio of
  whole runs.
"""

from __future__ import annotations

import tempfile

from . import harness
from .context import BenchContext
from .harness import Column, Table
from .methods import LAYOUT_NAMES, MODEL, SIZE, Method
from .models import random_conditioning

THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
_calibration_root = None


def _settings(t: float, calibration: str) -> dict:
    return dict(threshold=t, start_percent=0.0, end_percent=1.0, max_consecutive_skips=0, model_family="auto",
                cache_device="auto", calibration=calibration)


def _online(node, model, t):
    return node.execute(model, **_settings(t, "off")).args[0]


def _calibrated(node, model, t):
    """The node's own calibration, stored in a temporary folder instead of the user folder."""
    global _calibration_root
    from ..fewstep.caching.state import Settings
    from ..fewstep.caching.hooks import apply_teacache

    if _calibration_root is None:
        _calibration_root = tempfile.mkdtemp(prefix="fewstep-bench-teacache-")
    return apply_teacache(model, Settings(t), "auto", "calibrate on next run", store_root=_calibration_root)


TEACACHE = (
    Method("FewStep TeaCache", "fewstep", "FewStepTeaCache", _online, THRESHOLDS),
    Method("FewStep TeaCache (calibrated)", "fewstep", "FewStepTeaCache", _calibrated, THRESHOLDS,
           settings={"calibrate_first": True}),
)

# ---- overhead when nothing is skipped ----------------------------------------------------

COLUMNS = [
    MODEL,
    SIZE,
    Column("step", "one step (s)", "{:.3f}"),
    Column("overhead_ms", "TeaCache work per step (ms)", "{:.2f}"),
    Column("overhead_pct", "share of a step", "{:.3%}"),
    Column("wall_ratio", "whole run, TeaCache / unpatched", "{:.3f}"),
]
STEPS, CFG = 2, 5.0  # cfg > 1: cond and uncond in one call per step, as users run


def _cases(ctx: BenchContext):
    """(layout, px): SDXL only under BENCH=full, where its calls take over a minute each on 2
    CPU cores and its random model takes minutes to build (most of the old default's 14 min)."""
    return ctx.pick(default=[("sd15", 512)], full=[("sd15", 512), ("sdxl", 1024)], smoke=[("tiny-sd15", 64)])


def _run(model, px: int, cond, stats: list | None = None):
    import nodes

    from ..fewstep.caching.state import Settings
    from ..fewstep.caching.hooks import apply_teacache

    latent = nodes.EmptyLatentImage().generate(px, px, 1)[0]
    if stats is not None:
        model = apply_teacache(model, Settings(0.0), "auto", "off", reporter=stats.append)
    return lambda: nodes.common_ksampler(model, 0, STEPS, CFG, "euler", "normal", cond, cond, latent)[0]["samples"]


def _time_side_by_side(ctx: BenchContext, model, px: int, cond, stats: list) -> tuple[float, float]:
    """(one step in s, whole-run ratio TeaCache / unpatched), interleaved runs."""
    timings = harness.side_by_side({"unpatched": _run(model, px, cond), "teacache": _run(model, px, cond, stats)},
                                   ctx.repeats, warm_each=px < 1024)
    base, tc = timings["unpatched"], timings["teacache"]
    return base.median / STEPS, harness.speedup(tc, base)


def overhead_rows(ctx: BenchContext) -> list[Table]:
    table = Table("teacache_overhead", "FewStep TeaCache overhead when nothing is skipped (threshold 0)", COLUMNS)
    for layout, px in _cases(ctx):
        model = ctx.random_model(layout)
        cond = random_conditioning(layout, px, px)
        stats: list = []
        ctx.log(f"  {layout} {px}px: {STEPS} steps, {ctx.repeats} repeat(s) side by side")
        step, ratio = _time_side_by_side(ctx, model, px, cond, stats)
        last = stats[-1]
        per_step = last["overhead_ms_per_call"] * last["calls"] / STEPS
        table.add("fewstep", model=LAYOUT_NAMES[layout], size=px, step=step, overhead_ms=per_step,
                  overhead_pct=per_step / 1000 / step, wall_ratio=ratio)
    table.notes.append(
        f"Random-weight full-size UNets (ComfyUI's detected configs), {STEPS} euler steps at cfg {CFG:g} (cond and "
        "uncond batched: one model call per step), batch 1. FewStep TeaCache at threshold 0 computes every call but "
        "still reads the indicator, decides and keeps its caches; 'TeaCache work per step' is the time measured "
        "inside its wrappers, outside the model (CPU: synchronous, so this is the full cost). The whole-run ratio is "
        "the median of per-repeat ratios of runs interleaved side by side; it includes machine noise of a few "
        "percent either way, which is why the measured in-wrapper time is the figure to judge against 2% of a step.")
    if not ctx.full:
        table.notes.append("SDXL 1024 px runs under `BENCH=full` only (a UNet call takes over a minute on 2 CPU "
                           "cores).")
    return [table]

"""Step caching on the trained teacher: ComfyUI's EasyCache and LazyCache (the peers).

Each method runs at several thresholds on the same digits and seeds as the uncached
teacher (30 steps, cfg 5). Reported: UNet calls actually made per run (counted by an
innermost DIFFUSION_MODEL wrapper), wall time of a batch-1 run and its speedup measured
side by side with the uncached run, and quality against the uncached result.

The peers are PEERS here; FewStep's own methods come from their feature's row module
(rows_fewstep_cache.TEACACHE), and bench/run.py hands the family both lists.
"""

from __future__ import annotations

from typing import Sequence

from . import frontier, harness
from .context import BenchContext
from .harness import Column, Table
from .methods import MAX_ABS, METHOD, PROMPTED, WALL_BATCH1, Method
from .teacher_runs import teacher_bench


def _core(node_name: str):
    def load():
        from comfy_extras import nodes_easycache

        return getattr(nodes_easycache, node_name)

    return load


THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.5)  # core default 0.2; on the teacher skips saturate above it
CORE_DEFAULTS = dict(start_percent=0.15, end_percent=0.95, verbose=False)

PEERS = (
    Method("EasyCache (core)", "core", _core("EasyCacheNode"),
           lambda node, model, t: node.execute(model, reuse_threshold=t, **CORE_DEFAULTS).args[0], THRESHOLDS),
    Method("LazyCache (core)", "core", _core("LazyCacheNode"),
           lambda node, model, t: node.execute(model, reuse_threshold=t, **CORE_DEFAULTS).args[0], THRESHOLDS),
)

COLUMNS = [
    METHOD,
    Column("threshold", "threshold", "{:g}"),
    Column("calls", "UNet calls / run", "{:.1f}"),
    Column("skipped", "skipped", "{:.1f}"),
    Column("timed_calls", "calls in timed run", "{:d}"),
    WALL_BATCH1,
    Column("speedup", "speedup", "{:.2f}x"),
    Column("psnr", "latent PSNR vs uncached", harness.fmt_psnr),
    MAX_ABS,
    PROMPTED,
    Column("agrees", "same digit as uncached", harness.fmt_pct),
]


def caching_rows(ctx: BenchContext, methods: Sequence[Method] = PEERS) -> list[Table]:
    tb = teacher_bench(ctx)
    ref = tb.reference(ctx)
    steps = tb.settings["steps"]
    thresholds = ctx.pick(None, smoke=(0.2,))

    configs = []  # (method, threshold, patched model)
    for m in methods:
        node = m.node_class(ctx)
        if node is None:
            continue
        for t in thresholds or m.values:
            model = m.apply(node, tb.model, t)
            if m.settings.get("calibrate_first"):  # on a seed outside the scored samples
                tb.calibration_run(model)
            configs.append((m, t, model))

    # Wall time: batch-1 runs, every config interleaved with the uncached teacher.
    variants = {f"{m.label}@{t}": tb.timing_run(model) for m, t, model in configs}
    ctx.log(f"  timing {len(variants)} variants x {ctx.repeats} repeats, each next to an uncached run")
    base, timings = harness.paired(tb.timing_run(tb.model), variants, ctx.repeats)

    table = Table("caching", f"Step caching on the trained teacher ({tb.version})", COLUMNS)
    table.add(method="uncached teacher", threshold=None, calls=ref.calls_per_run, skipped=0.0,
              timed_calls=base.result, wall=base.median,
              speedup=1.0, psnr=float("inf"), max_abs=0.0, prompted=float((ref.predicted == ref.labels).mean()),
              agrees=1.0)
    curves: dict[str, tuple[list, list, list, list]] = {}  # label -> skipped, psnr, prompted, thresholds
    for m, t, model in configs:
        ctx.log(f"  quality {m.label} threshold {t}")
        s, q = tb.scored(ctx, (m.label, t), model)
        frontier.record(ctx, frontier.Point(m.label, f"{t:g}", m.provider, "step cache", s.evals_per_sample, q.psnr_db, q.prompted,
                                            model))
        tm = timings[f"{m.label}@{t}"]
        table.add(m.provider, method=m.label, threshold=t, calls=s.calls_per_run,
                  skipped=ref.calls_per_run - s.calls_per_run, timed_calls=tm.result, wall=tm.median,
                  speedup=harness.speedup(base, tm), psnr=q.psnr_db, max_abs=q.max_abs, prompted=q.prompted,
                  agrees=q.agrees)
        xs, psnr, prompted, labels = curves.setdefault(m.label, ([], [], [], []))
        xs.append(ref.calls_per_run - s.calls_per_run)
        psnr.append(q.psnr_db)
        prompted.append(100 * q.prompted)
        labels.append(f"{t:g}")

    n = len(ref.labels)
    table.notes.append(
        f"Teacher at its own settings ({tb.describe()}); {n} samples ({len(tb.digits)} digits x {tb.per_digit}, "
        f"seed 0 + digit, one run per digit), each config on the same seeds. UNet calls are counted per run "
        f"(cfg batches cond and uncond into one call, so {steps} steps = {steps} calls). Quality is of the final "
        "latents against the uncached ones (PSNR over the reference's value range) and of the decoded digits read "
        "by the held-out classifier. Core nodes at their default start 0.15 / end 0.95. Wall time: one batch-1 "
        "run of digit 7 (its own UNet call count alongside), each repeat right next to an uncached run; on a model "
        "this small, per-step work outside the UNet is a noticeable share, so the time speedup trails the call "
        "reduction.")
    if curves:
        name = ctx.plot_path("caching")
        harness.plot_panels(name, [("latent PSNR vs uncached (dB)", [(k, v[0], v[1]) for k, v in curves.items()]),
                                   ("reads as prompted digit (%)", [(k, v[0], v[2]) for k, v in curves.items()])],
                            annotations=[v[3] for v in curves.values()],
                            xlabel=f"UNet calls skipped per {steps}-step run",
                            title="Step caching on the digits teacher (point labels: threshold)")
        table.plots.append(name.name)
    return [table]

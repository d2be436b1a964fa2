"""One speed/quality chart of every method on the digits teacher, and who wins at each budget.

Cost is model evaluations per sample (bench/frontier.py), quality the latent PSNR against
the teacher's 30-step cfg-5 result on the same samples every teacher family scores.
The chart takes every point the caching and few-step families scored in this process
(`ctx.family` runs them first when they did not run) and adds sweeps of its own, so each method is
drawn at its best frontier rather than at its defaults:

- core samplers at more step counts ("just use fewer steps");
- core EasyCache and LazyCache over their start/end window as well as their threshold;
- the distilled student with FewStep TeaCache on top.

The table gives, per budget, the best point of each kind and the overall winner, whose
wall time is measured side by side with the teacher.
"""

from __future__ import annotations

import math

from . import frontier, harness
from .context import BenchContext
from .frontier import Point
from .harness import Column, Table
from .methods import Method
from .rows_caching import CORE_DEFAULTS, PEERS
from .rows_fewstep import METHODS as FEWSTEP_METHODS
from .rows_fewstep_cache import TEACACHE
from .teacher_runs import teacher_bench

SAMPLER_STEPS = (3, 6, 12, 16, 20)  # beside the few-step family's 1, 2, 4, 8
SAMPLERS = ("euler (core, the teacher's sampler)", "uni_pc (core)")
PEER_WINDOWS = ((0.0, 1.0), (0.3, 0.8))  # beside the core default (0.15, 0.95)
PEER_THRESHOLDS = (0.1, 0.2)
STUDENT_TEACACHE = (4, (0.05, 0.1, 0.2))  # student steps, TeaCache thresholds
BUDGETS = (2, 4, 8, 12, 16, 24, 32)
FRONTIER = "frontier (best of all)"  # model evaluations per sample; the teacher costs 60

COLUMNS = [
    Column("budget", "budget (evaluations / sample)", "{:g}"),
    Column("sampler", "best core sampler, fewer steps"),
    Column("cache", "best step cache"),
    Column("distilled", "best distilled student"),
    Column("winner", "winner"),
    Column("speedup", "winner's wall-time speedup vs teacher", "{:.1f}x"),
]


def _cell(p: Point | None) -> str | None:
    if p is None:
        return None
    return f"{p.method} {p.setting}: {harness.fmt_psnr(p.psnr)}, {p.evals:.1f} ev., {harness.fmt_pct(p.prompted)}"


def _score(ctx: BenchContext, tb, method: str, setting: str, provider: str, kind: str, model, **overrides) -> None:
    s, q = tb.scored(ctx, (method, setting), model, **overrides)
    frontier.record(ctx, Point(method, setting, provider, kind, s.evals_per_sample, q.psnr_db, q.prompted, model,
                               overrides))


def _sweeps(ctx: BenchContext, tb) -> None:
    by_label = {m.label: m for m in FEWSTEP_METHODS}
    for label in SAMPLERS:
        m = by_label[label]
        for n in ctx.pick(SAMPLER_STEPS, smoke=(3,)):
            ctx.log(f"  frontier: {label} {n} steps")
            _score(ctx, tb, label, f"{n}", m.provider, "fewer steps", tb.model, **{"scheduler": "normal", **m.settings, "steps": n})
    for peer in PEERS:
        node = peer.node_class(ctx)
        for start, end in ctx.pick(PEER_WINDOWS, smoke=PEER_WINDOWS[:1]):
            for t in ctx.pick(PEER_THRESHOLDS, smoke=PEER_THRESHOLDS[:1]):
                ctx.log(f"  frontier: {peer.label} {t} [{start}-{end}]")
                model = node.execute(tb.model, reuse_threshold=t, start_percent=start, end_percent=end,
                                     verbose=CORE_DEFAULTS["verbose"]).args[0]
                _score(ctx, tb, peer.label, f"{t:g} [{start:g}-{end:g}]", peer.provider, "step cache", model)
    student_method = next((m for m in FEWSTEP_METHODS if m.provider == "fewstep"), None)
    teacache: Method = TEACACHE[0]
    node = teacache.node_class(ctx)
    if student_method is None or student_method.node_class(ctx) is None or node is None:
        return
    student = student_method.apply(None, tb.model, ctx)
    steps, thresholds = STUDENT_TEACACHE
    for t in ctx.pick(thresholds, smoke=thresholds[:1]):
        ctx.log(f"  frontier: student + TeaCache {t}")
        _score(ctx, tb, "FewStep Distill student + FewStep TeaCache", f"{steps} steps, {t:g}", "fewstep", "distilled",
               teacache.apply(node, student, t), **{**student_method.settings, "steps": steps})


def frontier_rows(ctx: BenchContext) -> list[Table]:
    tb = teacher_bench(ctx)
    ref = tb.reference(ctx)
    # The families' own points (memoised: free when they ran in this process).
    ctx.family("caching")
    ctx.family("fewstep")
    _sweeps(ctx, tb)
    points = [p for p in frontier.recorded(ctx) if math.isfinite(p.psnr)]

    rows, winners = [], {}
    for budget in ctx.pick(BUDGETS, smoke=(4, 8)):
        best = {kind: frontier.best_within(points, budget, kind=kind) for kind in frontier.KINDS}
        winner = frontier.best_within(points, budget)
        rows.append((budget, best, winner))
        if winner is not None:
            winners[(winner.method, winner.setting)] = winner
    variants = {f"{p.method}@{p.setting}": tb.timing_run(p.model, **p.overrides) for p in winners.values()}
    ctx.log(f"  frontier: timing {len(variants)} winners x {ctx.repeats} repeats, each next to the teacher")
    base, timings = harness.paired(tb.timing_run(tb.model), variants, ctx.repeats)

    table = Table("frontier", f"Every method on one speed/quality chart ({tb.version})", COLUMNS)
    for budget, best, winner in rows:
        speedup = harness.speedup(base, timings[f"{winner.method}@{winner.setting}"]) if winner else None
        table.add("fewstep" if winner and winner.provider == "fewstep" else "core", budget=budget,
                  sampler=_cell(best["fewer steps"]), cache=_cell(best["step cache"]),
                  distilled=_cell(best["distilled"]), winner=_cell(winner), speedup=speedup)
    teacher_evals = ref.evals_per_sample
    table.notes.append(
        f"Cost: model evaluations per sample (batch rows the UNet evaluates; the teacher's {tb.describe()} costs "
        f"{teacher_evals:g}: cfg > 1 evaluates cond and uncond, a cfg-1 step once, a skipped call not at all). "
        f"Quality: latent PSNR against the teacher's own result on the same {len(ref.labels)} samples, then the share "
        "read as the prompted digit. Each cell is the best point of that kind within the budget. Points come from the "
        "caching and few-step tables plus this family's sweeps: core samplers at "
        f"{', '.join(map(str, SAMPLER_STEPS))} steps, core caches over start/end windows "
        f"{', '.join(f'{a:g}-{b:g}' for a, b in PEER_WINDOWS)} (besides their default 0.15-0.95) at thresholds "
        f"{', '.join(map(str, PEER_THRESHOLDS))}, and the {STUDENT_TEACACHE[0]}-step student with FewStep TeaCache. "
        "FewStep TeaCache (calibrated) calibrates on a seed outside the scored samples. The few-step LoRA presets do "
        "not apply: the teacher is not a distilled model. Wall time: the winner's batch-1 run of digit 7 against the "
        "teacher's, side by side.")
    name = ctx.plot_path("frontier")
    _plot(name, points, teacher_evals)
    table.plots.append(name.name)
    return [table]


def _plot(path, points: list[Point], teacher_evals: float) -> None:
    by_method: dict[str, list[Point]] = {}
    for p in points:
        by_method.setdefault(p.method, []).append(p)
    series_psnr, series_prompted = [], []
    for method, pts in by_method.items():
        pts = frontier.pareto(pts)  # each method at its own best frontier
        xs = [p.evals for p in pts]
        series_psnr.append((method, xs, [p.psnr for p in pts]))
        series_prompted.append((method, xs, [100 * p.prompted for p in pts]))
    best = frontier.pareto(points)
    series_psnr.append((FRONTIER, [p.evals for p in best], [p.psnr for p in best]))
    ticks = sorted({1, 2, 4, 8, 16, 32, round(teacher_evals)})
    harness.plot_panels(path, [("latent PSNR vs teacher (dB)", series_psnr),
                               ("reads as prompted digit (%)", series_prompted)],
                        xlabel="model evaluations per sample (log scale)", xticks=ticks,
                        title="Speed vs quality on the digits teacher: each method at its best settings",
                        styles={FRONTIER: {"color": "black", "linestyle": ":", "linewidth": 2.5, "marker": None}})

"""How far few-step sampling lands from the teacher's own 30-step result: the baseline
every few-step feature (a distilled student, a few-step LoRA, a better solver) must beat.

The teacher is sampled at 1, 2, 4 and 8 steps with core samplers, from the same seeds,
and compared with its 30-step euler result. Adding a FewStep method is one entry in
METHODS: `settings` override the teacher's sampler, scheduler and cfg; with a node, `apply`
(node class, teacher MODEL, bench context) returns the MODEL to sample, as the distilled
student's entry does.
"""

from __future__ import annotations

from . import frontier, harness
from .context import BenchContext
from .distill_student import STUDENT_STEPS
from .harness import Column, Table
from .methods import MAX_ABS, METHOD, PROMPTED, WALL_BATCH1, Method
from .teacher_runs import teacher_bench


def _student(steps: int):
    """apply() of the distilled student: the engine's student MODEL (trained once per run)."""
    def apply(_node, _model, ctx: BenchContext):
        from .distill_student import student

        return student(ctx, teacher_bench(ctx), steps).model

    return apply


def _kind(m: Method) -> str:
    """How the method saves model evaluations, for the frontier chart."""
    return "distilled" if m.node == "FewStepDistillTrainer" else "fewer steps"


METHODS = (
    Method("euler (core, the teacher's sampler)", "core", settings={"sampler": "euler"}),
    Method("euler, cfg 1 (core)", "core", settings={"sampler": "euler", "scheduler": "sgm_uniform", "cfg": 1.0}),
    Method("dpmpp_2m (core)", "core", settings={"sampler": "dpmpp_2m"}),
    Method("uni_pc (core)", "core", settings={"sampler": "uni_pc"}),
    *(Method(f"FewStep Distill student trained for {n} steps (cfg 1)", "fewstep", "FewStepDistillTrainer",
             _student(n), settings={"sampler": "euler", "scheduler": "sgm_uniform", "cfg": 1.0})
      for n in STUDENT_STEPS),
)

COLUMNS = [
    METHOD,
    Column("steps", "steps", "{:d}"),
    Column("calls", "UNet calls / run", "{:.0f}"),
    WALL_BATCH1,
    Column("speedup", "speedup vs 30 steps", "{:.1f}x"),
    Column("psnr", "latent PSNR vs 30-step", harness.fmt_psnr),
    MAX_ABS,
    PROMPTED,
    Column("agrees", "same digit as 30-step", harness.fmt_pct),
]


def fewstep_rows(ctx: BenchContext) -> list[Table]:
    tb = teacher_bench(ctx)
    ref = tb.reference(ctx)
    steps_list = ctx.pick((1, 2, 4, 8), smoke=(1, 4))

    configs = []
    for m in METHODS:
        model = tb.model
        if m.node is not None:
            node = m.node_class(ctx)
            if node is None:  # a FewStep feature that does not exist yet: no row
                continue
            model = m.apply(node, tb.model, ctx)
        for n in steps_list:
            configs.append((m, n, model, {"scheduler": "normal", **m.settings, "steps": n}))

    variants = {f"{m.label}@{n}": tb.timing_run(model, **over) for m, n, model, over in configs}
    ctx.log(f"  timing {len(variants)} variants x {ctx.repeats} repeats, each next to a 30-step run")
    base, timings = harness.paired(tb.timing_run(tb.model), variants, ctx.repeats)

    table = Table("fewstep", f"Few-step sampling vs the teacher's {tb.settings['steps']} steps ({tb.version})", COLUMNS)
    table.add(method=f"teacher: {tb.describe()}", steps=tb.settings["steps"], calls=ref.calls_per_run, wall=base.median,
              speedup=1.0, psnr=float("inf"), max_abs=0.0, prompted=float((ref.predicted == ref.labels).mean()),
              agrees=1.0)
    curves: dict[str, tuple[list, list, list]] = {}  # label -> steps, psnr, prompted
    for m, n, model, over in configs:
        ctx.log(f"  quality {m.label} {n} steps")
        s, q = tb.scored(ctx, (m.label, n), model, **over)
        frontier.record(ctx, frontier.Point(m.label, f"{n}", m.provider, _kind(m), s.evals_per_sample, q.psnr_db, q.prompted,
                                            model, over))
        tm = timings[f"{m.label}@{n}"]
        table.add(m.provider, method=m.label, steps=n, calls=s.calls_per_run, wall=tm.median,
                  speedup=harness.speedup(base, tm), psnr=q.psnr_db, max_abs=q.max_abs, prompted=q.prompted,
                  agrees=q.agrees)
        xs, psnr, prompted = curves.setdefault(m.label, ([], [], []))
        xs.append(n)
        psnr.append(q.psnr_db)
        prompted.append(100 * q.prompted)

    note = (f"Same {len(ref.labels)} samples and seeds as the caching rows; each sampler at n steps (scheduler "
            f"normal and the teacher's cfg {tb.settings['cfg']:g} unless the label says otherwise) against the "
            f"teacher's {tb.settings['steps']}-step {tb.settings['sampler']} result. At cfg 1 a step is one model call "
            "instead of two (cond and uncond are batched into one call here, so the call count hides that). "
            "The distilled student is the teacher plus a LoRA trained by FewStep Distill (bench/distill_student.py, "
            "its seeds are disjoint from these); its training cost is in the distill table. ")
    if not any(m.provider == "fewstep" for m, *_ in configs):
        note += ("No FewStep few-step method exists yet, so these are the core baselines a distilled student or "
                 "few-step LoRA must beat. ")
    note += ("FewStep's `tcd` sampler is not listed: it is meant for TCD-distilled models, and the teacher is "
             "not one.")
    table.notes.append(note)
    if curves:
        name = ctx.plot_path("fewstep")
        ref_steps = tb.settings["steps"]
        harness.plot_panels(name, [(f"latent PSNR vs {ref_steps}-step teacher (dB)",
                                    [(k, v[0], v[1]) for k, v in curves.items()]),
                                   ("reads as prompted digit (%)", [(k, v[0], v[2]) for k, v in curves.items()])],
                            xlabel="sampling steps", xticks=steps_list,
                            title="Few-step sampling of the digits teacher")
        table.plots.append(name.name)
    return [table]

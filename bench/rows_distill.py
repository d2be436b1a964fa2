"""FewStep Distill's cost in `make bench`: teacher generation, training time, iterations per
second, time to the first iteration, held-out quality before and after, and peak memory
with and without gradient checkpointing at 2, 4 and 8 student steps (each in its own
process, since ru_maxrss is a lifetime peak). The student's quality rows sit in the
`fewstep` table beside the core samplers."""

from __future__ import annotations

import json
import subprocess
import sys

from .context import BenchContext
from .distill_student import RECIPE, STEPS_X_ITERATIONS, STUDENT_STEPS, student
from .harness import Column, Table
from .teacher_runs import teacher_bench

COST = [
    Column("what", "what"),
    Column("value", "value"),
]
MEMORY = [
    Column("steps", "student steps", "{:d}"),
    Column("checkpointing", "gradient checkpointing"),
    Column("added", "peak RSS added by training (MB)", "{:.0f}"),
    Column("ratio", "vs 2 steps, same setting", "{:.2f}x"),
]


def _memory(ctx: BenchContext, steps: int, checkpointing: bool) -> dict:
    cmd = [sys.executable, "-P", "-m", f"{__package__}.distill_memory", "--steps", str(steps),
           "--checkpointing", str(int(checkpointing)), "--batch", str(ctx.pick(RECIPE["batch_size"], smoke=4)),
           "--iterations", str(ctx.pick(2, smoke=1))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return json.loads(out)


def distill_rows(ctx: BenchContext) -> list[Table]:
    tb = teacher_bench(ctx)
    cost = Table("distill", "FewStep Distill on the digits teacher: what training each student cost", COST)
    cost.add("fewstep", what="recipe", value=", ".join(f"{k} {v}" for k, v in RECIPE.items()))
    for steps in STUDENT_STEPS:
        s = student(ctx, tb, steps)
        rows = [
            ("teacher samples generated this run", f"{s.teacher_generated} ({s.teacher_seconds:.0f} s incl. reuse check)"),
            ("training time", f"{s.train_seconds:.0f} s for {s.iterations} iterations"),
            ("iterations per second", f"{s.iterations / s.train_seconds:.2f}" if s.train_seconds else "-"),
            ("time to the first iteration (after teacher samples)", f"{s.first_iteration_seconds:.1f} s"),
            ("held-out latent PSNR vs teacher, before -> after",
             f"{s.heldout[0][1]:.2f} -> {s.heldout[-1][1]:.2f} dB" if s.heldout else "-"),
        ]
        for what, value in rows:
            cost.add("fewstep", what=f"{steps}-step student: {what}", value=value)
    cost.notes.append(f"Iterations: {STEPS_X_ITERATIONS} / student steps, one training budget for every step count "
                      "(an iteration unrolls every student step). Held-out: one extra seed per prompt, never trained "
                      "on. The fewstep table measures each student on the bench's own samples (every digit, seeds "
                      "0 + digit) at 1-8 steps.")

    memory = Table("distill_memory", "FewStep Distill: peak memory of training by student steps", MEMORY)
    for checkpointing in (True, False):
        base = None
        for steps in ctx.pick((2, 4, 8), smoke=(2, 4)):
            m = _memory(ctx, steps, checkpointing)
            added = m["peak_mb"] - m["baseline_mb"]
            base = base or added
            memory.add("fewstep", steps=steps, checkpointing="on" if checkpointing else "off", added=added,
                       ratio=added / base if base else float("nan"))
    memory.notes.append("Each row is a fresh process training 2 iterations at the recipe's batch; RSS on CPU stands in "
                        "for VRAM. Goal: with checkpointing, 8 steps within 1.25x of 2 steps.")
    return [cost, memory]

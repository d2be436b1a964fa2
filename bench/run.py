"""`make bench`: FewStep's features measured side by side with ComfyUI's own nodes.

    .venv/bin/python -P -m comfyui_fewstep.bench.run [--preset default|full] [--device cpu|cuda]
        [--repeats 3] [--rows caching,fewstep,lora,tome,tome_flops] [--out bench/results] [--attention sdpa|subquad]
        [--threads N]

Writes <out>/<date>.md and <out>/latest.md (the same table) plus <date>-<family>.png plots.
Row families are registered here, in FAMILIES; a family that does not run keeps its
tables from <out>/latest.md, marked with the date they were measured.
ComfyUI is imported in this process with PyTorch SDPA attention (`--use-pytorch-cross-attention`)
unless --attention subquad; the report states what was actually active.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import (harness, readme_section, rows_caching, rows_distill, rows_fewstep, rows_fewstep_cache, rows_frontier,
               rows_lora, rows_tome, rows_tome_flops)
from .context import BenchContext
from .report_sections import family_sections, kept


@dataclass(frozen=True)
class Family:
    name: str  # as given to --rows / ROWS=
    title: str
    run: Callable[[BenchContext], list[harness.Table]]


# Every row family, in report order.
FAMILIES = (
    Family("caching", "Step caching on the trained teacher",
           lambda ctx: rows_caching.caching_rows(ctx, rows_caching.PEERS + rows_fewstep_cache.TEACACHE)),
    Family("teacache_overhead", "FewStep TeaCache overhead when nothing is skipped", rows_fewstep_cache.overhead_rows),
    # distill trains the students that fewstep and frontier then sample: their training time
    # is reported where it is spent
    Family("distill", "FewStep Distill: training cost and memory", rows_distill.distill_rows),
    Family("fewstep", "Few-step sampling vs the teacher's 30 steps", rows_fewstep.fewstep_rows),
    Family("frontier", "Every method on one speed/quality chart", rows_frontier.frontier_rows),
    Family("lora", "Applying a rank-64 LoRA to full-size SD1.5", rows_lora.lora_rows),
    Family("tome", "Token merging on full-size random UNets", rows_tome.tome_rows),
    Family("tome_flops", "Token merging in FLOPs on full-size UNets", rows_tome_flops.tome_flops_rows),
)
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
ATTENTION_NAMES = {"attention_pytorch": "PyTorch SDPA", "attention_sub_quad": "sub-quadratic",
                   "attention_split": "split", "attention_xformers": "xformers", "attention_basic": "basic",
                   "attention_sage": "SageAttention", "attention_flash": "flash-attn"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -P -m comfyui_fewstep.bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=("default", "full", "smoke"), default="default",
                   help="default: every family at sizes that fit a 2-core CPU; full: adds large sizes (SDXL) and "
                        "100 teacher samples instead of 50; "
                        "smoke: tiny sizes in seconds, to test the harness (numbers meaningless)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats after the warm-up (median reported)")
    p.add_argument("--rows", default="", help="comma-separated row families (default: all): "
                   + ", ".join(f.name for f in FAMILIES))
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default: bench/results, or bench/results/full under --preset full, so a "
                        "full run never replaces the default run's report or the README section made from it)")
    p.add_argument("--attention", choices=("sdpa", "subquad"), default="sdpa",
                   help="sdpa = --use-pytorch-cross-attention (default); subquad = ComfyUI's CPU default")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's own choice, one per core). On a machine shared "
                        "with other jobs, 1 avoids OpenMP oversubscription, which slows small models many-fold")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.out is None:
        args.out = DEFAULT_OUT / "full" if args.preset == "full" else DEFAULT_OUT
    return args


def setup_comfy(device: str, attention: str):
    """Import ComfyUI as a library with the requested device and attention flags. Flags only
    take effect in a process that has not imported comfy.model_management yet; the report
    states what is actually active."""
    import torch

    from ..tools import comfy_runtime as rt

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here (torch "
                         f"{torch.__version__}); run with --device cpu")
    rt.ensure_importable()
    import comfy.cli_args

    if "comfy.model_management" not in sys.modules:
        a = comfy.cli_args.args
        a.cpu = device == "cpu"
        a.use_pytorch_cross_attention = attention == "sdpa"
        a.use_quad_cross_attention = attention == "subquad"
    import comfy.model_management  # noqa: F401
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False  # no tqdm bars from the samplers


def environment(date: str) -> harness.Environment:
    import comfy.ldm.modules.attention as attn
    import comfy.model_management as mm
    import comfyui_version
    import torch

    name = attn.optimized_attention.__name__
    device = mm.get_torch_device()
    dev = str(device)
    if device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)})"
    return harness.Environment(
        date=date, cores=len(os.sched_getaffinity(0)), cpu=harness.cpu_model(),
        memory_gib=harness.memory_gib(), python=platform.python_version(), torch=torch.__version__,
        comfyui=comfyui_version.__version__, attention=f"{ATTENTION_NAMES.get(name, name)} (`{name}`)",
        device=dev, dtype=str(mm.unet_dtype(weight_dtype=torch.float16)).replace("torch.", ""),
        extra={"torch CPU threads": str(torch.get_num_threads()), "Python": platform.python_version()})


def command_line(args: argparse.Namespace, argv) -> str:
    """`make bench ...` when the Makefile makes exactly this call, else the module call."""
    rows = ["--rows", args.rows] if args.rows else []
    if args.preset != "smoke" and list(argv) in (rows, ["--preset", args.preset] + rows):
        return ("make bench" + (" BENCH=full" if args.preset == "full" else "")
                + (f" ROWS={args.rows}" if args.rows else ""))
    return ".venv/bin/python -P -m comfyui_fewstep.bench.run " + " ".join(shlex.quote(a) for a in argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    t_start = time.perf_counter()
    load = harness.LoadMonitor()
    families = {f.name: f for f in FAMILIES}
    wanted = [f.strip() for f in args.rows.split(",") if f.strip()] or list(families)
    unknown = sorted(set(wanted) - set(families))
    if unknown:
        raise SystemExit(f"--rows: unknown row famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
                         f"choose from {list(families)}")
    logging.basicConfig(level=logging.WARNING)
    setup_comfy(args.device, args.attention)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    def log(line: str) -> None:  # minutes since start: where a long run spends its time
        print(f"[{(time.perf_counter() - t_start) / 60:5.1f} min] {line}", flush=True)

    ctx = BenchContext(args.preset, args.repeats, args.device, args.out.resolve(), log=log,
                       families={n: f.run for n, f in families.items()})
    env = environment(ctx.date)
    ctx.log(f"FewStep bench: preset {args.preset}, {args.repeats} repeats, {env.attention}, {env.device}")

    latest = ctx.out_dir / "latest.md"
    previous = family_sections(latest.read_text()) if latest.is_file() else {}
    sections: list[harness.Table | str] = []
    failures, family_times = [], []
    for name, fam in families.items():
        if name not in wanted:
            if name in previous:
                date, text = previous[name]
                sections.append(kept(text, date))
            continue
        ctx.log(f"[{name}] {fam.title}")
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():  # as ComfyUI's executor runs every node
                sections += ctx.family(name)
        except Exception as e:  # report it, keep the other families' results
            traceback.print_exc()
            failures.append(name)
            sections.append(harness.Table(name, fam.title, [], notes=[f"**Failed**: `{type(e).__name__}: {e}`"]))
        family_times.append(f"{name} {(time.perf_counter() - t0) / 60:.1f} min")
        ctx.log(f"[{name}] {time.perf_counter() - t0:.0f} s")
    ctx.free_models()

    total = time.perf_counter() - t_start
    env.extra["time per row family"] = ", ".join(family_times)
    md = harness.render_markdown(env, sections, command_line(args, argv), total_s=total, load=load.report(),
                                 repeats=args.repeats)
    dated, latest = harness.write_report(ctx.out_dir, md, ctx.date)
    ctx.log(f"wrote {dated} and {latest} ({total / 60:.1f} min)")
    complete = all(name in wanted or name in previous for name in families)
    if ctx.out_dir == DEFAULT_OUT.resolve() and args.preset != "smoke" and not failures and complete:
        readme_section.sync()  # every family's latest real results, each with its date
        ctx.log("README.md benchmark section synced")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: FewStep's features measured side by side with ComfyUI's own nodes.

    .venv/bin/python -P -m comfyui_fewstep.bench.run [--preset default|full] [--device cpu|cuda]
        [--repeats 3] [--only caching,fewstep,lora,tome] [--out bench/results] [--attention sdpa|subquad]
        [--threads N]

Writes <out>/<date>.md and <out>/latest.md (the same table) plus <date>-<family>.png plots.
ComfyUI is imported in this process with PyTorch SDPA attention (`--use-pytorch-cross-attention`)
unless --attention subquad; the report states what was actually active.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import platform
import shlex
import sys
import time
import traceback
from pathlib import Path

from . import harness, readme_section
from .context import BenchContext

ROW_MODULES = ("rows_caching", "rows_fewstep_cache", "rows_fewstep", "rows_distill", "rows_lora", "rows_tome")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
ATTENTION_NAMES = {"attention_pytorch": "PyTorch SDPA", "attention_sub_quad": "sub-quadratic",
                   "attention_split": "split", "attention_xformers": "xformers", "attention_basic": "basic",
                   "attention_sage": "SageAttention", "attention_flash": "flash-attn"}


def load_families() -> dict[str, harness.Family]:
    for name in ROW_MODULES:
        importlib.import_module(f"{__package__}.{name}")
    return dict(sorted(harness.FAMILIES.items(), key=lambda kv: kv[1].order))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -P -m comfyui_fewstep.bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=("default", "full", "smoke"), default="default",
                   help="default: fits 40 min on 2 CPU cores; full: adds large sizes (SDXL); "
                        "smoke: tiny sizes in seconds, to test the harness (numbers meaningless)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats after the warm-up (median reported)")
    p.add_argument("--only", default="", help="comma-separated row families (default: all)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    p.add_argument("--attention", choices=("sdpa", "subquad"), default="sdpa",
                   help="sdpa = --use-pytorch-cross-attention (default); subquad = ComfyUI's CPU default")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's own choice, one per core). On a machine shared "
                        "with other jobs, 1 avoids OpenMP oversubscription, which slows small models many-fold")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
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
    if not argv or list(argv) in (["--preset", "default"], ["--preset", "full"]):
        preset = args.preset
        return "make bench" + (" BENCH=full" if preset == "full" else "")
    return ".venv/bin/python -P -m comfyui_fewstep.bench.run " + " ".join(shlex.quote(a) for a in argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    t_start = time.perf_counter()
    load = harness.LoadMonitor()
    families = load_families()
    wanted = [f.strip() for f in args.only.split(",") if f.strip()] or list(families)
    unknown = sorted(set(wanted) - set(families))
    if unknown:
        raise SystemExit(f"--only: unknown row famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
                         f"choose from {sorted(families)}")
    logging.basicConfig(level=logging.WARNING)
    setup_comfy(args.device, args.attention)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = BenchContext(args.preset, args.repeats, args.device, args.out.resolve(),
                       log=lambda s: print(s, flush=True))
    env = environment(ctx.date)
    ctx.log(f"FewStep bench: preset {args.preset}, {args.repeats} repeats, {env.attention}, {env.device}")

    tables: list[harness.Table] = []
    failures, family_times = [], []
    for name in [n for n in families if n in wanted]:
        fam = families[name]
        ctx.log(f"[{name}] {fam.title}")
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():  # as ComfyUI's executor runs every node
                tables += fam.run(ctx)
        except Exception as e:  # report it, keep the other families' results
            traceback.print_exc()
            failures.append(name)
            tables.append(harness.Table(name, fam.title, [], notes=[f"**Failed**: `{type(e).__name__}: {e}`"]))
        family_times.append(f"{name} {(time.perf_counter() - t0) / 60:.1f} min")
        ctx.log(f"[{name}] {time.perf_counter() - t0:.0f} s")
    ctx.free_models()

    total = time.perf_counter() - t_start
    env.extra["time per row family"] = ", ".join(family_times)
    md = harness.render_markdown(env, tables, command_line(args, argv), total_s=total, load=load.report(),
                                 repeats=args.repeats)
    dated, latest = harness.write_report(ctx.out_dir, md, ctx.date)
    ctx.log(f"wrote {dated} and {latest} ({total / 60:.1f} min)")
    if ctx.out_dir == DEFAULT_OUT.resolve() and not failures and set(wanted) == set(families):
        readme_section.sync()  # only a complete run in the committed folder speaks for the README
        ctx.log("README.md benchmark section synced")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

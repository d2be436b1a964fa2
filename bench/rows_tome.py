"""Token merging on random-weight full-size UNets: ComfyUI's TomePatchModel (the peer).

One UNet forward (a one-step euler run at cfg 1 through ComfyUI's KSampler path, batch 1)
timed with and without the patch, side by side, and the difference of the UNet's output
from the unpatched one. ToMe draws its merge partition from torch's global RNG (unseeded in core),
so every call is preceded by torch.manual_seed(0) to make the difference reproducible.

Adding a method (FewStep's token merging when it lands) is one entry in METHODS:

    Method("FewStep ToDo", "fewstep", "FewStepToDo",
           lambda node, model, r: node.execute(model, ratio=r).args[0], values=(0.5,)),
"""

from __future__ import annotations

from typing import Callable

import torch

from . import harness
from ..fewstep.metrics import difference
from .context import BenchContext
from .harness import Column, Table
from .methods import LAYOUT_NAMES, MAX_ABS, METHOD, MODEL, SIZE, Method
from .models import random_conditioning


def _core_tome():
    from comfy_extras.nodes_tomesd import TomePatchModel

    return TomePatchModel


METHODS = (
    Method("TomePatchModel (core)", "core", _core_tome,
           lambda node, model, r: node.execute(model, ratio=r).args[0], values=(0.3, 0.5)),
)


def cases(ctx: BenchContext) -> list[tuple[str, int]]:
    """(layout, px) per preset. SDXL 1024 needs ~10 UNet forwards of ~1.5 min each on 2 CPU
    cores, which does not fit the default run's 40 minutes: it is under --preset full."""
    return ctx.pick(default=[("sd15", 512), ("sd15", 1024)],
                    full=[("sd15", 512), ("sd15", 1024), ("sdxl", 1024), ("sdxl", 1536)],
                    smoke=[("tiny-sd15", 64)])


# From this size on one forward takes a minute or more here: one shared warm-up (the
# unpatched forward) instead of one per variant.
SHARED_WARMUP_PX = 1024

COLUMNS = [
    MODEL,
    SIZE,
    METHOD,
    Column("ratio", "ratio", "{:g}"),
    Column("wall", "one forward (s)", "{:.2f}"),
    Column("speedup", "speedup", "{:.2f}x"),
    Column("psnr", "UNet output PSNR vs unpatched", harness.fmt_psnr),
    MAX_ABS,
]


class OutputCapture:
    """DIFFUSION_MODEL wrapper keeping the UNet's raw output (the noise prediction): the
    denoised latent of a one-step run is dominated by the input noise, which would hide
    how much the patch changed the model."""

    def __init__(self):
        self.last = None

    def __call__(self, executor, *args, **kwargs):
        out = executor(*args, **kwargs)
        self.last = out.detach().float().cpu().clone()
        return out


def one_forward(model, px: int, cond) -> Callable[[], torch.Tensor]:
    """A batch-1, one-step euler run at cfg 1 (one UNet call) -> the UNet's output."""
    import comfy.patcher_extension
    import nodes

    latent = nodes.EmptyLatentImage().generate(px, px, 1)[0]
    capture = OutputCapture()
    m = model.clone()
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "fewstep_bench_capture", capture)

    def run():
        torch.manual_seed(0)
        nodes.common_ksampler(m, 0, 1, 1.0, "euler", "normal", cond, cond, latent)
        return capture.last

    return run


def tome_rows(ctx: BenchContext) -> list[Table]:
    table = Table("tome", "Token merging on random-weight full-size UNets", COLUMNS)
    curves: dict[str, tuple[list, list]] = {}
    for layout, px in cases(ctx):
        model = ctx.random_model(layout)
        cond = random_conditioning(layout, px, px)
        variants = {"unpatched": one_forward(model, px, cond)}
        labels = {}
        for m in METHODS:
            node = m.node_class(ctx)
            if node is None:
                continue
            for r in m.values:
                key = f"{m.label}@{r}"
                variants[key] = one_forward(m.apply(node, model, r), px, cond)
                labels[key] = (m, r)
        ctx.log(f"  {layout} {px}px: {len(variants)} variants x {ctx.repeats} repeats")
        timings = harness.side_by_side(variants, ctx.repeats, warm_each=px < SHARED_WARMUP_PX)
        base = timings["unpatched"]
        name = LAYOUT_NAMES[layout]
        table.add(model=name, size=px, method="unpatched", ratio=None, wall=base.median, speedup=1.0,
                  psnr=float("inf"), max_abs=0.0)
        for key, (m, r) in labels.items():
            tm = timings[key]
            d = difference(base.result, tm.result)
            table.add(m.provider, model=name, size=px, method=m.label, ratio=r, wall=tm.median,
                      speedup=harness.speedup(base, tm), psnr=d.psnr_db, max_abs=d.max_abs)
            xs, ys = curves.setdefault(f"{m.label} {r:g}, {name}", ([], []))
            xs.append(px)
            ys.append(harness.speedup(base, tm))
    table.notes.append(
        "Random weights (ComfyUI's detected SD1.5/SDXL configs, N(0, 0.02) init, the dtype ComfyUI's loader picks "
        "for this device): valid for speed ratios, not image quality. The output compared is the UNet's raw "
        "output (noise prediction) in that call, same input, same seed for ToMe's partition. Core ToMe merges only at the top UNet "
        "level, which SDXL has no attention in, so on SDXL it changes nothing. "
        f"From {SHARED_WARMUP_PX} px on, a forward takes a minute or more here, so the variants share one warm-up "
        "(the unpatched forward) instead of one each.")
    if not ctx.full:
        table.notes.append("SDXL (1024 and 1536 px) runs only under `BENCH=full`: ~10 UNet forwards of 1.5 min "
                           "or more each on 2 CPU cores do not fit the default run's 40-minute budget.")
    if curves:
        path = ctx.plot_path("tome")
        harness.plot_curves(path, [(k, v[0], v[1]) for k, v in curves.items()], xlabel="image size (px)",
                            ylabel="speedup vs unpatched (x)", title="Core token merging, one UNet forward")
        table.plots.append(path.name)
    return [table]

"""Token merging on random-weight full-size UNets: FewStep Token Merge (ToDo, ToMe) beside
ComfyUI's TomePatchModel and HyperTile (the peers).

One UNet forward (a one-step euler run at cfg 1 through ComfyUI's KSampler path, batch 1)
timed with and without each patch, side by side, and the difference of the UNet's output
from the unpatched one. Core ToMe draws its merge partition from torch's global RNG
(unseeded in core) and HyperTile its tiling from Python's, so every call is preceded by
seeding both, to make the difference reproducible. Next to each speedup, the FLOP ratio:
FLOPs of the unpatched forward over the patched one, counted by torch's FlopCounterMode
in a first, untimed run of every variant (it also serves as that variant's warm-up).

Adding a method is one entry in METHODS; `settings["knob"]` names the value it sweeps.
"""

from __future__ import annotations

import random
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from . import harness
from ..fewstep.metrics import difference
from .context import BenchContext
from .harness import Column, Table
from .methods import LAYOUT_NAMES, MAX_ABS, METHOD, MODEL, SIZE, Method
from .models import random_conditioning


def _core(module: str, name: str):
    def load():
        import importlib

        return getattr(importlib.import_module(module), name)

    return load


def _model(out):
    """The MODEL a v3 node returned: io.NodeOutput, or a plain tuple (0.3.75's HyperTile)."""
    return out.args[0] if hasattr(out, "args") else out[0]


def token_merge(method: str, max_depth: int = 1):
    """FewStep Token Merge sweeping `ratio` (tome) or `downsample` (todo), seed 0, whole schedule."""
    def apply(node, model, value):
        ratio, downsample = (value, 2.0) if method == "tome" else (0.5, value)
        return _model(node.execute(model, method, ratio, downsample, max_depth, 0.0, 1.0, 0))

    return apply


METHODS = (
    Method("TomePatchModel (core)", "core", _core("comfy_extras.nodes_tomesd", "TomePatchModel"),
           lambda node, model, r: _model(node.execute(model, ratio=r)), values=(0.3, 0.5), settings={"knob": "ratio"}),
    Method("HyperTile (core)", "core", _core("comfy_extras.nodes_hypertile", "HyperTile"),
           lambda node, model, t: _model(node.execute(model, tile_size=t, swap_size=2, max_depth=0, scale_depth=False)),
           values=(256,), settings={"knob": "tile"}),
    Method("FewStep Token Merge, ToMe", "fewstep", "FewStepTokenMerge", token_merge("tome"), values=(0.3, 0.5),
           settings={"knob": "ratio"}),
    Method("FewStep Token Merge, ToDo", "fewstep", "FewStepTokenMerge", token_merge("todo"), values=(2.0, 3.0),
           settings={"knob": "downsample"}),
    # One level deeper: on SDXL that is the ten-block level, the only setting whose FLOP
    # ratio reaches 1.2x at 1024 px (tome_flops). Not in the default run.
    Method("FewStep Token Merge, ToMe, max_depth 2", "fewstep", "FewStepTokenMerge", token_merge("tome", 2),
           values=(0.5,), settings={"knob": "ratio", "full_only": True}),
    Method("FewStep Token Merge, ToDo, max_depth 2", "fewstep", "FewStepTokenMerge", token_merge("todo", 2),
           values=(2.0,), settings={"knob": "downsample", "full_only": True}),
)


def cases(ctx: BenchContext) -> list[tuple[str, int]]:
    """(layout, px) per preset. On 2 CPU cores one forward takes 3-6 s for SD1.5 at 512 px,
    ~17 s at 1024 px, 23-50 s for SDXL at 1024 px and 1-2 min at 1536 px, ten variants
    each: the default run keeps 512 px, the speedup-by-size curve is under --preset full
    (31 min at --repeats 1, about an hour at 3)."""
    return ctx.pick(default=[("sd15", 512)],
                    full=[("sd15", 512), ("sd15", 1024), ("sdxl", 1024), ("sdxl", 1536)],
                    smoke=[("tiny-sd15", 64)])


SETTING = Column("setting", "setting")  # "<knob> <value>" of the method's row
FLOP_RATIO = Column("flop_ratio", "FLOP ratio", "{:.2f}x")  # FLOPs unpatched / patched
COLUMNS = [
    MODEL, SIZE, METHOD, SETTING,
    Column("wall", "one forward (s)", "{:.2f}"),
    Column("speedup", "speedup", "{:.2f}x"),
    FLOP_RATIO,
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
        random.seed(0)
        nodes.common_ksampler(m, 0, 1, 1.0, "euler", "normal", cond, cond, latent)
        return capture.last

    return run


def _sdpa_flops(query, key, value, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa() -> dict:
    """PyTorch's CPU SDPA kernel is missing from FlopCounterMode's table (torch 2.14): counted
    with the same formula as the GPU kernels (where the op exists)."""
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {op: _sdpa_flops} if op is not None else {}


def swept(ctx: BenchContext, m: Method) -> tuple:
    """The values a method runs at: its strongest (last) one in the default run, so every peer
    keeps a row there; all of them under --preset full, and on smoke's tiny model. `full_only`
    methods run under --preset full alone (smoke's tiny UNet has one level: no max_depth 2)."""
    if m.settings.get("full_only"):
        return ctx.pick(default=(), full=tuple(m.values), smoke=())
    return ctx.pick(default=tuple(m.values[-1:]), full=tuple(m.values), smoke=tuple(m.values))


def counted(fn: Callable[[], torch.Tensor]) -> int:
    """FLOPs of one call of `fn` (matmuls, convolutions, attention)."""
    with FlopCounterMode(display=False, custom_mapping=_cpu_sdpa()) as counter:
        fn()
    return counter.get_total_flops()


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
            for r in swept(ctx, m):
                key = f"{m.label}@{r}"
                variants[key] = one_forward(m.apply(node, model, r), px, cond)
                labels[key] = (m, r)
        ctx.log(f"  {layout} {px}px: {len(variants)} variants x {ctx.repeats} repeats")
        flops = {key: counted(fn) for key, fn in variants.items()}  # also each variant's warm-up
        timings = harness.side_by_side(variants, ctx.repeats, warmup=0)
        base = timings["unpatched"]
        name = LAYOUT_NAMES[layout]
        table.add(model=name, size=px, method="unpatched", setting=None, wall=base.median, speedup=1.0,
                  flop_ratio=1.0, psnr=float("inf"), max_abs=0.0)
        for key, (m, r) in labels.items():
            tm = timings[key]
            d = difference(base.result, tm.result)
            table.add(m.provider, model=name, size=px, method=m.label, setting=f"{m.settings['knob']} {r:g}",
                      wall=tm.median, speedup=harness.speedup(base, tm), flop_ratio=flops["unpatched"] / flops[key],
                      psnr=d.psnr_db, max_abs=d.max_abs)
            xs, ys = curves.setdefault(f"{m.label} {m.settings['knob']} {r:g}, {name}", ([], []))
            xs.append(px)
            ys.append(harness.speedup(base, tm))
    table.notes.append(
        "Random weights (ComfyUI's detected SD1.5/SDXL configs, N(0, 0.02) init, the dtype ComfyUI's loader picks "
        "for this device): valid for speed ratios, not image quality. The output compared is the UNet's raw "
        "output (noise prediction) in that call, same input, same seeds. Core ToMe merges only at the top UNet "
        "level, which SDXL has no attention in, so on SDXL it changes nothing. FewStep's rows use max_depth 1 (the "
        "top level with attention) unless the method says max_depth 2, and seed 0; core HyperTile its defaults (tile 256, swap 2, max_depth 0). "
        "FLOP ratio = FLOPs of the unpatched forward / FLOPs of the patched one (torch FlopCounterMode: matmuls, "
        "convolutions, attention): what the patch could give where compute is the limit. On CPU attention runs "
        "less efficiently than on a GPU, so a CPU speedup above the FLOP ratio is no GPU promise.")
    if not ctx.full:
        table.notes.append("The default run measures SD1.5 at 512 px with each method at its strongest setting; "
                           "`BENCH=full` adds the other settings, max_depth 2, SD1.5 at 1024 px and SDXL at 1024 and 1536 px "
                           "(about an hour on 2 CPU cores; it reports to bench/results/full/).")
    if curves:
        path = ctx.plot_path("tome")
        harness.plot_curves(path, [(k, v[0], v[1]) for k, v in curves.items()], xlabel="image size (px)",
                            ylabel="speedup vs unpatched (x)", title="Token merging, one UNet forward")
        table.plots.append(path.name)
    return [table]

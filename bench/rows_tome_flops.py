"""Token merging in FLOPs: one UNet forward of full-size SD1.5 and SDXL, counted on the meta
device (shapes only: no weights, no memory, seconds per row), with each method of
rows_tome.METHODS and FewStep's at max_depth 2.

The timed rows (rows_tome) cost minutes per forward on a CPU, so large sizes only run
there under `BENCH=full`; a FLOP count bounds what any device can gain where compute is the
limit, at every size, in a minute. The network runs its own forward (`diffusion_model`
with a transformer_options dict as ComfyUI builds it, block patches applied by the
ModelPatcher); the sampler around it adds no FLOPs worth counting. Counted: matmuls,
convolutions and attention (torch's FlopCounterMode, CPU SDPA included). Merging's own
similarity matmul counts too; its gathers and sorts are not FLOPs.
"""

from __future__ import annotations

import torch

from . import harness
from .context import BenchContext
from .harness import Column, Table
from .methods import LAYOUT_NAMES, METHOD, MODEL, SIZE, Method
from .models import CONTEXT, detected_config
from .rows_tome import FLOP_RATIO, METHODS, SETTING, counted, token_merge

DEEPER = (
    Method("FewStep Token Merge, ToMe, max_depth 2", "fewstep", "FewStepTokenMerge", token_merge("tome", 2),
           values=(0.5,), settings={"knob": "ratio"}),
    Method("FewStep Token Merge, ToDo, max_depth 2", "fewstep", "FewStepTokenMerge", token_merge("todo", 2),
           values=(2.0,), settings={"knob": "downsample"}),
)

# Curve labels (the table has the full names); the 0.3 ratios stay in the table only.
SHORT = {"TomePatchModel (core)": "core ToMe", "HyperTile (core)": "core HyperTile",
         "FewStep Token Merge, ToMe": "ToMe", "FewStep Token Merge, ToDo": "ToDo",
         "FewStep Token Merge, ToMe, max_depth 2": "ToMe depth 2", "FewStep Token Merge, ToDo, max_depth 2": "ToDo depth 2"}

COLUMNS = [MODEL, SIZE, METHOD, SETTING, Column("tflop", "TFLOP per forward", "{:.2f}"), FLOP_RATIO]


def cases(ctx: BenchContext) -> list[tuple[str, int]]:
    return ctx.pick(default=[("sd15", 512), ("sd15", 768), ("sd15", 1024), ("sdxl", 1024), ("sdxl", 1536),
                             ("sdxl", 2048)],
                    smoke=[("tiny-sd15", 64)])


def meta_model(layout: str):
    """A ModelPatcher around the full-size `layout` UNet on the meta device (fp16 shapes)."""
    import comfy.model_patcher

    config, _ = detected_config(layout)
    config.set_inference_dtype(torch.float16, None)
    with torch.device("meta"):
        model = config.get_model({}, "", device="meta")
    meta = torch.device("meta")
    return comfy.model_patcher.ModelPatcher(model, load_device=meta, offload_device=meta)


def _sdpa(func, *args, **kwargs):
    from comfy.ldm.modules.attention import attention_pytorch

    return attention_pytorch(*args, **kwargs)


def forward_flops(patcher, layout: str, px: int) -> int:
    """FLOPs of one batch-1 forward at px x px with the patcher's patches applied."""
    import comfy.model_patcher

    def meta(*shape):
        return torch.empty(*shape, device="meta", dtype=torch.float16)

    tokens, width = CONTEXT[layout]
    kwargs = {"y": meta(1, 2816)} if layout == "sdxl" else {}
    options = comfy.model_patcher.create_model_options_clone(patcher.model_options)["transformer_options"]
    options["sigmas"] = torch.tensor([1.0])  # inside every start/end window
    # Attention through SDPA whatever this process picked: sub-quadratic attention asks the
    # device for free memory, which the meta device has none of (same FLOPs either way).
    options["optimized_attention_override"] = _sdpa
    patcher.patch_model(load_weights=False)  # object patches only (ToMe's block forwards)
    try:
        return counted(lambda: patcher.model.diffusion_model(meta(1, 4, px // 8, px // 8), meta(1), context=meta(
            1, tokens, width), transformer_options=options, **kwargs))
    finally:
        patcher.unpatch_model()


def tome_flops_rows(ctx: BenchContext) -> list[Table]:
    table = Table("tome_flops", "Token merging in FLOPs, full-size UNets (meta device)", COLUMNS)
    curves: dict[str, dict[str, tuple[list, list]]] = {}  # model -> curve label -> (px, ratio)
    models: dict[str, object] = {}
    for layout, px in cases(ctx):
        model = models.setdefault(layout, meta_model(layout))
        name = LAYOUT_NAMES[layout]
        base = forward_flops(model, layout, px)
        table.add(model=name, size=px, method="unpatched", setting=None, tflop=base / 1e12, flop_ratio=1.0)
        for m in METHODS + DEEPER:
            node = m.node_class(ctx)
            if node is None:
                continue
            for value in m.values:
                try:
                    patched = m.apply(node, model, value)
                except ValueError as e:  # max_depth beyond a one-level smoke model
                    ctx.log(f"  {m.label} on {name}: {e}")
                    continue
                flops = forward_flops(patched, layout, px)
                setting = f"{m.settings['knob']} {value:g}"
                table.add(m.provider, model=name, size=px, method=m.label, setting=setting, tflop=flops / 1e12,
                          flop_ratio=base / flops)
                if value != 0.3:
                    xs, ys = curves.setdefault(name, {}).setdefault(f"{SHORT.get(m.label, m.label)} {value:g}", ([], []))
                    xs.append(px)
                    ys.append(base / flops)
        ctx.log(f"  {layout} {px}px: {base / 1e12:.2f} TFLOP unpatched")
    table.notes.append(
        "FLOPs of one batch-1 UNet forward (matmuls, convolutions, attention; torch FlopCounterMode), counted on the "
        "meta device: exact for these layouts, no timing. FLOP ratio = unpatched / patched: the most a patch can "
        "gain where compute is the limit (a GPU at large sizes); memory traffic and the merge's own gathers can "
        "take part of it back. FewStep's rows use max_depth 1 unless named; core TomePatchModel merges only at "
        "level 0, where SDXL has no attention. How much each setting changes the output is in the timed table "
        "(SD1.5 512 px) and must be checked on a trained model (FewStep Compare).")
    if curves:
        path = ctx.plot_path("tome-flops")
        panels = [(f"{name}: FLOP ratio vs unpatched (x)", [(k, v[0], v[1]) for k, v in series.items()])
                  for name, series in curves.items()]
        harness.plot_panels(path, panels, xlabel="image size (px)",
                            title="Token merging: FLOPs of one UNet forward, unpatched / patched")
        table.plots.append(path.name)
    return [table]

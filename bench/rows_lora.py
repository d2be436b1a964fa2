"""Applying a LoRA to full-size SD1.5: ComfyUI's LoraLoader (the peer).

A rank-64 LoRA is synthesised (seeded, cached as a file) in kohya naming
(`lora_unet_<diffusers path>.lora_up/lora_down/alpha`) over the modules a real few-step
LoRA such as LCM-LoRA SD1.5 covers: self/cross-attention q/k/v/out, feed-forward,
proj_in/out, ResNet convs and time-embedding projections, shortcut convs and the
down/upsampler convs. Timed from reading the file (a fresh node instance, so its
in-memory cache is empty) to patched weights ready (`load_models_gpu`), on a random-weight
full-size SD1.5 ModelPatcher; the base model is unloaded (weights restored) before each
call. The first call in the process is reported separately from the warm median.

FewStepLoraLoader's first call also hashes the file (once per path, size and mtime),
so its warm median is the cost a user pays on every later run. Each method is one entry
in METHODS; its `apply(ctx, model, lora_name)` returns the patched MODEL.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import torch

from . import harness
from ..tools.tiny_models import cache_dir, save_atomic
from .context import BenchContext
from .harness import Column, Table
from .methods import LAYOUT_NAMES, METHOD, MODEL, Method

LORA_VERSION = "bench-lora-r64-v2"
RANK = 64

# Diffusers module paths (as comfy.utils.unet_to_diffusers names them) the LoRA covers.
TARGETS = re.compile(
    r"(attentions\.\d+\.transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2))"
    r"|attentions\.\d+\.(proj_in|proj_out)"
    r"|resnets\.\d+\.(conv1|conv2|time_emb_proj|conv_shortcut)"
    r"|(down|up)samplers\.0\.conv)\.weight$")


def lora_targets(model_patcher) -> dict[str, torch.Size]:
    """kohya LoRA key prefix -> shape of the weight it patches."""
    import comfy.utils

    unet = model_patcher.model
    shapes = {k: v.shape for k, v in unet.diffusion_model.state_dict().items()}
    out = {}
    for diffusers_key, comfy_key in comfy.utils.unet_to_diffusers(unet.model_config.unet_config).items():
        if TARGETS.search(diffusers_key) and comfy_key in shapes:
            out["lora_unet_" + diffusers_key[: -len(".weight")].replace(".", "_")] = shapes[comfy_key]
    return out


def synth_lora(targets: dict[str, torch.Size], rank: int = RANK, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for prefix, shape in sorted(targets.items()):
        out_ch, in_ch, *kernel = shape
        r = _rank_for(shape, rank)
        down_shape = (r, in_ch, *kernel)
        up_shape = (out_ch, r, 1, 1) if kernel else (out_ch, r)
        sd[prefix + ".lora_down.weight"] = (torch.randn(down_shape, generator=gen) * 0.02).half()
        sd[prefix + ".lora_up.weight"] = (torch.randn(up_shape, generator=gen) * 0.02).half()
        sd[prefix + ".alpha"] = torch.tensor(float(r)).half()
    return sd


def lora_file(model_patcher, layout: str) -> tuple[Path, int, int]:
    """(path, modules, LoRA parameters) of the cached synthetic LoRA for this layout."""
    targets = lora_targets(model_patcher)
    path = cache_dir() / "bench" / LORA_VERSION / f"{layout}-rank{RANK}.safetensors"
    if not path.exists():
        # not fewstep.*: that prefix is the LoRA preset schema FewStepLoraLoader reads
        save_atomic(synth_lora(targets), path, metadata={"bench_lora": LORA_VERSION})
    return path, len(targets), sum(_lora_params(shape) for shape in targets.values())


def _rank_for(shape, rank: int = RANK) -> int:
    out_ch, in_ch, *kernel = shape
    return min(rank, out_ch, in_ch * (kernel[0] * kernel[1] if kernel else 1))


def _lora_params(shape) -> int:
    out_ch, in_ch, *kernel = shape
    fan_in = in_ch * (kernel[0] * kernel[1] if kernel else 1)
    return _rank_for(shape) * (fan_in + out_ch)


def _core_loader(ctx: BenchContext, model, lora_name: str):
    import nodes

    return nodes.LoraLoaderModelOnly().load_lora_model_only(model, lora_name, 1.0)[0]


def _fewstep_loader(ctx: BenchContext, model, lora_name: str):
    from ..fewstep.lora.apply import forget_loaded_loras
    from ..nodes.lora import FewStepLoraLoader

    forget_loaded_loras()  # read the file on every call, like a fresh core node; the hash stays cached
    return FewStepLoraLoader.execute(model, lora_name, 1.0, 1.0).args[0]


METHODS = (
    Method("LoraLoaderModelOnly (core)", "core", apply=_core_loader),
    Method("FewStepLoraLoader (recognition, architecture check, preset)", "fewstep", apply=_fewstep_loader),
)

COLUMNS = [
    METHOD,
    MODEL,
    Column("lora", "LoRA"),
    Column("first", "first call (s)", "{:.2f}"),
    Column("warm", "warm, median (s)", "{:.2f}"),
    Column("node", "of which node: read + map keys (s)", "{:.3f}"),
    Column("patch", "of which load_models_gpu (s)", "{:.2f}"),
    Column("ratio", "warm time / core's, side by side", "{:.3f}"),
    Column("patched", "weights patched"),
]
MIN_REPEATS = 9  # ~3 s a call: cheap, and a 5% question needs more than 3 samples


def _apply_once(method: Method, ctx: BenchContext, model, lora_name: str) -> tuple[dict, int]:
    """Laps {"node", "patch"} of one call from unpatched weights, and how many weights it patched."""
    import comfy.model_management as mm

    mm.unload_all_models()  # untimed: restore unpatched weights first
    sw = harness.Stopwatch()
    with sw.lap("node"):
        patched = method.apply(ctx, model, lora_name)
    with sw.lap("patch"):
        mm.load_models_gpu([patched])
    return sw.laps, len(patched.backup)


def lora_rows(ctx: BenchContext) -> list[Table]:
    """Each method's first call in order, then warm calls interleaved method by method
    (order rotated each repeat), so every ratio compares calls made moments apart."""
    import comfy.model_management as mm
    import folder_paths

    layout = ctx.pick("sd15", smoke="tiny-sd15")
    model = ctx.random_model(layout)
    path, modules, params = lora_file(model, layout)
    folder_paths.add_model_folder_path("loras", str(path.parent))
    table = Table("lora", "Applying a rank-64 LoRA to full-size SD1.5", COLUMNS)
    methods = [m for m in METHODS if m.apply is not None]
    first = {m.label: _apply_once(m, ctx, model, path.name) for m in methods}
    laps: dict[str, list[dict]] = {m.label: [] for m in methods}
    patched: dict[str, list[int]] = {m.label: [first[m.label][1]] for m in methods}
    repeats = max(ctx.repeats, MIN_REPEATS) if not ctx.smoke else ctx.repeats
    for r in range(repeats):
        for i in range(len(methods)):
            m = methods[(r + i) % len(methods)]
            lap, count = _apply_once(m, ctx, model, path.name)
            laps[m.label].append(lap)
            patched[m.label].append(count)
    mm.unload_all_models()
    total = {label: [lap["node"] + lap["patch"] for lap in runs] for label, runs in laps.items()}
    core = total[methods[0].label]
    for m in methods:
        runs = laps[m.label]
        table.add(m.provider, method=m.label, model=LAYOUT_NAMES[layout],
                  lora=f"rank {RANK}, {modules} modules, {params / 1e6:.1f}M params",
                  first=sum(first[m.label][0].values()), warm=statistics.median(total[m.label]),
                  node=statistics.median([lap["node"] for lap in runs]), patch=statistics.median([lap["patch"] for lap in runs]),
                  ratio=statistics.median([t / c for t, c in zip(total[m.label], core)]),
                  patched=f"{min(patched[m.label])}/{modules}")
    table.notes.append(f"Warm calls: {repeats} per method, interleaved (order rotated every repeat); the ratio is the "
                       "median of per-repeat ratios to core's call in the same repeat. A first call per method "
                       "precedes them (FewStep's first call also hashes the file).")
    table.notes.append(
        f"Synthetic rank-{RANK} LoRA in kohya naming covering attention, feed-forward, proj_in/out, ResNet convs, "
        "time-embedding projections, shortcuts and resamplers, like LCM-LoRA SD1.5 (fp16 file, page-cached). "
        "Each call: a fresh `LoraLoaderModelOnly` node (or `FewStepLoraLoader`, its loaded-file cache cleared) "
        "reads the file and maps keys "
        "(`comfy.sd.load_lora_for_models`), then `comfy.model_management.load_models_gpu` writes the patched weights; "
        "the model is unloaded (weights restored) before every call, untimed. 'Weights patched' counts weights "
        "actually changed against the LoRA's modules (an unmatched key would silently do nothing).")
    return [table]

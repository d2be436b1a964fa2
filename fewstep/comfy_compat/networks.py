"""Inside the diffusion networks (comfy.ldm): what TeaCache reads from the first block and
the timestep embedder, and the UNet and DiT (Flux) structure and attention calls token
merging patches.

One small function per reach-in, each with the ComfyUI version it was checked against.
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.ldm.common_dit
import comfy.ldm.flux.layers
import comfy.ldm.flux.model
import comfy.ldm.modules.attention as attention
import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
import comfy.ldm.wan.model
import torch


# ---- model internals TeaCache reads -------------------------------------------------------

def first_block_modulated_input(architecture: str, dm, args: dict) -> torch.Tensor:
    """The first block's timestep-modulated input, from the ("double_block", 0) replace
    patch's args. 0.3.75: Flux/HunyuanVideo double_blocks[0].img_mod/img_norm1 and
    comfy.ldm.flux.layers.apply_mod; LTXV transformer_blocks[0].scale_shift_table and
    comfy.ldm.common_dit.rms_norm; Wan retention mode: the block input `vec` (e0)."""
    img = args["img"]
    if architecture in ("flux", "hunyuan_video"):
        block = dm.double_blocks[0]
        vec = args["vec"]
        if getattr(block, "modulation", True):
            mod1, _ = block.img_mod(vec)
        else:  # global modulation (vec carries the block's modulation already)
            (mod1, _), _ = vec
        return comfy.ldm.flux.layers.apply_mod(block.img_norm1(img), 1 + mod1.scale, mod1.shift, args.get("modulation_dims_img"))
    if architecture == "ltxv":
        table = dm.transformer_blocks[0].scale_shift_table
        t = args["vec"]
        ada = table[None, None].to(device=img.device, dtype=img.dtype) + t.reshape(img.shape[0], t.shape[1], table.shape[0], -1)
        shift, scale = ada[:, :, 0], ada[:, :, 1]
        return comfy.ldm.common_dit.rms_norm(img) * (1 + scale) + shift
    if architecture == "wan21":
        return args["vec"]
    raise ValueError(f"no first-block indicator for {architecture}")


def timestep_embedding(architecture: str, dm, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """The timestep embedding TeaCache reads, from the model's own embedder. 0.3.75: Wan
    time_embedding(sinusoidal_embedding_1d(freq_dim, t)); Lumina 2 t_embedder((1 - t) *
    time_scale)."""
    if architecture == "wan21":
        return dm.time_embedding(comfy.ldm.wan.model.sinusoidal_embedding_1d(dm.freq_dim, timestep.flatten()).to(dtype=x.dtype))
    if architecture == "lumina2":
        return dm.t_embedder((1.0 - timestep) * getattr(dm, "time_scale", 1.0), dtype=x.dtype)
    raise ValueError(f"no timestep-embedding indicator for {architecture}")


# ---- UNet structure and attention patches (token merging) -------------------------------

@dataclass(frozen=True)
class UNetLayout:
    """Where a UNet's transformer blocks sit. `levels` maps the block keys ComfyUI puts in
    transformer_options["block"] (("input", i), ("middle", 0), ("output", i)) to their
    level (downsamplings above them, 0 = full resolution); `blocks` lists every
    BasicTransformerBlock as (path under diffusion_model, block key, level)."""

    levels: dict
    blocks: tuple

    @property
    def attention_levels(self) -> tuple[int, ...]:
        return tuple(sorted({level for _path, _key, level in self.blocks}))


def unet_layout(model_patcher) -> UNetLayout | None:
    """The layout of an SD-style UNet read from its modules, or None for other networks.
    0.3.75: comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel keeps input_blocks,
    middle_block, output_blocks (TimestepEmbedSequential); a Downsample module in an input
    block lowers the level of the blocks after it, an Upsample in an output block (its
    last module) lowers the level of the blocks after it; attention lives in
    SpatialTransformer.transformer_blocks (comfy.ldm.modules.attention.BasicTransformerBlock)."""
    dm = getattr(model_patcher.model, "diffusion_model", None)
    if not isinstance(dm, openaimodel.UNetModel):
        return None
    levels, level = {}, 0
    for i, block in enumerate(dm.input_blocks):
        levels[("input", i)] = level
        level += any(isinstance(m, openaimodel.Downsample) for m in block)
    levels[("middle", 0)] = level
    for i, block in enumerate(dm.output_blocks):
        levels[("output", i)] = level
        level -= any(isinstance(m, openaimodel.Upsample) for m in block)
    blocks = []
    groups = [("input_blocks", "input", dm.input_blocks), ("output_blocks", "output", dm.output_blocks)]
    if dm.middle_block is not None:
        groups.insert(1, ("middle_block", "middle", [dm.middle_block]))
    for attr, kind, container in groups:
        for i, block in enumerate(container):
            key = (kind, i)
            prefix = attr if kind == "middle" else f"{attr}.{i}"
            for name, module in block.named_modules():
                if type(module) is attention.BasicTransformerBlock:
                    blocks.append((f"{prefix}.{name}", key, levels[key]))
    return UNetLayout(levels, tuple(blocks))


def attention_block_key(options: dict):
    """The UNet block a patch runs in: ("input", i), ("middle", 0) or ("output", i).
    0.3.75: UNetModel.forward sets transformer_options["block"]; attn patches get it in
    extra_options."""
    return options.get("block")


def attention_grid(options: dict) -> tuple[int, int] | None:
    """(h, w) of the feature map whose tokens a transformer block sees. 0.3.75:
    SpatialTransformer.forward sets transformer_options["activations_shape"] = [b, c, h, w]
    before its blocks run; attn patches get it in extra_options."""
    shape = options.get("activations_shape")
    return (int(shape[-2]), int(shape[-1])) if shape is not None and len(shape) == 4 else None


def call_sigma(options: dict) -> float | None:
    """The sigma of the current model call. 0.3.75: _calc_cond_batch puts the batch's
    sigmas (one per row, all equal) in transformer_options["sigmas"]."""
    sigmas = options.get("sigmas")
    if isinstance(sigmas, torch.Tensor) and sigmas.numel():
        return float(sigmas.flatten()[0])
    return None


def block_forward_options(args: tuple, kwargs: dict) -> dict:
    """transformer_options of a call to BasicTransformerBlock.forward(x, context=None,
    transformer_options={}). 0.3.75: SpatialTransformer passes it as a keyword."""
    if "transformer_options" in kwargs:
        return kwargs["transformer_options"] or {}
    return args[1] if len(args) > 1 and isinstance(args[1], dict) else {}


def block_forward_key(path: str) -> str:
    """The object-patch key of the `forward` of the module at `path` under the diffusion
    model. 0.3.75: ModelPatcher object patches are set with comfy.utils.set_attr on
    BaseModel, whose network is the attribute `diffusion_model`; an instance attribute
    `forward` is what torch.nn.Module.__call__ runs."""
    return f"diffusion_model.{path}.forward"


# ---- DiT attention (token merging) ----------------------------------------------------------

@dataclass(frozen=True)
class FluxLayout:
    """A Flux network: latent pixels per token side, and its block groups as (name, count)
    in the order they run, named as transformer_options["block_type"] names them."""

    patch_size: int
    groups: tuple


def flux_layout(model_patcher) -> FluxLayout | None:
    """The layout of a Flux network (FLUX.1, Kontext, FLUX.2), or None for other networks.
    0.3.75: model_base.Flux/Flux2 run comfy.ldm.flux.model.Flux, whose forward_orig runs
    double_blocks then single_blocks, with the joint sequence [text, image, reference
    images] in both (DoubleStreamBlock cats (txt, img) unless flipped_img_txt, which Flux
    never sets; the single blocks get cat((txt, img))), RoPE applied to q and k in
    comfy.ldm.flux.math.attention before optimized_attention. 0.14.0 removed
    flipped_img_txt (text always first; checked in 0.33.0): a missing flag means unflipped."""
    dm = getattr(model_patcher.model, "diffusion_model", None)
    if type(dm) is not comfy.ldm.flux.model.Flux:
        return None
    if any(getattr(b, "flipped_img_txt", False) for b in dm.double_blocks):
        return None
    groups = tuple((name, len(blocks)) for name, blocks in (("double", dm.double_blocks), ("single", dm.single_blocks))
                   if len(blocks))
    return FluxLayout(int(dm.patch_size), groups)


def flux_call_tokens(args: tuple, kwargs: dict, patch_size: int) -> tuple[int, tuple[int, int], int]:
    """(text tokens, (h, w) of the image's token grid, all tokens) of a Flux DIFFUSION_MODEL
    wrapper call. 0.3.75: Flux.forward passes (x, timestep, context, y, guidance,
    ref_latents, control, transformer_options) on positionally; _forward pads x to the patch
    size, so the grid is ((h + p // 2) // p, (w + p // 2) // p), and every reference latent
    adds its own grid after the image's."""
    context = args[2] if len(args) > 2 else kwargs["context"]
    refs = args[5] if len(args) > 5 else kwargs.get("ref_latents")

    def grid(t: torch.Tensor) -> tuple[int, int]:
        return (t.shape[-2] + patch_size // 2) // patch_size, (t.shape[-1] + patch_size // 2) // patch_size

    h, w = grid(args[0])
    total = context.shape[1] + h * w + sum(gh * gw for gh, gw in map(grid, refs or ()))
    return int(context.shape[1]), (h, w), int(total)


def dit_block(options: dict) -> tuple[str | None, int | None]:
    """(block type, index) of the DiT block running. 0.3.75: Flux.forward_orig sets
    transformer_options["block_type"] ("double"/"single") and ["block_index"]."""
    return options.get("block_type"), options.get("block_index")


ATTENTION_OVERRIDE = "optimized_attention_override"


def attention_override(options: dict):
    """The override in the single slot every optimized_attention call goes through, or
    None. 0.3.75: comfy.ldm.modules.attention.wrap_attn calls
    transformer_options["optimized_attention_override"](func, *args, **kwargs) with `func`
    the undecorated attention function."""
    return options.get(ATTENTION_OVERRIDE)


def set_attention_override(options: dict, override) -> None:
    """Put `override` in the slot (None empties it). 0.3.75: see attention_override."""
    if override is None:
        options.pop(ATTENTION_OVERRIDE, None)
    else:
        options[ATTENTION_OVERRIDE] = override


def attention_call(args: tuple, kwargs: dict):
    """(q, k, v, mask, transformer_options) of an optimized_attention call as an override
    receives it (without `func`), q/k/v as [B, heads, tokens, dim]; None when they come
    unsplit. 0.3.75: optimized_attention(q, k, v, heads, mask=None, attn_precision=None,
    skip_reshape=False, ..., transformer_options=...); Flux passes skip_reshape=True, mask
    and transformer_options as keywords."""
    if not kwargs.get("skip_reshape") or len(args) < 4:
        return None
    mask = kwargs.get("mask", args[4] if len(args) > 4 else None)
    return args[0], args[1], args[2], mask, kwargs.get("transformer_options") or {}


def with_attention_kv(args: tuple, k: torch.Tensor, v: torch.Tensor) -> tuple:
    """The arguments of an optimized_attention call with other keys and values. 0.3.75:
    (q, k, v, heads, ...)."""
    return (args[0], k, v, *args[3:])


def with_attention_mask(args: tuple, kwargs: dict, mask: torch.Tensor) -> tuple[tuple, dict]:
    """(args, kwargs) of an optimized_attention call with another mask. 0.3.75: `mask` is
    the fifth parameter; Flux passes it as a keyword."""
    if "mask" in kwargs or len(args) <= 4:
        return args, {**kwargs, "mask": mask}
    return (*args[:4], mask, *args[5:]), kwargs

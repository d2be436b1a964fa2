"""Tiny in-process models of every family FewStep's caching and token merging support.

Each model is built from ComfyUI's own `comfy.supported_models.<Class>` with a reduced
unet_config (real layout and head size, small width, 1-2 blocks) and wrapped in a
`comfy.model_patcher.ModelPatcher` the way `comfy.sd.load_diffusion_model_state_dict`
does, so wrappers, patches, sampling and model management behave as with real weights.
The DiTs' text encoders (T5-XXL, umt5-xxl, Llama, Qwen2.5-VL, Gemma) are far too large
for tests, so conditioning is random tensors in the shapes those encoders give
ComfyUI's samplers. Random weights say nothing about image quality: use these models
for plumbing, exactness and speed-ratio tests only.

Which hook reaches which family (ComfyUI 0.3.75, verified by tests/comfy/test_tiny_families.py):

- `WrappersMP.DIFFUSION_MODEL` wraps `diffusion_model.forward` of the UNet (SD1.5,
  SDXL), Flux, Qwen-Image, Wan 2.1, HunyuanVideo, LTXV and Lumina2, once per cond batch
  and step, with the model's own forward arguments (x, timestep, context, ...).
- SD3 / MMDiT (`comfy.ldm.modules.diffusionmodules.mmdit.OpenAISignatureMMDITWrapper`)
  has no DIFFUSION_MODEL executor: wrappers of that type are never called. What does
  reach it:
  * `WrappersMP.APPLY_MODEL` (wraps `BaseModel.apply_model`, every family): args
    (x, t, c_concat, c_crossattn, control, transformer_options, **kwargs with `y`),
    x is the *noisy latent in sigma space* and the result is the *denoised* latent, not
    the raw model output; a step cache there caches denoised outputs.
  * `transformer_options["patches_replace"]["dit"][("double_block", i)]`
    (`ModelPatcher.set_model_patch_replace(fn, "dit", "double_block", i)`): called for
    joint block i with {"img", "txt", "vec", "transformer_options"} and
    {"original_block": f}; must return {"img", "txt"}. This is the per-block hook for a
    first-block cache on SD3. Flux, Qwen-Image, Wan, HunyuanVideo and LTXV honour the
    same "dit"/"double_block" key (Flux/HunyuanVideo also ("single_block", i));
    Lumina2 has no per-block hook at all; the UNets have their own (read from
    openaimodel.py: `transformer_options["patches"]["input_block_patch"]`,
    "output_block_patch", attn1/attn2 patches, replace patches keyed ("input", id)).
  * The older single-slot `set_model_unet_function_wrapper` (called with
    model.apply_model in comfy/samplers.py) and the CALC_COND_BATCH / PREDICT_NOISE
    wrappers, which all sit above apply_model.

`FIRST_BLOCK` and `TIMESTEP_MODULATION` name, relative to `BaseModel.diffusion_model`,
the first transformer block and what gives its input the timestep (TeaCache's
indicator is the relative L1 change of that modulated input). The UNet paths hold for
the real SD1.5/SDXL layouts too (the tiny layouts keep the same block numbering).

`LOADER_ROUND_TRIP` families keep the sizes ComfyUI's detection derives from a file
(e.g. Wan/HunyuanVideo heads = width // 128), so their state dict loads through
`comfy.sd.load_diffusion_model_state_dict` (UNETLoader) into the same model. The others
deviate on purpose: Flux and Qwen-Image pin width 3072, LTXV pins 32 heads, Lumina2
reads heads only for its real widths, SDXL pins its full transformer depth.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
from dataclasses import dataclass, field

import torch

from . import comfy_runtime as rt
from . import tiny_models

FAMILIES: tuple[str, ...] = (
    "sd15", "sdxl", "sd3", "flux", "qwen_image", "wan21", "hunyuan_video", "ltxv", "lumina2",
)

# Families whose diffusion_model.forward runs WrappersMP.DIFFUSION_MODEL wrappers.
REACHED_BY_DIFFUSION_MODEL_WRAPPER = frozenset(FAMILIES) - {"sd3"}
# Families honouring transformer_options["patches_replace"]["dit"][("double_block", i)].
HONOURS_DIT_DOUBLE_BLOCK_REPLACE = frozenset({"sd3", "flux", "qwen_image", "wan21", "hunyuan_video", "ltxv"})

# Families whose tiny state dict ComfyUI's UNet loader turns back into the same model.
LOADER_ROUND_TRIP = frozenset({"sd15", "sd3", "wan21", "hunyuan_video"})

# Module path (under BaseModel.diffusion_model) of each family's first transformer block
# (Lumina2: of the main stack; its context/noise refiner blocks run before it).
FIRST_BLOCK: dict[str, str] = {
    "sd15": "input_blocks.1.1.transformer_blocks.0",
    "sdxl": "input_blocks.4.1.transformer_blocks.0",  # SDXL has no attention at level 0
    "sd3": "joint_blocks.0",
    "flux": "double_blocks.0",
    "qwen_image": "transformer_blocks.0",
    "wan21": "blocks.0",
    "hunyuan_video": "double_blocks.0",
    "ltxv": "transformer_blocks.0",
    "lumina2": "layers.0",
}

# (what injects the timestep, the norm whose output it scales/shifts) for the first
# block. A path may name a module or a parameter; None: the norm is functional or absent.
TIMESTEP_MODULATION: dict[str, tuple[str, str | None]] = {
    # UNets have no adaLN: the timestep enters through each ResBlock's emb_layers; the
    # first transformer block reads the output of the ResBlock just before it.
    "sd15": ("input_blocks.1.0.emb_layers", None),
    "sdxl": ("input_blocks.4.0.emb_layers", None),
    "sd3": ("joint_blocks.0.x_block.adaLN_modulation", "joint_blocks.0.x_block.norm1"),
    # Flux TeaCache: img_norm1(img) * (1 + img_mod(vec).scale) + shift.
    "flux": ("double_blocks.0.img_mod", "double_blocks.0.img_norm1"),
    "qwen_image": ("transformer_blocks.0.img_mod", "transformer_blocks.0.img_norm1"),
    # Wan: the block adds its `modulation` parameter to e0 = time_projection(e); TeaCache
    # uses e0 (or e = time_embedding(...) in retention mode) directly.
    "wan21": ("blocks.0.modulation", "blocks.0.norm1"),
    "hunyuan_video": ("double_blocks.0.img_mod", "double_blocks.0.img_norm1"),
    # LTXV: scale_shift_table + adaln_single(t); the norm is the functional rms_norm.
    "ltxv": ("transformer_blocks.0.scale_shift_table", None),
    "lumina2": ("layers.0.adaLN_modulation", "layers.0.attention_norm1"),
}


@dataclass(frozen=True)
class _Spec:
    """How to build one family: the supported_models class and reduced config, the
    latent ComfyUI's empty-latent node gives it, and its text encoder's output shape."""

    config_class: str
    unet_config: dict
    latent_shape: tuple[int, ...]
    context_width: int
    context_tokens: tuple[int, int]  # (positive, negative) sequence lengths
    pooled_width: int | None = None
    extra: dict = field(default_factory=dict)  # constant conditioning entries (guidance)
    mask: str | None = None  # "ones": mask of all ones; "padded": prompt then padding
    pad_to: int | None = None  # encoder pads every prompt to this many tokens
    zero_padding: bool = False  # encoder zeroes the padded positions (umt5 for Wan)
    scheduler: str = "simple"
    init: str = "fan_in"


# Latents are those of a 64x64 image (LTXV: 128x128, 9 frames; Wan/Hunyuan: 5 frames),
# batch 1. Qwen-Image's latent is 5-D because its latent format is Wan 2.1's
# (comfy.sample.fix_empty_latent_channels adds the frame axis to an empty 4-D latent).
_SPECS: dict[str, _Spec] = {
    # The UNet of tools.tiny_models' cached SD1.5 checkpoint (same seed, same weights).
    "sd15": _Spec(
        "SD15", dict(tiny_models.TINY_SD15_UNET), (1, 4, 8, 8), 768, (77, 77),
        pooled_width=768, scheduler="normal", init="tiny_models",
    ),
    # Two levels; level 0 without attention and two res blocks per level, as in SDXL.
    "sdxl": _Spec(
        "SDXL",
        {
            "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 64,
            "num_res_blocks": [2, 2], "channel_mult": [1, 2], "transformer_depth": [0, 0, 1, 1],
            "transformer_depth_output": [0, 0, 0, 1, 1, 1], "transformer_depth_middle": 1,
            "use_spatial_transformer": True, "legacy": False, "context_dim": 2048,
            "use_linear_in_transformer": True, "adm_in_channels": 2816, "num_classes": "sequential",
            "use_temporal_attention": False, "use_checkpoint": False,
        },
        (1, 4, 8, 8), 2048, (77, 77), pooled_width=1280, scheduler="normal",
    ),
    # MMDiT: hidden = 64 * depth, heads = depth (ComfyUI's rule); SD3-medium-like otherwise.
    "sd3": _Spec(
        "SD3",
        {
            "in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 2, "input_size": None,
            "adm_in_channels": 2048, "pos_embed_scaling_factor": None, "pos_embed_max_size": 32,
            "num_patches": 32 * 32, "x_block_self_attn_layers": [],
            "context_embedder_config": {"target": "torch.nn.Linear",
                                        "params": {"in_features": 4096, "out_features": 128}},
        },
        (1, 16, 8, 8), 4096, (154, 154), pooled_width=2048,
    ),
    # Head dim 128 with RoPE axes 16/56/56 as in Flux; 2 heads, 1 double + 1 single block.
    "flux": _Spec(
        "Flux",
        {
            "image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 768,
            "context_in_dim": 4096, "hidden_size": 256, "mlp_ratio": 4.0, "num_heads": 2,
            "depth": 1, "depth_single_blocks": 1, "axes_dim": [16, 56, 56], "theta": 10000,
            "patch_size": 2, "qkv_bias": True, "guidance_embed": True,
        },
        (1, 16, 8, 8), 4096, (256, 256), pooled_width=768, extra={"guidance": 3.5},
    ),
    "qwen_image": _Spec(
        "QwenImage",
        {
            "image_model": "qwen_image", "patch_size": 2, "in_channels": 64, "out_channels": 16,
            "num_layers": 2, "attention_head_dim": 128, "num_attention_heads": 2,
            "joint_attention_dim": 3584, "axes_dims_rope": (16, 56, 56),
        },
        (1, 16, 1, 8, 8), 3584, (24, 12),
    ),
    # heads = dim // 128, as ComfyUI's detection derives it from a Wan file.
    "wan21": _Spec(
        "WAN21_T2V",
        {
            "image_model": "wan2.1", "model_type": "t2v", "dim": 256, "ffn_dim": 512,
            "num_heads": 2, "num_layers": 2, "in_dim": 16, "out_dim": 16, "text_dim": 4096,
            "patch_size": (1, 2, 2), "freq_dim": 256, "window_size": (-1, -1),
            "qk_norm": True, "cross_attn_norm": True, "eps": 1e-6,
        },
        (1, 16, 2, 8, 8), 4096, (20, 40), pad_to=512, zero_padding=True,
    ),
    "hunyuan_video": _Spec(
        "HunyuanVideo",
        {
            "image_model": "hunyuan_video", "in_channels": 16, "out_channels": 16,
            "patch_size": [1, 2, 2], "vec_in_dim": 768, "context_in_dim": 4096,
            "hidden_size": 256, "mlp_ratio": 4.0, "num_heads": 2, "depth": 1,
            "depth_single_blocks": 1, "axes_dim": [16, 56, 56], "theta": 256, "qkv_bias": True,
            "guidance_embed": True, "byt5": False, "meanflow": False,
            "use_cond_type_embedding": False, "vision_in_dim": None,
        },
        (1, 16, 2, 8, 8), 4096, (24, 12), pooled_width=768, extra={"guidance": 6.0},
    ),
    # LTXV's T5 pads to 128 tokens and always returns the attention mask (its forward
    # requires one).
    "ltxv": _Spec(
        "LTXV",
        {
            "image_model": "ltxv", "in_channels": 128, "num_layers": 2, "attention_head_dim": 64,
            "num_attention_heads": 2, "cross_attention_dim": 128, "caption_channels": 4096,
        },
        (1, 128, 2, 4, 4), 4096, (20, 10), mask="padded", pad_to=128,
    ),
    # Gemma-2-2B context (2304 wide); grouped-query attention as in Lumina 2 (2 q, 1 kv head).
    "lumina2": _Spec(
        "Lumina2",
        {
            "image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 192,
            "cap_feat_dim": 2304, "n_layers": 2, "n_refiner_layers": 1, "n_heads": 2,
            "n_kv_heads": 1, "qk_norm": True, "axes_dims": [32, 32, 32],
            "axes_lens": [300, 512, 512], "rope_theta": 10000.0, "ffn_dim_multiplier": 4.0,
        },
        (1, 16, 8, 8), 2304, (24, 12), mask="ones",
    ),
}


@dataclass
class TinyFamily:
    """A ready-to-sample tiny model: pass these to `nodes.common_ksampler` or
    `comfy.sample.sample` as they are."""

    name: str
    model: object  # comfy.model_patcher.ModelPatcher
    positive: list  # ComfyUI conditioning: [[context, {"pooled_output": ..., ...}]]
    negative: list
    latent: dict  # {"samples": zeros of the family's latent shape}
    sampler: str = "euler"
    scheduler: str = "simple"


def _is_norm(module: torch.nn.Module) -> bool:
    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._BatchNorm)
    if hasattr(torch.nn, "RMSNorm"):
        norm_types += (torch.nn.RMSNorm,)
    # Flux/HunyuanVideo's own RMSNorm keeps its gain in a parameter called `scale`.
    return isinstance(module, norm_types) or "Norm" in type(module).__name__


def init_weights_fan_in(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Deterministic init that keeps a DiT's adaLN modulation alive.

    With N(0, 0.02) everywhere (tiny_models.init_weights) the timestep MLP and the adaLN
    layers shrink their outputs so far that every gate is ~0: blocks add nothing and the
    timestep barely matters, so a step cache would look perfect. Linear/conv weights are
    N(0, 1/fan_in) here, which keeps activations, gates and outputs near unit scale.
    Norms 1/0, biases 0, free parameters (Wan's and LTXV's modulation tables, pad
    tokens) N(0, 1/width) as in the upstream code.
    Nothing is zero-initialised, so outputs depend on input, timestep and context.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            owner_name, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            if _is_norm(owner):
                param.fill_(0.0 if leaf == "bias" else 1.0)
            elif leaf == "bias":
                param.zero_()
            elif isinstance(owner, torch.nn.Embedding):
                param.copy_(torch.randn(param.shape, generator=gen))
            elif isinstance(owner, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)) and leaf == "weight":
                param.copy_(torch.randn(param.shape, generator=gen) / math.sqrt(param[0].numel()))
            else:
                param.copy_(torch.randn(param.shape, generator=gen) / math.sqrt(param.shape[-1]))
    return module


def _fill_buffers(name: str, model) -> None:
    """Buffers that ComfyUI allocates with torch.empty and a real file would fill."""
    dm = model.diffusion_model
    if name == "sd3" and dm.pos_embed is not None:
        import comfy.ldm.modules.diffusionmodules.mmdit as mmdit

        size = dm.pos_embed_max_size
        emb = mmdit.get_2d_sincos_pos_embed_torch(dm.hidden_size, size, size)
        dm.pos_embed.copy_(emb.reshape(dm.pos_embed.shape))


# Required parameters newer ComfyUI added to a family's params dataclass (0.4.0: FluxParams
# txt_ids_dims, HunyuanVideoParams meanflow_sum), with the value ComfyUI's model detection
# gives the original Flux.1 / HunyuanVideo files. Older ComfyUI rejects the keys, so each is
# added only when the dataclass has the field (capability probe, no version string).
_NEWER_PARAMS: dict[str, tuple[str, str, dict]] = {
    "flux": ("comfy.ldm.flux.model", "FluxParams", {"txt_ids_dims": []}),
    "hunyuan_video": ("comfy.ldm.hunyuan_video.model", "HunyuanVideoParams", {"meanflow_sum": False}),
}


def unet_config(name: str) -> dict:
    """The family's reduced unet_config, completed for the running ComfyUI's params dataclass."""
    config = dict(_SPECS[name].unet_config)
    if name in _NEWER_PARAMS:
        module, cls, values = _NEWER_PARAMS[name]
        fields = {f.name for f in dataclasses.fields(getattr(importlib.import_module(module), cls))}
        config.update({k: v for k, v in values.items() if k in fields and k not in config})
    return config


def with_context_windows(model, context_length: int, context_overlap: int, dim: int, fuse_method: str = "pyramid"):
    """Core ContextWindowsManualNode on `model` (static standard schedule, stride 1, open
    loop). Its execute gained a required `freenoise` argument after 0.3.75: passed (off)
    only when the signature has it (capability probe), since 0.3.75 rejects it."""
    from comfy_extras.nodes_context_windows import ContextWindowsManualNode

    kwargs = dict(model=model, context_length=context_length, context_overlap=context_overlap,
                  context_schedule="standard_static", context_stride=1, closed_loop=False,
                  fuse_method=fuse_method, dim=dim)
    if "freenoise" in inspect.signature(ContextWindowsManualNode.execute).parameters:
        kwargs["freenoise"] = False
    out = ContextWindowsManualNode.execute(**kwargs)
    return out.result[0] if hasattr(out, "result") else out.args[0]


def build_model(name: str, seed: int = 0, dtype: torch.dtype | None = None):
    """The family's BaseModel in a ModelPatcher, created as ComfyUI's loaders create them.

    Mirrors comfy.sd.load_diffusion_model_state_dict: choose the unet dtype for the load
    device (float32 on CPU), set it on the model config, get_model, move to the offload
    device, wrap in ModelPatcher(load_device, offload_device).
    """
    rt.import_comfy_for_library_use()
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    spec = _SPECS[name]
    config = getattr(comfy.supported_models, spec.config_class)(unet_config(name))
    load_device = mm.get_torch_device()
    offload_device = mm.unet_offload_device()
    supported = list(config.supported_inference_dtypes)
    unet_dtype = dtype or mm.unet_dtype(model_params=0, supported_dtypes=supported, weight_dtype=torch.float32)
    config.set_inference_dtype(unet_dtype, mm.unet_manual_cast(unet_dtype, load_device, supported))

    with torch.random.fork_rng(devices=[]):  # some ComfyUI modules draw from the global RNG
        model = config.get_model({})
    if spec.init == "tiny_models":
        tiny_models.init_weights(model, seed=seed)
    else:
        init_weights_fan_in(model, seed=seed)
    with torch.no_grad():
        _fill_buffers(name, model)
    model = model.to(offload_device)
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def random_conditioning(name: str, seed: int, tokens: int | None = None, batch: int = 1) -> list:
    """One conditioning entry shaped like the family's text encoder output.

    `tokens` is the prompt length (the spec's positive length by default); encoders that
    pad (umt5 for Wan, T5 for LTXV) pad to their fixed length, as ComfyUI's do.
    """
    spec = _SPECS[name]
    gen = torch.Generator().manual_seed(seed)
    n = tokens or spec.context_tokens[0]
    length = max(n, spec.pad_to or 0)
    context = torch.randn((batch, length, spec.context_width), generator=gen)
    if spec.zero_padding:
        context[:, n:] = 0.0
    extra: dict = dict(spec.extra)
    if spec.pooled_width:
        extra["pooled_output"] = torch.randn((batch, spec.pooled_width), generator=gen)
    if spec.mask == "ones":
        extra["attention_mask"] = torch.ones((batch, length), dtype=torch.long)
    elif spec.mask == "padded":
        mask = torch.zeros((batch, length), dtype=torch.long)
        mask[:, :n] = 1
        extra["attention_mask"] = mask
    return [[context, extra]]


def build(name: str, seed: int = 0, dtype: torch.dtype | None = None) -> TinyFamily:
    """Tiny model of `name` (one of FAMILIES) with seeded weights and random prompts."""
    if name not in _SPECS:
        raise KeyError(f"unknown family {name!r}; choose one of {', '.join(FAMILIES)}")
    spec = _SPECS[name]
    pos_tokens, neg_tokens = spec.context_tokens
    return TinyFamily(
        name=name,
        model=build_model(name, seed, dtype),
        positive=random_conditioning(name, seed * 2 + 1000, pos_tokens),
        negative=random_conditioning(name, seed * 2 + 1001, neg_tokens),
        latent={"samples": torch.zeros(spec.latent_shape)},
        scheduler=spec.scheduler,
    )


def diffusion_model(family: TinyFamily) -> torch.nn.Module:
    """The network the FIRST_BLOCK / TIMESTEP_MODULATION paths are relative to."""
    return family.model.model.diffusion_model


def resolve(root: torch.nn.Module, path: str):
    """Module or parameter at a dotted path (e.g. "blocks.0.modulation")."""
    owner, _, leaf = path.rpartition(".")
    parent = root.get_submodule(owner) if owner else root
    target = getattr(parent, leaf)
    if not isinstance(target, (torch.nn.Module, torch.nn.Parameter)):
        raise AttributeError(f"{path} is a {type(target).__name__}, not a module or parameter")
    return target

"""Small models built from ComfyUI's own classes, for tests, the demo and benchmarks.

ComfyUI's layers skip PyTorch's weight initialisation, so every parameter is set here:
norm layers at weight 1 / bias 0 (random norms shrink CLIP's embeddings until prompts
stop mattering), other weights N(0, 0.02). Everything is seeded, so a given version
string always yields the same file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from . import comfy_runtime as rt

# Bump when anything below changes what a cached file contains.
TINY_SD15_VERSION = "tiny-sd15-v1"

# The narrowest UNet ComfyUI's SD1.5 detection accepts (model_channels 320,
# context_dim 768, no linear-in-transformer): one level, one res block, ~26M params.
TINY_SD15_UNET = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [1], "channel_mult": [1], "transformer_depth": [1],
    "transformer_depth_output": [1, 1], "transformer_depth_middle": 1,
    "use_spatial_transformer": True, "legacy": False,
    "context_dim": 768, "use_linear_in_transformer": False, "adm_in_channels": None,
    "use_temporal_attention": False, "use_checkpoint": False, "num_head_channels": -1,
    "num_heads": 8,
}


def cache_dir() -> Path:
    return Path(os.environ.get("FEWSTEP_CACHE", rt.RUNTIME_DIR / "cache"))


def init_weights(module: torch.nn.Module, std: float = 0.02, seed: int = 0) -> torch.nn.Module:
    """Deterministically initialise every parameter of a ComfyUI-built module."""
    gen = torch.Generator().manual_seed(seed)
    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.BatchNorm2d)
    with torch.no_grad():
        for name, param in module.named_parameters():
            owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            if isinstance(owner, norm_types):
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * std)
    return module


def init_taesd(vae: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """He-initialised convolutions, so a random decoder's output keeps its variance through
    the ReLUs, and a mid-grey bias on the last layer: random pictures, not black frames."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in vae.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
        for block in vae.modules():
            if hasattr(block, "skip") and hasattr(block, "conv"):  # residual blocks: damp the branch
                block.conv[-1].weight.mul_(0.2)
        vae.taesd_decoder[-1].weight.mul_(0.03)
        vae.taesd_decoder[-1].bias.fill_(0.5)
        vae.vae_scale.fill_(1.0)
        vae.vae_shift.fill_(0.0)
    return vae


def tiny_sd15_components(seed: int = 0):
    """(BaseModel, SDClipModel, TAESD) of the tiny SD1.5 layout, initialised."""
    rt.import_comfy_for_library_use()
    import comfy.sd1_clip
    import comfy.supported_models
    import comfy.taesd.taesd

    config = comfy.supported_models.SD15(dict(TINY_SD15_UNET))
    model = init_weights(config.get_model({}), seed=seed)
    clip = init_weights(comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32), seed=seed + 1)
    vae = init_taesd(comfy.taesd.taesd.TAESD(latent_channels=4), seed=seed + 2)
    return model, clip, vae


def checkpoint_state_dict(model, clip, vae, dtype=torch.float16) -> dict[str, torch.Tensor]:
    """Keys as an SD1.5 .ckpt/.safetensors holds them, so CheckpointLoaderSimple detects it."""
    sd = {}
    for k, v in model.diffusion_model.state_dict().items():
        sd["model.diffusion_model." + k] = v
    for k, v in clip.state_dict().items():
        sd["cond_stage_model." + k] = v
    for k, v in vae.state_dict().items():
        sd["first_stage_model." + k] = v
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}


def save_atomic(sd: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write to a temporary name, then rename: a reader never sees half a file."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(sd, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def tiny_sd15_checkpoint(seed: int = 0) -> Path:
    """Path of the cached tiny random SD1.5 checkpoint (built on first use, ~5 s)."""
    path = cache_dir() / "models" / TINY_SD15_VERSION / f"tiny-sd15-seed{seed}.safetensors"
    if not path.exists():
        model, clip, vae = tiny_sd15_components(seed)
        save_atomic(checkpoint_state_dict(model, clip, vae), path,
                    metadata={"fewstep.factory": TINY_SD15_VERSION})
    return path


def install_checkpoint(src: Path, models_dir: Path, name: str | None = None) -> str:
    """Link a cached checkpoint into a ComfyUI models folder; returns its ckpt_name."""
    dest_dir = models_dir / "checkpoints"
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = name or src.name
    dest = dest_dir / name
    if not dest.exists():
        dest.symlink_to(src.resolve())
    return name

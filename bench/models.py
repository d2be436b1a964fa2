"""Random-weight models at full size, built the way ComfyUI's own loader builds them.

Speed ratios need real layouts, not trained weights: the UNet config is the one
ComfyUI's detection (`comfy.model_detection.model_config_from_unet`) derives from the
model's own keys and shapes, the dtype is the one `comfy.sd.load_diffusion_model_state_dict`
would pick for the device, and the result is a plain `ModelPatcher`. No file is written;
nothing is downloaded. Random weights say nothing about image quality.
"""

from __future__ import annotations

import torch

from ..tools.tiny_models import TINY_SD15_UNET, init_weights

# The layouts of real checkpoints, as listed in comfy/model_detection.py
# (unet_config_from_diffusers_unet); detection re-derives them from the built keys.
SD15_UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
    "context_dim": 768, "num_heads": 8, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_temporal_attention": False, "use_temporal_resblock": False,
}
SDXL_UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4,
    "model_channels": 320, "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10],
    "channel_mult": [1, 2, 4], "transformer_depth_middle": 10, "use_linear_in_transformer": True,
    "context_dim": 2048, "num_head_channels": 64, "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
    "use_temporal_attention": False, "use_temporal_resblock": False,
}
LAYOUTS = {
    "sd15": SD15_UNET,
    "sdxl": SDXL_UNET,
    # The narrowest SD1.5 layout ComfyUI detects (tools/tiny_models.py): for the harness's
    # own smoke test only.
    "tiny-sd15": {**TINY_SD15_UNET, "use_temporal_resblock": False},
}
EXPECTED_CLASS = {"sd15": "SD15", "sdxl": "SDXL", "tiny-sd15": "SD15"}
CONTEXT = {"sd15": (77, 768), "sdxl": (77, 2048), "tiny-sd15": (77, 768)}


def detected_config(layout: str):
    """(config, parameter count): the `comfy.supported_models` config object ComfyUI's
    detection gives this layout. The UNet is built on the meta device (no memory) only to
    get its keys and shapes."""
    import comfy.model_detection
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet_config = dict(LAYOUTS[layout])
    with torch.device("meta"):
        shapes = UNetModel(**unet_config, dtype=torch.float32, device="meta",
                           operations=comfy.ops.disable_weight_init).state_dict()
    model_config = comfy.model_detection.model_config_from_unet(shapes, "")
    if model_config is None or type(model_config).__name__ != EXPECTED_CLASS[layout]:
        raise RuntimeError(f"ComfyUI's detection did not recognise the {layout} layout as "
                           f"{EXPECTED_CLASS[layout]} (got {type(model_config).__name__})")
    return model_config, sum(t.numel() for t in shapes.values())


def random_model_patcher(layout: str, seed: int = 0, dtype: torch.dtype | None = None):
    """A ModelPatcher around a randomly initialised full-size UNet of `layout`."""
    import comfy.model_management as mm
    import comfy.model_patcher

    model_config, params = detected_config(layout)
    load_device = mm.get_torch_device()
    if dtype is None:  # as the loader decides for an fp16 checkpoint file (fp32 on CPU)
        dtype = mm.unet_dtype(model_params=params, supported_dtypes=list(model_config.supported_inference_dtypes),
                              weight_dtype=torch.float16)
    manual_cast = mm.unet_manual_cast(dtype, load_device, model_config.supported_inference_dtypes)
    model_config.set_inference_dtype(dtype, manual_cast)
    model = model_config.get_model({}, "")
    init_weights(model, seed=seed)
    model = model.to(mm.unet_offload_device())
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device,
                                            offload_device=mm.unet_offload_device())


def random_conditioning(layout: str, width: int, height: int, seed: int = 0) -> list:
    """A CONDITIONING value in the shape the layout's text encoder gives ComfyUI's samplers."""
    gen = torch.Generator().manual_seed(seed)
    tokens, dim = CONTEXT[layout]
    extra = {}
    if layout == "sdxl":
        extra = {"pooled_output": torch.randn(1, 1280, generator=gen), "width": width, "height": height}
    return [[torch.randn(1, tokens, dim, generator=gen), extra]]


def param_count(patcher) -> int:
    return sum(p.numel() for p in patcher.model.diffusion_model.parameters())

"""LoRA reach-ins: reading a LoRA file and turning it into core's weight patches, the
LoRA key maps of a model and a CLIP, and the tensors inside a patch.

One small function per reach-in, each with the ComfyUI version it was checked against.
"""

from __future__ import annotations

import comfy.lora
import comfy.lora_convert
import comfy.utils
import comfy.weight_adapter


# ---- LoRA files and patches ---------------------------------------------------------------

def load_safetensors(path) -> dict:
    """0.3.75: comfy.utils.load_torch_file(path, safe_load=True), as core LoraLoader."""
    return comfy.utils.load_torch_file(str(path), safe_load=True)


def lora_patches(lora: dict, key_map: dict) -> dict:
    """Core's patches for a LoRA state dict. 0.3.75: comfy.lora_convert.convert_lora then
    comfy.lora.load_lora(lora, key_map, log_missing=False)."""
    return comfy.lora.load_lora(lora, key_map, log_missing=False)


def convert_lora(lora: dict) -> dict:
    """0.3.75: comfy.lora_convert.convert_lora (e.g. 'lora_unet_' Flux/SD3 spellings)."""
    return comfy.lora_convert.convert_lora(lora)


def unet_lora_key_map(model_patcher) -> dict:
    """LoRA key -> model weight key. 0.3.75: comfy.lora.model_lora_keys_unet(model, {})."""
    return comfy.lora.model_lora_keys_unet(model_patcher.model, {})


def clip_lora_key_map(clip) -> dict:
    """0.3.75: comfy.lora.model_lora_keys_clip(clip.cond_stage_model, {})."""
    return comfy.lora.model_lora_keys_clip(clip.cond_stage_model, {})


def lora_adapter_matrices(patch):
    """(up, down) of a plain LoRA patch, None for anything else (LoCon mid, reshape,
    LoHa, ...). 0.3.75: comfy.weight_adapter.LoRAAdapter.weights = (up, down, alpha,
    mid, dora_scale, reshape), as comfy/weight_adapter/lora.py unpacks it."""
    if not isinstance(patch, comfy.weight_adapter.LoRAAdapter):
        return None
    up, down, _alpha, mid, _dora, reshape = patch.weights
    if mid is not None or reshape is not None:
        return None
    return up, down


def diff_patch_tensor(patch):
    """The tensor of a ("diff", (tensor,)) patch, None for other patches. 0.3.75."""
    if isinstance(patch, tuple) and len(patch) > 1 and patch[0] == "diff":
        return patch[1][0]
    return None

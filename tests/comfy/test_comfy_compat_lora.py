"""One test per reach-in of fewstep/comfy_compat/lora.py (LoRA files and weight patches),
against the real ComfyUI: when a ComfyUI update moves or changes something FewStep relies
on, the failing test names it. Callers reach these as `comfy_compat.<name>`, so the tests do
too."""

from __future__ import annotations

import torch

from comfyui_fewstep.fewstep import comfy_compat as cc


def test_lora_files_map_to_core_patches(tmp_path, tiny_sd15):
    from comfyui_fewstep.tools.synth_loras import tiny_sd15_lora, write_lora

    model, clip, _ = tiny_sd15
    path = write_lora(tmp_path / "l.safetensors", tiny_sd15_lora(seed=1))
    lora = cc.convert_lora(cc.load_safetensors(path))
    patches = cc.lora_patches(lora, cc.unet_lora_key_map(model))
    assert patches, "comfy.lora.load_lora mapped none of a kohya SD1.5 LoRA's keys"
    key, patch = next(iter(patches.items()))
    up, down = cc.lora_adapter_matrices(patch)
    weight = model.model.state_dict()[key]
    assert up.shape[0] == weight.shape[0] and down.shape[1] == weight.reshape(weight.shape[0], -1).shape[1]
    assert cc.lora_adapter_matrices(("diff", (torch.zeros(1),))) is None
    assert cc.diff_patch_tensor(("diff", (torch.zeros(3),))).shape == (3,) and cc.diff_patch_tensor(patch) is None
    assert isinstance(cc.clip_lora_key_map(clip), dict) and cc.clip_lora_key_map(clip)

"""The saved LoRA: kohya-style keys (`lora_unet_<path>.lora_up.weight`, `.alpha`) that core
LoraLoader and kohya-style tools load, plus FewStep metadata naming the preset settings
the student was trained for, so FewStepLoraLoader recognises the file by its contents.

Pure: torch only. `names` maps each trained model weight key ("diffusion_model.x.weight")
to its kohya prefix; the hook side builds it from ComfyUI's own LoRA key map.
"""

from __future__ import annotations

import json

import torch

FAMILY = "FewStep Distill"
SCHEMA = "1"
DISTILL_PREFIX = "fewstep_distill."  # training record; "fewstep." holds only the preset fields


def kohya_tensors(trained: dict[str, dict[str, torch.Tensor]], names: dict[str, str]) -> dict[str, torch.Tensor]:
    """{model weight key: {adapter param name: tensor}} -> the file's tensors.

    LoRA convolutions are reshaped to kohya's layout (down (r, in, kh, kw), up (out, r, 1, 1));
    other adapters keep the parameter names their lycoris key format uses."""
    out: dict[str, torch.Tensor] = {}
    for weight_key, params in trained.items():
        prefix = names[weight_key]
        shape = params.pop("__weight_shape__", None)
        for name, tensor in params.items():
            t = tensor.detach().to("cpu", torch.float32).contiguous()
            if shape is not None and len(shape) > 2 and name == "lora_down.weight":
                t = t.reshape(t.shape[0], *shape[1:])
            elif shape is not None and len(shape) > 2 and name == "lora_up.weight":
                t = t.reshape(t.shape[0], t.shape[1], *([1] * (len(shape) - 2)))
            out[f"{prefix}.{name}"] = t.clone()
    return out


def metadata(config_json: str, base: str, steps: int, cfg: float, sampler: str, scheduler: str,
             upstream_loras: list[str], iterations_done: int) -> dict[str, str]:
    """FewStep preset fields (read by FewStepLoraLoader) plus kohya's common ss_* fields."""
    return {
        "fewstep.schema": SCHEMA,
        "fewstep.family": FAMILY,
        "fewstep.base": base,
        "fewstep.steps": str(steps),
        "fewstep.cfg": f"{cfg:g}",
        "fewstep.sampler": sampler,
        "fewstep.scheduler": scheduler,
        "fewstep.strength": "1.0",
        "fewstep.source": "trained by FewStep Distill (Direct Distill against the base model's own samples)",
        DISTILL_PREFIX + "config": config_json,
        DISTILL_PREFIX + "teacher_loras": json.dumps(upstream_loras),
        DISTILL_PREFIX + "iterations": str(iterations_done),
        "ss_network_module": "networks.lora",
        "ss_training_comment": "FewStep Distill",
    }

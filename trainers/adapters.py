"""Trainable adapters attached the ComfyUI way: weight wrappers on a clone.

Adapters are never injected into `ModelPatcher.model`: clones share that object with the
rest of the graph and with ComfyUI's cache across prompts. Instead, as core TrainLoraNode
does, `comfy.weight_adapter` creates a train module per targeted weight and
`add_weight_wrapper` attaches it to this clone only, on top of whatever LoRA the teacher
already carries.

Every other weight and bias gets a wrapper that clones an inference tensor: ComfyUI runs
prompts under torch.inference_mode(), the loaded weights are inference tensors, and
autograd cannot save those for backward (the first plain layer after an adapter would fail).
"""

from __future__ import annotations

import torch

from ..fewstep import comfy_compat

from .targets import select

DIFFUSION_PREFIX = "diffusion_model."


def _normal(w: torch.Tensor) -> torch.Tensor:
    return w.clone() if w.is_inference() else w


class Adapters:
    """The train modules of one student: {model weight key: module}; parameters in fp32."""

    def __init__(self, modules: dict[str, torch.nn.Module], shapes: dict[str, tuple]):
        self.modules, self.shapes = modules, shapes

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for m in self.modules.values() for p in m.parameters() if p.requires_grad]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor of every adapter (alpha included), keyed '<weight key>|<param>'."""
        return {f"{key}|{name}": p.detach() for key, m in self.modules.items() for name, p in m.named_parameters()}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        own = self.state_dict()
        missing = sorted(set(own) - set(tensors))
        if missing:
            raise ValueError(f"the resume file lacks {len(missing)} adapter tensors (e.g. {missing[0]}); it was "
                             "trained with another target, rank or adapter")
        with torch.no_grad():
            for k, t in own.items():
                if tensors[k].shape != t.shape:
                    raise ValueError(f"adapter tensor {k} has shape {tuple(tensors[k].shape)} in the resume file "
                                     f"but {tuple(t.shape)} here; resume with the rank and target it was trained with")
                t.copy_(tensors[k])

    def export(self) -> dict[str, dict[str, torch.Tensor]]:
        """{weight key: {param name: tensor, "__weight_shape__": shape}} for lora_format."""
        out = {}
        for key, m in self.modules.items():
            params = {name: p.detach() for name, p in m.named_parameters()}
            params["__weight_shape__"] = self.shapes[key]
            out[key] = params
        return out

    def requires_grad_(self, flag: bool) -> None:
        for p in self.parameters():
            p.requires_grad_(flag)


def attach(student, adapter: str, rank: int, alpha: float, target: str, seed: int) -> Adapters:
    """Add trainable adapters to `student` (a clone, changed in place) and identity
    wrappers to every other weight and bias. Adapter init draws from a generator seeded
    with `seed`, so a run's starting point is reproducible."""
    adapter_type = comfy_compat.trainable_adapter_types().get(adapter)
    if adapter_type is None:
        raise ValueError(f"adapter {adapter!r} cannot be trained by this ComfyUI; pick one of "
                         f"{', '.join(comfy_compat.trainable_adapter_types())}")
    layers = {name: module for name, module in comfy_compat.weight_wrapped_modules(student)
              if name.startswith(DIFFUSION_PREFIX)}
    chosen = set(select({name[len(DIFFUSION_PREFIX):]: m.weight.ndim for name, m in layers.items()}, target))
    if not chosen:
        raise ValueError(f"target {target!r} matches no layer of this model; pick 'all'")
    modules, shapes = {}, {}
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # create_train draws its init from the global generator
    try:
        with torch.inference_mode(False):
            for name, module in layers.items():
                key = f"{name}.weight"
                if name[len(DIFFUSION_PREFIX):] in chosen:
                    train = adapter_type.create_train(module.weight, rank=rank, alpha=float(alpha)).to(torch.float32)
                    for pname, p in train.named_parameters():
                        p.requires_grad_(pname != "alpha")
                    student.add_weight_wrapper(key, train)
                    modules[key], shapes[key] = train, tuple(module.weight.shape)
                else:
                    student.add_weight_wrapper(key, _normal)
                if getattr(module, "bias", None) is not None:
                    student.add_weight_wrapper(f"{name}.bias", _normal)
    finally:
        torch.random.set_rng_state(state)
    return Adapters(modules, shapes)


def kohya_names(student, keys) -> dict[str, str]:
    """Model weight key -> kohya prefix ('lora_unet_…') from ComfyUI's own LoRA key map,
    so core LoraLoader maps every saved key back; falls back to the key itself (which
    core also maps) for a family without kohya names."""
    inverse: dict[str, str] = {}
    for lora_key, weight_key in comfy_compat.unet_lora_key_map(student).items():
        if isinstance(weight_key, str) and lora_key.startswith("lora_unet_"):
            inverse.setdefault(weight_key, lora_key)
    return {k: inverse.get(k, k[: -len(".weight")]) for k in keys}

"""Training reach-ins: the trainable adapter types, the layers whose weights pass through
weight wrappers, loading a model whole, and the user's Cancel.

One small function per reach-in, each with the ComfyUI version it was checked against.
"""

from __future__ import annotations

import comfy.model_management
import comfy.weight_adapter


# ---- training -----------------------------------------------------------------------------

def trainable_adapter_types() -> dict:
    """Adapter name (lower case) -> class with create_train(weight, rank, alpha). 0.3.75:
    comfy.weight_adapter.adapter_maps = {"LoRA", "LoHa", "LoKr", "OFT"} (core TrainLoraNode's list)."""
    return {name.lower(): cls for name, cls in comfy.weight_adapter.adapter_maps.items()
            if hasattr(cls, "create_train")}


def weight_wrapped_modules(model_patcher):
    """(module name, module) of every layer whose weights pass through weight wrappers.
    0.3.75: comfy.ops layers carry `weight_function` / `bias_function` lists, and
    ModelPatcher.add_weight_wrapper("<module>.weight", fn) appends to them at load."""
    for name, module in model_patcher.model.named_modules():
        if hasattr(module, "weight_function") and getattr(module, "weight", None) is not None:
            yield name, module


def load_for_training(model_patcher) -> None:
    """Load the whole model on its device, as core TrainLoraNode does: a partially loaded
    (low-VRAM) model moves weights per call, which training does not support. 0.3.75:
    comfy.model_management.load_models_gpu([mp], memory_required=1e20, force_full_load=True)."""
    comfy.model_management.load_models_gpu([model_patcher], memory_required=1e20, force_full_load=True)


def throw_if_interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException when the user pressed Cancel. 0.3.75:
    comfy.model_management.throw_exception_if_processing_interrupted (clears the flag)."""
    comfy.model_management.throw_exception_if_processing_interrupted()


def interrupt_exception_type() -> type:
    """0.3.75: comfy.model_management.InterruptProcessingException."""
    return comfy.model_management.InterruptProcessingException

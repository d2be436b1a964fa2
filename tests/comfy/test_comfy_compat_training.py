"""One test per reach-in of fewstep/comfy_compat/training.py (what the distillation trainer
needs from ComfyUI), against the real ComfyUI: when an update moves or changes one, the
failing test names it. Callers reach these as `comfy_compat.<name>`, so the tests do too."""

from __future__ import annotations

import pytest
import torch

from comfyui_fewstep.fewstep import comfy_compat as cc


def test_every_adapter_the_trainer_offers_can_be_created_for_training():
    from comfyui_fewstep.trainers.config import ADAPTERS

    types = cc.trainable_adapter_types()
    assert set(ADAPTERS) <= set(types), f"ComfyUI's weight adapters lack {set(ADAPTERS) - set(types)}"
    weight = torch.randn(8, 6)
    for name in ADAPTERS:
        trainable = types[name].create_train(weight, 2, 2.0)
        params = [p for p in trainable.parameters() if p.requires_grad]
        assert params, f"{name}.create_train gave no trainable parameters"


def test_the_wrapped_layers_are_the_ones_weight_wrappers_reach(tiny_sd15):
    model = tiny_sd15[0].clone()
    layers = dict(cc.weight_wrapped_modules(model))
    assert layers, "no layer of the UNet carries weight_function: comfy.ops changed"
    name = next(n for n in layers if n.endswith("attn1.to_q"))
    calls = []
    model.add_weight_wrapper(f"{name}.weight", lambda w: calls.append(w.shape) or w)
    cc.load_for_training(model)
    try:
        assert calls == [] and layers[name].weight_function, "the wrapper was not attached at load"
        x = torch.randn(1, layers[name].in_features)
        layers[name](x)
        assert calls == [layers[name].weight.shape]
    finally:
        model.detach()


def test_cancel_raises_the_interrupt_type_once_and_clears_the_flag():
    import comfy.model_management as mm

    cc.throw_if_interrupted()  # nothing pending
    mm.interrupt_current_processing(True)
    with pytest.raises(cc.interrupt_exception_type()):
        cc.throw_if_interrupted()
    cc.throw_if_interrupted()  # the flag was cleared by the raise

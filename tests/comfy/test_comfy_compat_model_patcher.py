"""One test per reach-in of fewstep/comfy_compat/model_patcher.py (ModelPatcher state,
wrapper arguments, the model fingerprint), against the real ComfyUI: when a ComfyUI update
moves or changes something FewStep relies on, the failing test names it. Callers reach these
as `comfy_compat.<name>`, so the tests do too."""

from __future__ import annotations

import torch

from comfyui_fewstep.fewstep import comfy_compat as cc
from comfyui_fewstep.tools import tiny_families as tf


def test_patcher_state_key_follows_weight_patches(sd15):
    m = sd15.model.clone()
    before = cc.patcher_state_key(m)
    assert cc.patcher_state_key(m.clone()) == before  # clones share weights and patches
    key = next(iter(m.model.state_dict()))
    m.add_patches({key: (torch.zeros_like(m.model.state_dict()[key]),)}, 1.0)
    assert cc.patcher_state_key(m) != before


def test_model_options_clone_is_deep_where_core_clones(sd15):
    options = {"transformer_options": {"patches": {"x": [1]}}}
    copied = cc.clone_model_options(options)
    copied["transformer_options"]["patches"]["x"].append(2)
    assert options["transformer_options"]["patches"]["x"] == [1]


def test_dit_replace_patch_is_found(flux):
    m = flux.model.clone()
    assert cc.dit_replace_patch(m, "double_block", 0) is None

    def patch(args, extra):
        return extra["original_block"](args)

    m.set_model_patch_replace(patch, "dit", "double_block", 0)
    assert cc.dit_replace_patch(m, "double_block", 0) is patch


def test_wrapper_arguments_are_where_fewstep_reads_them(core_sample, sd15):
    import comfy.patcher_extension as pe

    seen = {}

    def outer(executor, *args, **kwargs):
        seen["outer"] = cc.outer_sample_args(args)
        return executor(*args, **kwargs)

    def calc(executor, *args, **kwargs):
        seen["calc"] = cc.calc_cond_batch_model_options(args)
        return executor(*args, **kwargs)

    def apply(executor, *args, **kwargs):
        seen["apply"] = cc.apply_model_args(args, kwargs)
        return executor(*args, **kwargs)

    def dm(executor, *args, **kwargs):
        seen["dm"] = cc.diffusion_model_args(args, kwargs)
        return executor(*args, **kwargs)

    m = sd15.model.clone()
    for kind, fn in ((pe.WrappersMP.OUTER_SAMPLE, outer), (pe.WrappersMP.CALC_COND_BATCH, calc),
                     (pe.WrappersMP.APPLY_MODEL, apply), (pe.WrappersMP.DIFFUSION_MODEL, dm)):
        m.add_wrapper_with_key(kind, "compat-test", fn)
    core_sample(sd15, m, steps=2)
    noise, latent, sampler, sigmas = seen["outer"]
    assert noise.shape == latent.shape == sd15.latent["samples"].shape
    assert hasattr(sampler, "sample") and sigmas.ndim == 1 and len(sigmas) == 3
    assert "transformer_options" in seen["calc"]
    for name in ("apply", "dm"):
        x, t, to = seen[name]
        assert x.ndim == 4 and t.ndim == 1 and x.shape[0] == t.shape[0], name
        assert "uuids" in to and "sigmas" in to, f"{name}: transformer_options lack uuids/sigmas"


def test_an_outer_sample_wrapper_reads_the_latent_shape_and_replaces_the_schedule(core_sample, sd15):
    import comfy.patcher_extension as pe

    seen = {"sigmas": []}

    def outer(executor, *args, **kwargs):
        seen["shape"] = cc.outer_sample_latent_shape(args, kwargs)
        sigmas = cc.outer_sample_args(args)[3]
        seen["given"] = len(sigmas)
        return executor(*cc.with_outer_sample_sigmas(args, sigmas[:2]), **kwargs)  # its first step only

    def model_function(apply_model, args):
        seen["sigmas"].append(float(args["timestep"].flatten()[0]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    m = sd15.model.clone()
    m.add_wrapper_with_key(pe.WrappersMP.OUTER_SAMPLE, "compat-test", outer)
    m.set_model_unet_function_wrapper(model_function)
    core_sample(sd15, m, steps=3)
    assert seen["shape"] == tuple(sd15.latent["samples"].shape)
    assert seen["given"] == 4 and len(seen["sigmas"]) == 1, "the replaced schedule (one step) was not the one run"


def test_context_windows_are_recognised(sd15, comfy):
    assert not cc.uses_context_windows(sd15.model.model_options)
    windowed = tf.with_context_windows(sd15.model, context_length=4, context_overlap=1, dim=0)
    assert cc.uses_context_windows(windowed.model_options)


def test_fingerprint_reads_weights_and_patches(sd15):
    fp = cc.model_fingerprint(sd15.model, b"t")
    assert fp == cc.model_fingerprint(sd15.model.clone(), b"t") and fp != cc.model_fingerprint(sd15.model, b"u")
    m = sd15.model.clone()
    key = next(iter(m.model.state_dict()))
    m.add_patches({key: (torch.ones_like(m.model.state_dict()[key]),)}, 0.5)
    assert cc.model_fingerprint(m, b"t") != fp


def test_fingerprint_ignores_1d_parameters_and_module_names_but_not_matrices():
    """ComfyUI drops unused 1-D parameters between versions (Lumina 2's norm_final.weight
    from 0.4.x) and renames modules: neither may change a stored calibration's key."""
    a, b = tf.build_model("lumina2"), tf.build_model("lumina2")
    fp, legacy = cc.model_fingerprint(a, b"t"), cc.legacy_model_fingerprint(a, b"t")
    assert cc.model_fingerprint(b, b"t") == fp
    sd = b.model.diffusion_model.state_dict(keep_vars=True)
    one_d = next(k for k in sorted(sd) if sd[k].dim() == 1)
    matrix = next(k for k in sorted(sd) if sd[k].dim() >= 2)
    with torch.no_grad():
        sd[one_d].add_(1.0)
    assert cc.model_fingerprint(b, b"t") == fp and cc.legacy_model_fingerprint(b, b"t") != legacy
    renamed = b.model.diffusion_model
    renamed.add_module("renamed_final_layer", renamed._modules.pop("final_layer"))
    assert cc.model_fingerprint(b, b"t") == fp
    with torch.no_grad():
        sd[matrix].mul_(2.0)
    assert cc.model_fingerprint(b, b"t") != fp

"""Tiny models of every supported family, sampled by ComfyUI's own sampler in-process.

These tests pin down what the step-cache and token-merge work relies on: each family
builds from ComfyUI's classes, samples deterministically, listens to its prompt, and is
reached by the hooks the docstring of tools/tiny_families.py lists (SD3 is not reached
by WrappersMP.DIFFUSION_MODEL).
"""

from __future__ import annotations

import pytest
import torch

from comfyui_fewstep.tools import tiny_families as tf

# Module-wide: one quiet thread, tiny models built once and released after the module.
pytestmark = pytest.mark.usefixtures("tiny")

STEPS = 3
CFG = 3.0
SEED = 7
MIN_CHANGE = 3e-3  # relative mean-abs change that counts as "depends on"

EXPECTED_CLASSES = {  # family -> (comfy.supported_models class, comfy.model_base class)
    "sd15": ("SD15", "BaseModel"), "sdxl": ("SDXL", "SDXL"), "sd3": ("SD3", "SD3"),
    "flux": ("Flux", "Flux"), "qwen_image": ("QwenImage", "QwenImage"),
    "wan21": ("WAN21_T2V", "WAN21"), "hunyuan_video": ("HunyuanVideo", "HunyuanVideo"),
    "ltxv": ("LTXV", "LTXV"), "lumina2": ("Lumina2", "Lumina2"),
}


def sample(family: tf.TinyFamily, model=None, positive=None, steps: int = STEPS) -> torch.Tensor:
    import nodes  # ComfyUI's own

    out = nodes.common_ksampler(
        model or family.model, SEED, steps, CFG, family.sampler, family.scheduler,
        positive or family.positive, family.negative, family.latent,
    )[0]
    return out["samples"]


def counting_wrapper(calls: list):
    def wrapper(executor, *args, **kwargs):
        calls.append(tuple(args[0].shape))
        return executor(*args, **kwargs)
    return wrapper


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().mean() / a.abs().mean()).item()  # nan (fails ">") if a == 0


def test_tables_cover_every_family():
    assert set(tf.FAMILIES) == set(tf.FIRST_BLOCK) == set(tf.TIMESTEP_MODULATION) == set(EXPECTED_CLASSES)
    assert tf.REACHED_BY_DIFFUSION_MODEL_WRAPPER < set(tf.FAMILIES)
    assert tf.HONOURS_DIT_DOUBLE_BLOCK_REPLACE < set(tf.FAMILIES)
    with pytest.raises(KeyError, match="unknown family"):
        tf.build("sd2")


@pytest.mark.parametrize("name", tf.FAMILIES)
def test_built_like_comfyuis_loaders_and_fully_initialised(tiny, comfy, name):
    import comfy.model_base
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    fam = tiny(name)
    config_cls, model_cls = EXPECTED_CLASSES[name]
    patcher = fam.model
    assert type(patcher) is comfy.model_patcher.ModelPatcher
    assert type(patcher.model) is getattr(comfy.model_base, model_cls)
    assert type(patcher.model.model_config) is getattr(comfy.supported_models, config_cls)
    assert patcher.load_device == mm.get_torch_device()
    assert patcher.offload_device == mm.unet_offload_device()

    params = dict(patcher.model.named_parameters())
    assert sum(p.numel() for p in params.values()) < 50e6
    for key, p in params.items():
        assert torch.isfinite(p).all(), key
        if not key.endswith("bias"):  # nothing left at zero: no dead output layers
            assert p.abs().max() > 0, f"{key} is all zeros"
    for key, b in patcher.model.named_buffers():
        assert not b.is_floating_point() or torch.isfinite(b).all(), key

    # Conditioning in the format ComfyUI's samplers take, distinct for pos/neg.
    for cond in (fam.positive, fam.negative):
        (context, extra), = cond
        assert context.ndim == 3 and context.shape[0] == 1
        assert all(torch.isfinite(v).all() for v in extra.values() if torch.is_tensor(v))
    assert not torch.equal(fam.positive[0][0][:, :1], fam.negative[0][0][:, :1])

    # The same seed rebuilds the same weights and prompts.
    again = tf.build(name, seed=0)
    ref = patcher.model.state_dict()
    assert all(torch.equal(v, again.model.model.state_dict()[k]) for k, v in ref.items())
    assert torch.equal(fam.positive[0][0], again.positive[0][0])


def test_another_seed_gives_other_weights_and_prompts(tiny, comfy):
    a, b = tiny("wan21"), tf.build("wan21", seed=1)
    assert not torch.equal(a.positive[0][0], b.positive[0][0])
    for (key, p), q in zip(a.model.model.named_parameters(), b.model.model.parameters()):
        if not key.endswith("bias") and "norm" not in key:
            assert not torch.equal(p, q), key


@pytest.mark.parametrize("name", tf.FAMILIES)
def test_samples_deterministically_follow_the_prompt_and_reach_the_wrappers(tiny, comfy, name):
    import comfy.patcher_extension as pe

    fam = tiny(name)
    plain = sample(fam)
    assert plain.shape == fam.latent["samples"].shape
    assert torch.isfinite(plain).all()

    diffusion_calls, apply_calls = [], []
    wrapped = fam.model.clone()
    wrapped.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "fewstep_test", counting_wrapper(diffusion_calls))
    wrapped.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "fewstep_test", counting_wrapper(apply_calls))
    # Bit-identical to the first run: sampling is deterministic for a seed, and a
    # pass-through wrapper changes nothing.
    assert torch.equal(sample(fam, model=wrapped), plain)
    assert len(apply_calls) >= STEPS
    assert all(shape[1:] == plain.shape[1:] for shape in apply_calls)
    if name in tf.REACHED_BY_DIFFUSION_MODEL_WRAPPER:
        assert diffusion_calls == apply_calls  # every model call passes through it
    else:  # SD3/MMDiT: ComfyUI never routes through DIFFUSION_MODEL
        assert diffusion_calls == []
    assert not fam.model.wrappers, "wrappers leaked from the clone into the original"

    other_prompt = tf.random_conditioning(name, seed=12345)
    assert relative_change(plain, sample(fam, positive=other_prompt)) > MIN_CHANGE


@pytest.mark.parametrize("name", tf.FAMILIES)
def test_dit_double_block_replace_patch(tiny, comfy, name):
    """The per-block hook that reaches SD3 (and most DiTs): a pass-through replacement
    of block 0 is called, and changes nothing."""
    fam = tiny(name)
    calls = []

    def replace(args, extra):
        calls.append(sorted(args))
        return extra["original_block"](args)

    patched = fam.model.clone()
    patched.set_model_patch_replace(replace, "dit", "double_block", 0)
    out = sample(fam, model=patched, steps=1)
    assert bool(calls) == (name in tf.HONOURS_DIT_DOUBLE_BLOCK_REPLACE)
    if calls:
        assert {"img", "txt", "vec", "transformer_options"} <= set(calls[0])
        assert torch.equal(out, sample(fam, steps=1))


@pytest.mark.parametrize("name", tf.FAMILIES)
def test_output_depends_on_latent_timestep_and_context(tiny, comfy, name):
    """Random weights must not leave a family deaf to its inputs (zero-init outputs, dead
    adaLN gates, as N(0, 0.02) everywhere gives the DiTs): perturbing x, t or the context
    each changes the raw model output. Also: FIRST_BLOCK / TIMESTEP_MODULATION resolve
    and run."""
    import comfy.patcher_extension as pe

    fam = tiny(name)
    dm = tf.diffusion_model(fam)
    first = tf.resolve(dm, tf.FIRST_BLOCK[name])
    assert isinstance(first, torch.nn.Module)
    modulation_path, norm_path = tf.TIMESTEP_MODULATION[name]
    modulation = tf.resolve(dm, modulation_path)
    if name not in ("sd15", "sdxl"):  # DiTs: the modulation belongs to the first block
        assert modulation_path.startswith(tf.FIRST_BLOCK[name] + ".")
    hooked = [first] + [m for m in (modulation,) if isinstance(m, torch.nn.Module)]
    if norm_path is not None:
        hooked.append(tf.resolve(dm, norm_path))
    ran = {id(m): 0 for m in hooked}

    def count(module, args, output):
        ran[id(module)] += 1

    handles = [m.register_forward_hook(count) for m in hooked]
    changes = {}
    # SD3 is only reachable at APPLY_MODEL, where x, t, context are args 0, 1 and 3.
    kind, ctx_index = (pe.WrappersMP.APPLY_MODEL, 3) if name == "sd3" else (pe.WrappersMP.DIFFUSION_MODEL, 2)

    def probe(executor, *args, **kwargs):
        base = executor(*args, **kwargs)
        if not changes:
            gen = torch.Generator().manual_seed(0)
            x, t, ctx = args[0], args[1], args[ctx_index]
            variants = {
                "latent": (0, x + 0.5 * torch.randn(x.shape, generator=gen).to(x)),
                "timestep": (1, t * 0.6),
                "context": (ctx_index, ctx + 0.5 * torch.randn(ctx.shape, generator=gen).to(ctx)),
            }
            for what, (index, value) in variants.items():
                changed = list(args)
                changed[index] = value
                out = executor(*changed, **kwargs)
                assert out.shape == base.shape and torch.isfinite(out).all()
                changes[what] = relative_change(base, out)
        return base

    m = fam.model.clone()
    m.add_wrapper_with_key(kind, "fewstep_test", probe)
    try:
        sample(fam, model=m, steps=1)
    finally:
        for h in handles:
            h.remove()
    assert set(changes) == {"latent", "timestep", "context"}
    for what, change in changes.items():
        assert change > MIN_CHANGE, f"{name}: output barely depends on the {what} ({change:.2e})"
    assert all(n > 0 for n in ran.values()), "a FIRST_BLOCK / TIMESTEP_MODULATION module never ran"


@pytest.mark.parametrize("name", sorted(tf.LOADER_ROUND_TRIP))
def test_state_dict_loads_through_comfyuis_unet_loader(tiny, comfy, name):
    """A tiny file of these families would load via UNETLoader into the same model."""
    import comfy.sd

    fam = tiny(name)
    sd = {k: v.clone() for k, v in tf.diffusion_model(fam).state_dict().items()}
    loaded = comfy.sd.load_diffusion_model_state_dict(sd)
    assert loaded is not None, "ComfyUI did not detect the family"
    assert type(loaded.model) is type(fam.model.model)
    assert type(loaded.model.model_config) is type(fam.model.model.model_config)
    copy = tf.TinyFamily(name, loaded, fam.positive, fam.negative, fam.latent, fam.sampler, fam.scheduler)
    assert torch.equal(sample(copy, steps=1), sample(fam, steps=1))

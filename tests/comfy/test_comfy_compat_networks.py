"""One test per reach-in of fewstep/comfy_compat/networks.py (TeaCache's indicators, UNet
and Flux attention for token merging), against the real ComfyUI: when a ComfyUI update moves
or changes something FewStep relies on, the failing test names it. Callers reach these as
`comfy_compat.<name>`, so the tests do too."""

from __future__ import annotations

import pytest
import torch

from comfyui_fewstep.fewstep import comfy_compat as cc
from comfyui_fewstep.tools import tiny_families as tf


@pytest.mark.parametrize("family", ["flux", "hunyuan_video", "ltxv", "wan21"])
def test_first_block_input_is_read_from_the_blocks_own_arguments(core_sample, family):
    fam = tf.build(family)
    got = {}

    def patch(args, extra):
        got["ind"] = cc.first_block_modulated_input(family, fam.model.model.diffusion_model, args)
        got["img"] = args["img"]
        return extra["original_block"](args)

    m = fam.model.clone()
    m.set_model_patch_replace(patch, "dit", "double_block", 0)
    core_sample(fam, m, steps=1, cfg=1.0)
    assert got, f"{family}: the ('double_block', 0) replace patch was never called"
    assert got["ind"].shape[0] == got["img"].shape[0] and got["ind"].shape[-1] == got["img"].shape[-1]
    assert torch.isfinite(got["ind"]).all()


@pytest.mark.parametrize("family", ["wan21", "lumina2"])
def test_timestep_embedding_depends_on_the_timestep_only(family):
    fam = tf.build(family)
    dm = fam.model.model.diffusion_model
    x = torch.zeros(1, 1)
    a = cc.timestep_embedding(family, dm, x, torch.tensor([0.5]))
    assert torch.equal(a, cc.timestep_embedding(family, dm, x, torch.tensor([0.5])))
    assert not torch.equal(a, cc.timestep_embedding(family, dm, x, torch.tensor([0.9])))


def test_unet_layout_reads_levels_and_transformer_blocks_from_the_modules(sd15):
    layout = cc.unet_layout(sd15.model)
    assert layout.attention_levels == (0,)  # the tiny SD1.5 has one level
    assert {key for _p, key, _l in layout.blocks} == {("input", 1), ("middle", 0), ("output", 0), ("output", 1)}
    sdxl = tf.build("sdxl")
    layout = cc.unet_layout(sdxl.model)
    assert layout.attention_levels == (1,)  # SDXL: no attention at the top level
    # input 3 is the downsampling itself (it runs at level 0); output 2 ends with the upsampling
    assert layout.levels[("input", 3)] == 0 and layout.levels[("input", 4)] == 1 and layout.levels[("middle", 0)] == 1
    assert layout.levels[("output", 2)] == 1 and layout.levels[("output", 3)] == 0
    dm = sdxl.model.model.diffusion_model
    for path, _key, _level in layout.blocks:
        assert type(dm.get_submodule(path)).__name__ == "BasicTransformerBlock"
    assert cc.unet_layout(tf.build("flux").model) is None


def test_a_transformer_blocks_forward_is_object_patched_and_reads_its_call(core_sample, sd15):
    path = cc.unet_layout(sd15.model).blocks[0][0]
    key = cc.block_forward_key(path)
    m = sd15.model.clone()
    previous = m.get_model_object(key)
    assert previous.__self__ is m.model.diffusion_model.get_submodule(path)  # the class's forward, bound
    seen = []

    def forward(x, *args, **kwargs):
        options = cc.block_forward_options(args, kwargs)
        seen.append((x.shape, cc.attention_grid(options), cc.call_sigma(options), cc.attention_block_key(options)))
        return previous(x, *args, **kwargs)

    m.add_object_patch(key, forward)
    out = core_sample(sd15, m, steps=1)
    assert torch.equal(out, core_sample(sd15, sd15.model, steps=1))
    (shape, grid, sigma, block), = seen
    h, w = sd15.latent["samples"].shape[-2:]
    assert shape[1] == h * w and grid == (h, w) and sigma > 0 and block == ("input", 1)
    assert m.model.diffusion_model.get_submodule(path).forward is not forward  # the unpatched run restored it


def test_flux_layout_reads_patch_size_and_block_groups(flux, sd15):
    layout = cc.flux_layout(flux.model)
    assert layout.patch_size == 2 and layout.groups == (("double", 1), ("single", 1))
    assert cc.flux_layout(sd15.model) is None and cc.flux_layout(tf.build("sd3").model) is None


class AttentionRecorder:
    """An override in the attention slot: records each call as FewStep reads it, then runs
    ComfyUI's attention function, optionally with the keys/values cut to `keep` tokens."""

    def __init__(self, keep=None):
        self.calls, self.keep = [], keep

    def __call__(self, func, *args, **kwargs):
        q, k, v, mask, options = cc.attention_call(args, kwargs)
        self.calls.append((cc.dit_block(options), q, k, v, mask))
        if self.keep is not None:
            args = cc.with_attention_kv(args, k[:, :, :self.keep], v[:, :, :self.keep])
        return func(*args, **kwargs)


def flux_run(flux, latent, noise_seed=0, keep=None, cfg=1.0):
    """One Euler step of core sampling on the tiny Flux with an AttentionRecorder in the slot
    and a DIFFUSION_MODEL wrapper reading the call's token layout."""
    import comfy.patcher_extension as pe
    import comfy.sample

    m = flux.model.clone()
    rec, layouts = AttentionRecorder(keep), []
    cc.set_attention_override(m.model_options.setdefault("transformer_options", {}), rec)

    def wrapper(executor, *args, **kwargs):
        layouts.append(cc.flux_call_tokens(args, kwargs, cc.flux_layout(m).patch_size))
        return executor(*args, **kwargs)

    m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "test", wrapper)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(noise_seed))
    out = comfy.sample.sample(m, noise, 1, cfg, "euler", flux.scheduler, flux.positive, flux.negative, latent, seed=0,
                              disable_pbar=True)
    return out, rec.calls, layouts


@pytest.mark.parametrize("shape", [(1, 16, 8, 8), (2, 16, 9, 7)])
def test_flux_attention_calls_reach_the_slot_with_the_call_token_layout(flux, shape):
    out, calls, layouts = flux_run(flux, torch.zeros(shape), cfg=2.0)
    assert torch.isfinite(out).all()
    (text, (h, w), total), = layouts  # cond and uncond in one call
    assert text == flux.positive[0][0].shape[1] and (h, w) == ((shape[2] + 1) // 2, (shape[3] + 1) // 2)
    assert total == text + h * w
    assert [block for block, *_ in calls] == [("double", 0), ("single", 0)]
    for _block, q, k, v, mask in calls:
        assert q.dim() == 4 and q.shape[0] == 2 * shape[0] and q.shape[2] == k.shape[2] == v.shape[2] == total
        assert mask is None


def test_flux_attention_accepts_fewer_keys_than_queries(flux):
    latent = torch.zeros(1, 16, 8, 8)
    full, _calls, _ = flux_run(flux, latent)
    text = flux.positive[0][0].shape[1]
    cut, calls, _ = flux_run(flux, latent, keep=text)
    assert cut.shape == full.shape and torch.isfinite(cut).all() and not torch.equal(cut, full)


def test_flux_applies_rope_to_q_and_k_before_the_slot(flux):
    import comfy.ldm.flux.math as flux_math

    dm = flux.model.model.diffusion_model
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 6, 128, generator=gen) for _ in range(3))
    ids = torch.zeros(1, 6, 3)
    ids[0, :, 1], ids[0, :, 2] = torch.tensor([0., 0, 1, 1, 2, 2]), torch.tensor([0., 1, 0, 1, 0, 1])
    pe = dm.pe_embedder(ids)
    rec = AttentionRecorder()
    flux_math.attention(q, k, v, pe=pe, transformer_options={cc.ATTENTION_OVERRIDE: rec})
    (_block, q_seen, k_seen, v_seen, _mask), = rec.calls
    rq, rk = flux_math.apply_rope(q, k, pe)
    assert torch.equal(q_seen, rq) and torch.equal(k_seen, rk) and torch.equal(v_seen, v)
    assert not torch.equal(k_seen, k)  # the keys arrive rotated: each carries its own position


def test_flux_joint_sequences_are_text_then_image(core_sample, flux):
    """Double blocks: a token's key depends only on its own stream before attention, so
    another image (same prompt, same step) changes exactly the keys after the text. Single
    blocks: their input is the double blocks' text output followed by their image output."""
    latent = torch.zeros(1, 16, 8, 8)
    text = flux.positive[0][0].shape[1]
    _, a, _ = flux_run(flux, latent, noise_seed=0)
    _, b, _ = flux_run(flux, latent, noise_seed=1)
    ka, kb = a[0][2], b[0][2]
    assert a[0][0] == ("double", 0)
    assert torch.equal(ka[:, :, :text], kb[:, :, :text]) and not torch.equal(ka[:, :, text:], kb[:, :, text:])
    seen = {}

    def double(args, extra):
        out = extra["original_block"](args)
        seen["txt"], seen["img"] = out["txt"].clone(), out["img"].clone()
        return out

    def single(args, extra):
        seen["joint"] = args["img"].clone()
        return extra["original_block"](args)

    m = flux.model.clone()
    m.set_model_patch_replace(double, "dit", "double_block", 0)
    m.set_model_patch_replace(single, "dit", "single_block", 0)
    core_sample(flux, m, steps=1, cfg=1.0)
    assert torch.equal(seen["joint"], torch.cat([seen["txt"], seen["img"]], dim=1))


def test_flux_attention_takes_a_replaced_mask(flux):
    """A mask that hides every image key must give what attention over the text keys alone gives."""
    import comfy.sample

    latent = torch.zeros(1, 16, 8, 8)
    text = flux.positive[0][0].shape[1]
    cut, _calls, _ = flux_run(flux, latent, keep=text)

    def text_only(func, *args, **kwargs):
        q, k, _v, mask, _options = cc.attention_call(args, kwargs)
        assert mask is None
        hide = torch.zeros(q.shape[2], k.shape[2])
        hide[:, text:] = float("-inf")
        args, kwargs = cc.with_attention_mask(args, kwargs, hide)
        return func(*args, **kwargs)

    m = flux.model.clone()
    cc.set_attention_override(m.model_options.setdefault("transformer_options", {}), text_only)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    masked = comfy.sample.sample(m, noise, 1, 1.0, "euler", flux.scheduler, flux.positive, flux.negative, latent,
                                 seed=0, disable_pbar=True)
    assert torch.allclose(masked, cut, rtol=1e-4, atol=1e-4 * cut.abs().max().item())

"""FewStep Token Merge's DiT route (ToDo through the attention override slot) inside
ComfyUI's own sampling code, on the tiny Flux (one double- and one single-stream block):
identity at downsample 1, the key/value/query lengths attention really receives and which
keys (and mask columns) it keeps, an override already in the slot, the output's distance
from the unpatched one, odd sizes, batches, the percent window, max_depth, FewStep
TeaCache, and the DiT cases that pass through."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from comfyui_fewstep.fewstep import comfy_compat
from comfyui_fewstep.fewstep.tome.hooks import apply_token_merge
from comfyui_fewstep.fewstep.tome.settings import DepthError, Settings
from comfyui_fewstep.tools import tiny_families as tf

pytestmark = pytest.mark.usefixtures("tiny")

SEED = 3
TEXT = 8  # prompt tokens: short, so the image tokens dominate the joint sequence
LATENT = (1, 16, 16, 16)  # an 8x8 token grid (patch size 2)
ODD = (1, 16, 9, 7)  # a 5x4 grid after Flux pads to the patch size


def conds(seed=0, batch=1):
    return tf.random_conditioning("flux", 1000 + seed, TEXT, batch), tf.random_conditioning("flux", 2000 + seed, TEXT, batch)


def ksample(model, shape=LATENT, steps=3, cfg=2.0, seed=SEED):
    import comfy.sample

    latent = torch.zeros(shape)
    positive, negative = conds()
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, cfg, "euler", "simple", positive, negative, latent, seed=seed)


def todo(model, **kw):
    return apply_token_merge(model, Settings("todo", **kw))


class Recorder:
    """An attention override already in the slot: records what reaches it and runs ComfyUI's
    attention function, as an override from another node would."""

    def __init__(self):
        self.seen = []

    def __call__(self, func, *args, **kwargs):
        q, k, v, _mask, options = comfy_compat.attention_call(args, kwargs)
        self.seen.append((comfy_compat.dit_block(options)[0], q.shape[2], k.shape[2], v.shape[2]))
        return func(*args, **kwargs)


def recorded(model):
    m = model.clone()
    rec = Recorder()
    comfy_compat.set_attention_override(m.model_options.setdefault("transformer_options", {}), rec)
    return m, rec


def grid(shape):
    return math.ceil(shape[2] / 2), math.ceil(shape[3] / 2)


def test_downsample_one_is_bit_identical_and_two_changes_the_output(tiny):
    model = tiny("flux").model
    base = ksample(model)
    assert torch.equal(ksample(todo(model, downsample=1.0, max_depth=2)), base)
    on = ksample(todo(model, downsample=2.0, max_depth=2))
    assert on.shape == base.shape and torch.isfinite(on).all() and not torch.equal(on, base)
    assert torch.equal(ksample(model), base)  # the input model is untouched
    assert torch.equal(ksample(todo(model, downsample=2.0, max_depth=2)), on)  # deterministic


@pytest.mark.parametrize("shape", [LATENT, ODD])
@pytest.mark.parametrize("max_depth, reduced", [(1, {"double"}), (2, {"double", "single"})])
def test_attention_gets_the_image_keys_and_values_downsampled_and_every_query(tiny, shape, max_depth, reduced):
    m, rec = recorded(todo(tiny("flux").model, downsample=2.0, max_depth=max_depth))
    ksample(m, shape=shape, steps=1)
    h, w = grid(shape)
    small = math.ceil(h / 2) * math.ceil(w / 2)
    assert {block for block, *_ in rec.seen} == {"double", "single"}  # the override in the slot ran for every block
    for block, q, k, v in rec.seen:
        assert q == TEXT + h * w  # every query kept, text and image
        assert k == v == (TEXT + small if block in reduced else TEXT + h * w)


class KeyRecorder:
    """An override in the slot that keeps the keys, values and mask of the first attention call."""

    def __init__(self):
        self.kv = None

    def __call__(self, func, *args, **kwargs):
        if self.kv is None:
            _q, k, v, mask, _options = comfy_compat.attention_call(args, kwargs)
            self.kv = k.clone(), v.clone(), None if mask is None else mask.clone()
        return func(*args, **kwargs)


def first_call(model, **sample_kw):
    m = model.clone()
    rec = KeyRecorder()
    comfy_compat.set_attention_override(m.model_options.setdefault("transformer_options", {}), rec)
    out = ksample(m, **sample_kw)
    return out, rec.kv


def cells(full, h=8, w=8):
    """The image keys (after TEXT, on the last-but-one dim) at odd rows and columns."""
    *lead, _n, d = full.shape
    return full[..., TEXT:, :].reshape(*lead, h, w, d)[..., 1::2, 1::2, :].reshape(*lead, -1, d)


def test_the_kept_keys_are_the_text_keys_and_one_image_key_per_2x2_cell(tiny):
    """The first call (first double block, first step) sees the same keys patched or not,
    before the cut: patched, it must get the text keys whole and, of the 8x8 image grid, the
    keys at odd rows and columns (nearest-exact picks the cell's lower-right token), which
    carry their own RoPE positions."""
    model = tiny("flux").model
    _, (k, v, _mask) = first_call(model, steps=1)
    _, (k2, v2, _mask) = first_call(todo(model, downsample=2.0), steps=1)
    for full, cut in ((k, k2), (v, v2)):
        assert torch.equal(cut, torch.cat([full[:, :, :TEXT], cells(full)], dim=2))


def test_a_regional_attention_mask_keeps_the_columns_of_the_kept_keys(tiny):
    """Flux takes an attention mask from the conditioning ([B, queries, keys], e.g. from
    regional prompts); the kept keys must keep their own mask entries."""
    import comfy.sample

    n = TEXT + 64
    mask = -2.0 * torch.rand(1, n, n, generator=torch.Generator().manual_seed(0))
    positive, negative = conds()
    positive = [[positive[0][0], {**positive[0][1], "attention_mask": mask, "attention_mask_img_shape": (8, 8)}]]
    latent = torch.zeros(LATENT)
    noise = comfy.sample.prepare_noise(latent, SEED)

    def run(model):
        m = model.clone()
        rec = KeyRecorder()
        comfy_compat.set_attention_override(m.model_options.setdefault("transformer_options", {}), rec)
        out = comfy.sample.sample(m, noise, 2, 1.0, "euler", "simple", positive, negative, latent, seed=SEED)
        return out, rec.kv[2]

    base, full = run(tiny("flux").model)
    assert full is not None and full.shape[-1] == n  # the mask reached attention
    assert torch.equal(run(todo(tiny("flux").model, downsample=1.0))[0], base)
    out, cut = run(todo(tiny("flux").model, downsample=2.0))
    assert torch.isfinite(out).all() and not torch.equal(out, base)
    expected = torch.cat([full[..., :TEXT], cells(full.transpose(-1, -2)).transpose(-1, -2)], dim=-1)
    assert torch.equal(cut, expected)


def test_reference_image_tokens_keep_every_key(tiny):
    """Kontext-style reference latents join the sequence after the image: only the image's
    own grid is cut."""
    import comfy.sample

    positive, negative = conds()
    reference = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))  # a 4x4 grid: 16 tokens
    positive = [[positive[0][0], {**positive[0][1], "reference_latents": [reference]}]]
    latent = torch.zeros(LATENT)
    m, rec = recorded(todo(tiny("flux").model, downsample=2.0, max_depth=2))
    comfy.sample.sample(m, comfy.sample.prepare_noise(latent, SEED), 1, 1.0, "euler", "simple", positive, negative,
                        latent, seed=SEED)
    assert rec.seen
    for _block, q, k, v in rec.seen:
        assert q == TEXT + 64 + 16 and k == v == TEXT + 16 + 16


def test_the_override_slot_is_restored_after_each_call(tiny):
    m, rec = recorded(todo(tiny("flux").model, downsample=2.0))
    ksample(m, steps=1)
    assert comfy_compat.attention_override(m.model_options["transformer_options"]) is rec


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_the_output_stays_closer_than_with_fewer_or_no_image_keys(tiny):
    """ToDo keeps one image key of each 2x2 cell; a coarser grid keeps fewer, and attention
    with the text keys alone keeps none. Each step away from the full keys must move the
    output further from the unpatched one."""
    model = tiny("flux").model
    base = ksample(model)
    errors = [relative_error(ksample(todo(model, downsample=d, max_depth=2)), base) for d in (2.0, 4.0, 8.0)]
    text_only = model.clone()
    comfy_compat.set_attention_override(
        text_only.model_options.setdefault("transformer_options", {}),
        lambda func, q, k, v, *a, **kw: func(q, k[:, :, :TEXT], v[:, :, :TEXT], *a, **kw))
    errors.append(relative_error(ksample(text_only), base))
    assert 0 < errors[0] < errors[1] < errors[2] < errors[3], errors


def test_a_batch_of_two_gives_each_row_what_it_gives_alone(tiny):
    import comfy.sample

    m = todo(tiny("flux").model, downsample=2.0, max_depth=2)
    latent = torch.zeros(2, *ODD[1:])
    noise = comfy.sample.prepare_noise(latent, SEED)
    positive, negative = conds()
    both = comfy.sample.sample(m, noise, 3, 2.0, "euler", "simple", positive, negative, latent, seed=SEED)
    for i in range(2):
        alone = comfy.sample.sample(m, noise[i:i + 1], 3, 2.0, "euler", "simple", positive, negative,
                                    latent[i:i + 1], seed=SEED)
        assert torch.allclose(alone, both[i:i + 1], rtol=1e-4, atol=1e-4 * both.abs().max().item())
    assert not torch.equal(both, comfy.sample.sample(tiny("flux").model, noise, 3, 2.0, "euler", "simple", positive,
                                                     negative, latent, seed=SEED))


def test_outside_start_end_percent_every_key_is_kept(tiny, caplog):
    m, rec = recorded(todo(tiny("flux").model, downsample=2.0, max_depth=2, start_percent=0.5))
    with caplog.at_level(logging.INFO, logger="FewStep.TokenMerge"):
        ksample(m, steps=4, cfg=1.0)
    full = [k == q for _block, q, k, _v in rec.seen]
    calls = len(rec.seen) // 4  # attention calls per step
    assert calls == 2 and full[:calls] == [True] * calls  # the first step (above the window) is left whole
    assert not any(full[-calls:])  # the last step is reduced
    whole = sum(full)
    assert f"{len(full) - whole} block/attention calls reduced, {whole} left whole" in caplog.text


def test_max_depth_beyond_the_block_groups_names_them(tiny):
    with pytest.raises(DepthError, match=r"max_depth 3 is beyond FLUX.1, which has 2 DiT block group\(s\): "
                                         r"double \(1 blocks\), single \(1 blocks\); set max_depth to 1..2"):
        todo(tiny("flux").model, max_depth=3)


def test_tome_on_flux_and_todo_on_other_dits_pass_through_with_a_warning(tiny, caplog):
    flux = tiny("flux").model
    with caplog.at_level(logging.WARNING, logger="FewStep.TokenMerge"):
        assert apply_token_merge(flux, Settings("tome", ratio=0.5)) is flux
    assert "method tome has no route on DiTs such as FLUX.1 (use method todo there)" in caplog.text
    sd3 = tiny("sd3").model
    with caplog.at_level(logging.WARNING, logger="FewStep.TokenMerge"):
        assert todo(sd3) is sd3
    assert "is neither an SD-style UNet with attention nor a Flux DiT" in caplog.text


def test_the_node_patches_flux(pack_nodes, tiny):
    model = tiny("flux").model
    out = pack_nodes["FewStepTokenMerge"].execute(model, "todo", 0.5, 2.0, 1, 0.0, 1.0, 0).args[0]
    assert out is not model and not torch.equal(ksample(out), ksample(model))


def test_with_fewstep_teacache_in_either_order(tiny):
    from comfyui_fewstep.fewstep.caching.hooks import apply_teacache
    from comfyui_fewstep.fewstep.caching.state import Settings as CacheSettings

    model = tiny("flux").model
    alone = ksample(todo(model, downsample=2.0, max_depth=2), steps=12)
    for threshold in (0.0, 0.8):  # 0.8 skips calls on the tiny Flux (test_teacache_families)
        stats = []
        first = apply_teacache(todo(model, downsample=2.0, max_depth=2), CacheSettings(threshold), calibration="off",
                               reporter=stats.append)
        after = todo(apply_teacache(model, CacheSettings(threshold), calibration="off", reporter=stats.append),
                     downsample=2.0, max_depth=2)
        a, b = ksample(first, steps=12), ksample(after, steps=12)
        assert torch.equal(a, b)  # order does not matter
        assert len(stats) == 2 and stats[0]["skipped"] == stats[1]["skipped"]
        if threshold == 0:
            assert torch.equal(a, alone) and stats[0]["skipped"] == 0
        else:
            assert stats[0]["skipped"] > 0 and not torch.equal(a, alone)

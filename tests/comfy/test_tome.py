"""FewStep Token Merge inside ComfyUI's own sampling code, on the tiny SD1.5 (attention at
level 0) and the tiny SDXL-shaped UNet (no attention at level 0, attention at level 1):
identity at ratio 0 / downsample 1, seeds, the token counts attention really receives,
odd sizes, batches, cond/uncond batching, the percent window, errors, and coexistence
with FewStep TeaCache and a few-step LoRA."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from comfyui_fewstep.fewstep.tome.hooks import apply_token_merge
from comfyui_fewstep.fewstep.tome.settings import DepthError, Settings

pytestmark = pytest.mark.usefixtures("tiny")

SEED = 3
FAMILIES = ("sd15", "sdxl")
ODD = (1, 4, 9, 7)  # the latent of a 72x56 px image


def ksample(model, family, latent=None, steps=3, cfg=3.0, sampler="euler", seed=SEED):
    import comfy.sample

    latent = family.latent["samples"] if latent is None else latent
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, cfg, sampler, family.scheduler, family.positive,
                               family.negative, latent, seed=seed)


def merged(model, method="todo", **kw):
    return apply_token_merge(model, Settings(method, **kw))


ON = {"todo": dict(downsample=2.0), "tome": dict(ratio=0.5, seed=1)}
OFF = {"todo": dict(downsample=1.0), "tome": dict(ratio=0.0, seed=1)}


class Recorder:
    """A later attn1 patch: sees exactly the q/k/v lengths attn1 itself gets, per block."""

    def __init__(self):
        self.seen = []

    def __call__(self, n, context, value, extra):
        self.seen.append((extra["block"], tuple(extra["activations_shape"][-2:]), n.shape[1], context.shape[1],
                          value.shape[1]))
        return n, context, value


def recorded(model):
    m = model.clone()
    rec = Recorder()
    m.set_model_attn1_patch(rec)
    return m, rec


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["todo", "tome"])
def test_ratio_zero_and_downsample_one_are_bit_identical_and_on_changes_the_output(tiny, family, method):
    fam = tiny(family)
    base = ksample(fam.model, fam)
    assert torch.equal(ksample(merged(fam.model, method, **OFF[method]), fam), base)
    on = ksample(merged(fam.model, method, **ON[method]), fam)
    assert on.shape == base.shape and torch.isfinite(on).all()
    assert not torch.equal(on, base), f"{method} on {family} changed nothing"
    assert torch.equal(ksample(fam.model, fam), base)  # the input model is untouched


@pytest.mark.parametrize("family", FAMILIES)
def test_the_same_seed_gives_the_same_output_and_another_seed_another(tiny, family):
    fam = tiny(family)
    a = ksample(merged(fam.model, "tome", ratio=0.5, seed=11), fam)
    assert torch.equal(a, ksample(merged(fam.model, "tome", ratio=0.5, seed=11), fam))
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(a, ksample(merged(fam.model, "tome", ratio=0.5, seed=11), fam))
    assert not torch.equal(a, ksample(merged(fam.model, "tome", ratio=0.5, seed=12), fam))


@pytest.mark.parametrize("family, level", [("sd15", 0), ("sdxl", 1)])
@pytest.mark.parametrize("shape", [(1, 4, 8, 8), ODD])
def test_todo_attention_receives_a_quarter_of_the_keys_and_values(tiny, family, level, shape):
    fam = tiny(family)
    m, rec = recorded(merged(fam.model, "todo", downsample=2.0))
    ksample(m, fam, latent=torch.zeros(shape), steps=1)
    assert rec.seen
    for _block, (h, w), q, k, v in rec.seen:
        assert (h, w) == (math.ceil(shape[2] / 2 ** level), math.ceil(shape[3] / 2 ** level))
        assert q == h * w  # every query kept
        assert k == v == math.ceil(h / 2) * math.ceil(w / 2) < h * w


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [(1, 4, 8, 8), ODD])
def test_tome_attention_receives_the_merged_tokens(tiny, family, shape):
    fam = tiny(family)
    m, rec = recorded(merged(fam.model, "tome", ratio=0.5))
    ksample(m, fam, latent=torch.zeros(shape), steps=1)
    assert rec.seen
    for _block, (h, w), q, k, v in rec.seen:
        n = h * w
        assert q == k == v == n - min(int(n * 0.5), n - (h // 2) * (w // 2)) < n


def test_unpatched_attention_sees_every_token(tiny):
    fam = tiny("sd15")
    m, rec = recorded(fam.model)
    ksample(m, fam, steps=1)
    assert rec.seen and all(q == k == v == h * w for _b, (h, w), q, k, v in rec.seen)


@pytest.mark.parametrize("method", ["todo", "tome"])
def test_a_batch_of_two_gives_each_row_what_it_gives_alone(tiny, method):
    fam = tiny("sd15")
    m = merged(fam.model, method, **ON[method])
    latent = torch.zeros(2, 4, 9, 7)
    both = ksample(m, fam, latent=latent)
    noise = __import__("comfy.sample").sample.prepare_noise(latent, SEED)
    import comfy.sample

    for i in range(2):
        alone = comfy.sample.sample(m, noise[i:i + 1], 3, 3.0, "euler", fam.scheduler, fam.positive, fam.negative,
                                    latent[i:i + 1], seed=SEED)
        assert torch.allclose(alone, both[i:i + 1], rtol=1e-4, atol=1e-4 * both.abs().max().item())


def one_cond_per_batch(executor, model, conds, x, timestep, model_options):
    """A CALC_COND_BATCH wrapper that makes ComfyUI run cond and uncond as separate batches
    (what it does by itself when memory is short)."""
    out = []
    for c in conds:
        out += executor(model, [c], x, timestep, model_options)
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["todo", "tome"])
def test_cond_and_uncond_batched_or_apart_give_the_same_result(tiny, family, method):
    import comfy.patcher_extension as pe

    fam = tiny(family)
    m = merged(fam.model, method, **ON[method])
    together = ksample(m, fam)
    apart_model = m.clone()
    apart_model.add_wrapper_with_key(pe.WrappersMP.CALC_COND_BATCH, "test-apart", one_cond_per_batch)
    apart = ksample(apart_model, fam)
    scale = together.abs().max().item()
    assert torch.allclose(apart, together, rtol=1e-4, atol=1e-4 * scale)
    off = ksample(fam.model, fam)
    # the agreement is not trivial: merging moves the output far more than batching does
    assert (together - off).abs().max().item() > 100 * (apart - together).abs().max().item()


@pytest.mark.parametrize("method", ["todo", "tome"])
def test_outside_start_end_percent_every_token_is_kept(tiny, method, caplog):
    fam = tiny("sd15")
    m, rec = recorded(merged(fam.model, method, **ON[method], start_percent=0.5, end_percent=1.0))
    with caplog.at_level(logging.INFO, logger="FewStep.TokenMerge"):
        ksample(m, fam, steps=4, cfg=1.0)
    full = [k == h * w for _b, (h, w), _q, k, _v in rec.seen]
    calls = len(rec.seen) // 4  # attention calls per step
    assert full[:calls] == [True] * calls  # the first step (sigma above the window) is left whole
    assert not any(full[-calls:])  # the last step is reduced
    whole = sum(full)
    assert f"{len(full) - whole} block/attention calls reduced, {whole} left whole" in caplog.text


@pytest.mark.parametrize("family, levels", [("sd15", 1), ("sdxl", 1)])
def test_max_depth_beyond_the_model_names_its_levels(tiny, family, levels):
    fam = tiny(family)
    with pytest.raises(DepthError, match=f"max_depth {levels + 1} is beyond .* attention at {levels} UNet level"):
        merged(fam.model, "todo", max_depth=levels + 1)


def test_a_dit_passes_through_unchanged_with_a_warning(tiny, caplog):
    fam = tiny("flux")
    with caplog.at_level(logging.WARNING, logger="FewStep.TokenMerge"):
        out = merged(fam.model, "tome", ratio=0.5)
    assert out is fam.model
    assert "method tome has no route on DiTs such as FLUX.1" in caplog.text and "passes through unchanged" in caplog.text


def test_the_node_validates_and_patches(pack_nodes, tiny):
    node = pack_nodes["FewStepTokenMerge"]
    assert node.GET_SCHEMA().category == "FewStep/speed"
    inputs = node.GET_SCHEMA().inputs
    assert [i.id for i in inputs] == ["model", "method", "ratio", "downsample", "max_depth", "start_percent",
                                      "end_percent", "seed"]
    assert all(i.tooltip for i in inputs)
    assert "ratio must be at least 0 and below 1" in node.validate_inputs(ratio=1.0)
    assert "downsample must be at least 1" in node.validate_inputs(downsample=0.5)
    assert node.validate_inputs(method="tome", ratio=0.3, downsample=2.0, max_depth=1, start_percent=0.0,
                                end_percent=1.0, seed=0) is True
    fam = tiny("sdxl")
    with pytest.raises(ValueError, match="FewStep Token Merge: max_depth 2 is beyond SDXL"):
        node.execute(fam.model, "todo", 0.5, 2.0, 2, 0.0, 1.0, 0)
    out = node.execute(fam.model, "todo", 0.5, 2.0, 1, 0.0, 1.0, 0).args[0]
    assert out is not fam.model and not torch.equal(ksample(out, fam), ksample(fam.model, fam))


def test_with_fewstep_teacache_in_either_order(tiny):
    from comfyui_fewstep.fewstep.caching.hooks import apply_teacache
    from comfyui_fewstep.fewstep.caching.state import Settings as CacheSettings

    fam = tiny("sd15")
    tome = ksample(merged(fam.model, "tome", ratio=0.5), fam, steps=8)
    for threshold in (0.0, 0.4):
        stats = []
        first = apply_teacache(merged(fam.model, "tome", ratio=0.5), CacheSettings(threshold), calibration="off",
                               reporter=stats.append)
        after = merged(apply_teacache(fam.model, CacheSettings(threshold), calibration="off", reporter=stats.append),
                       "tome", ratio=0.5)
        a, b = ksample(first, fam, steps=8), ksample(after, fam, steps=8)
        assert torch.equal(a, b)  # order does not matter
        assert len(stats) == 2 and stats[0]["skipped"] == stats[1]["skipped"]
        if threshold == 0:
            assert torch.equal(a, tome) and stats[0]["skipped"] == 0
        else:
            assert stats[0]["skipped"] > 0 and not torch.equal(a, tome)


def test_with_a_few_step_lora_in_either_order(tiny, lora_dirs):
    import nodes

    from comfyui_fewstep.tools.synth_loras import tiny_sd15_lora, write_lora

    fam = tiny("sd15")
    write_lora(lora_dirs.loras / "Hyper-SD15-8steps-lora.safetensors", tiny_sd15_lora(seed=1, scale=0.2))
    lora = nodes.LoraLoaderModelOnly()
    with_lora = lora.load_lora_model_only(fam.model, "Hyper-SD15-8steps-lora.safetensors", 1.0)[0]
    a = ksample(merged(with_lora, "tome", ratio=0.5), fam)
    b = ksample(lora.load_lora_model_only(merged(fam.model, "tome", ratio=0.5), "Hyper-SD15-8steps-lora.safetensors",
                                          1.0)[0], fam)
    assert torch.equal(a, b)
    assert not torch.equal(a, ksample(merged(fam.model, "tome", ratio=0.5), fam))  # the LoRA acts
    assert not torch.equal(a, ksample(with_lora, fam))  # and so does the merging


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2s_ancestral", "lcm", "uni_pc"])
def test_any_sampler_runs_reproducibly(tiny, sampler):
    fam = tiny("sd15")
    m = merged(fam.model, "tome", ratio=0.5, seed=2)
    a = ksample(m, fam, sampler=sampler)
    assert torch.isfinite(a).all() and torch.equal(a, ksample(m, fam, sampler=sampler))
    assert not torch.equal(a, ksample(fam.model, fam, sampler=sampler))

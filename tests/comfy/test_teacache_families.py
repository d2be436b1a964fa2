"""FewStep TeaCache on a tiny model of every family, sampled by ComfyUI's own KSampler path.

For each family: threshold 0 is bit-identical to the unpatched model; at a stated
threshold calls are skipped (the hooks are reached) and the final latent stays within a
stated relative error of the uncached one; the indicator is read where TeaCache reads it
and, for families with published coefficients, mapped through exactly those.

Random weights make the numbers plumbing checks, not quality claims (the trained teacher
is for quality: test_teacache_teacher.py). The thresholds differ per family because the
tiny models' embeddings are random: e.g. the tiny Wan's time embedding changes ~90% per
step (a real Wan's a few %), so Wan's published polynomial estimates ~1,000 per call
and only a threshold of that order skips on it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from comfyui_fewstep.fewstep.caching import profiles as ti
from comfyui_fewstep.fewstep.caching.state import Settings
from comfyui_fewstep.fewstep.caching.hooks import apply_teacache
from comfyui_fewstep.tools import tiny_families as tf

# Module-wide: one quiet thread, tiny models built once and released after the module.
pytestmark = pytest.mark.usefixtures("tiny")

STEPS, CFG, SEED = 12, 3.0, 7

# family -> (model_family, threshold, max relative mean-abs error of the final latent).
# Measured at these settings (12 euler steps, cfg 3, seed 7): sd15 7/12 skipped, err 0.019;
# sdxl 7/12, 0.014; sd3 7/12, 0.23; qwen_image 10/24, 0.099; flux 6/12, 0.10;
# wan21 7/12, 0.18; hunyuan_video 10/24, 0.048; ltxv 6/12, 0.13; lumina2 18/24, 0.066.
CASES = {
    "sd15": ("auto", 0.4, 0.05),
    "sdxl": ("auto", 0.4, 0.05),
    "sd3": ("auto", 0.8, 0.4),
    "qwen_image": ("auto", 0.4, 0.25),
    "flux": ("auto", 0.8, 0.25),
    "wan21": ("auto", 3000.0, 0.35),
    "hunyuan_video": ("auto", 0.4, 0.15),
    "ltxv": ("auto", 0.4, 0.3),
    "lumina2": ("auto", 0.1, 0.15),
}
EXPECTED_PROFILE = {"sd15": "generic", "sdxl": "generic", "sd3": "generic", "qwen_image": "generic",
                    "flux": "flux", "wan21": "wan2.1_t2v_1.3B", "hunyuan_video": "hunyuan_video",
                    "ltxv": "ltxv", "lumina2": "lumina2"}

# Where ComfyUI's own block code consumes TeaCache's indicator (module under
# diffusion_model, and which positional argument of its call it is), so the test reads it
# from the model's forward, not from FewStep's code.
CONSUMER = {
    "flux": ("double_blocks.0.img_attn.qkv", 0),  # qkv(img_norm1(img) * (1 + scale) + shift)
    "hunyuan_video": ("double_blocks.0.img_attn.qkv", 0),
    "ltxv": ("transformer_blocks.0.attn1", 0),  # attn1(rms_norm(x) * (1 + scale_msa) + shift_msa)
    "wan21": ("head", 1),  # head(x, e): e is the time embedding TeaCache reads
    "lumina2": ("final_layer", 1),  # final_layer(x, adaln_input): the t embedding TeaCache reads
    # generic: the network's input as the model sees it (model_sampling.calculate_input)
    "sd15": ("", 0), "sdxl": ("", 0), "sd3": ("", 0), "qwen_image": ("", 0),
}


def sample(family: tf.TinyFamily, model, cfg: float = CFG) -> torch.Tensor:
    import nodes

    return nodes.common_ksampler(model, SEED, STEPS, cfg, family.sampler, family.scheduler,
                                 family.positive, family.negative, family.latent)[0]["samples"]


def cached(family, threshold, model_family="auto", **settings):
    stats = []
    model = apply_teacache(family.model, Settings(threshold, **settings), model_family, calibration="off",
                           reporter=stats.append)
    return model, stats


def rel_err(out, ref) -> float:
    return ((out - ref).abs().mean() / ref.abs().mean()).item()


@pytest.mark.parametrize("name", tf.FAMILIES)
def test_threshold_zero_is_bit_identical(tiny, name):
    family = tiny(name)
    model, stats = cached(family, 0.0)
    assert torch.equal(sample(family, model), sample(family, family.model))
    assert stats[-1]["skipped"] == 0 and stats[-1]["calls"] >= STEPS


@pytest.mark.parametrize("name", tf.FAMILIES)
def test_skips_calls_within_the_stated_error(tiny, name):
    family = tiny(name)
    model_family, threshold, bound = CASES[name]
    model, stats = cached(family, threshold, model_family)
    out = sample(family, model)
    s = stats[-1]
    assert s["family"] == EXPECTED_PROFILE[name]
    assert s["skipped"] > 0, f"{name}: the TeaCache hooks were never reached"
    assert s["calls"] >= STEPS and s["completed"] is True
    assert torch.isfinite(out).all()
    err = rel_err(out, sample(family, family.model))
    assert 0 < err <= bound, f"{name}: relative error {err:.4f} (bound {bound}) with {s['skipped']}/{s['calls']} skipped"
    trace = s["trace"]
    assert trace[0][4] is False and trace[-1][4] is False, "first and last steps are always computed"


@pytest.mark.parametrize("name", tf.FAMILIES)
def test_indicator_is_read_where_teacache_reads_it(tiny, name):
    """cfg 1 (one cond, one call per step), threshold 0 (every call computed): the
    per-step indicator change and estimate FewStep logged must equal the relative L1
    change of the tensor ComfyUI's block code consumed, through the published polynomial."""
    family = tiny(name)
    path, index = CONSUMER[name]
    dm = tf.diffusion_model(family)
    module = dm.get_submodule(path) if path else dm
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[index].detach().clone()))
    try:
        model, stats = cached(family, 0.0)
        sample(family, model, cfg=1.0)
    finally:
        handle.remove()
    trace = stats[-1]["trace"]
    assert len(seen) == len(trace) == STEPS
    profile = ti.PROFILES[EXPECTED_PROFILE[name]]
    for k in range(1, STEPS):
        sigma, change, estimate, _, skipped = trace[k]
        expected = ti.rel_l1(seen[k], seen[k - 1])
        assert change == pytest.approx(expected, rel=1e-4, abs=1e-6), f"{name} step {k}"
        if profile.published:
            assert estimate == pytest.approx(abs(np.polyval(profile.coefficients, expected)), rel=1e-3)
    if not profile.published:  # generic: the online ratio, never the published tables
        assert stats[-1]["rescale"].startswith("online ratio")


@pytest.mark.parametrize("name", ["flux", "ltxv", "hunyuan_video"])
def test_first_block_families_skip_no_transformer_block(tiny, name):
    """A skipped call must not run a single transformer block (only the cheap embeddings)."""
    family = tiny(name)
    dm = tf.diffusion_model(family)
    blocks = [m for n, m in dm.named_modules() if n.count(".") == 1 and n.split(".")[0] in
              ("double_blocks", "single_blocks", "transformer_blocks")]
    runs = []
    handles = [b.register_forward_pre_hook(lambda m, a: runs.append(1)) for b in blocks]
    try:
        model, stats = cached(family, CASES[name][1])
        sample(family, model)
    finally:
        for h in handles:
            h.remove()
    s = stats[-1]
    assert s["skipped"] > 0
    assert len(runs) == len(blocks) * (s["calls"] - s["skipped"])


def test_wan_retention_mode_reads_e0_from_the_first_block(tiny):
    family = tiny("wan21")
    seen = []
    block = tf.diffusion_model(family).blocks[0]
    handle = block.register_forward_pre_hook(lambda m, a, k: seen.append(k["e"].detach().clone()), with_kwargs=True)
    try:
        model, stats = cached(family, 0.0, "wan2.1_t2v_1.3B_ret_mode")
        sample(family, model, cfg=1.0)
    finally:
        handle.remove()
    coeffs = ti.PROFILES["wan2.1_t2v_1.3B_ret_mode"].coefficients
    for k, (_, change, estimate, _, _) in enumerate(stats[-1]["trace"][1:], start=1):
        assert change == pytest.approx(ti.rel_l1(seen[k], seen[k - 1]), rel=1e-4)
        assert estimate == pytest.approx(abs(np.polyval(coeffs, change)), rel=1e-3)
    model, stats = cached(family, 1e6, "wan2.1_t2v_1.3B_ret_mode")
    sample(family, model)
    assert stats[-1]["skipped"] > 0


def test_explicit_family_must_match_the_model(tiny):
    with pytest.raises(ti.FamilyError, match="needs a Flux diffusion model"):
        cached(tiny("sd15"), 0.2, "flux")
    model, _ = cached(tiny("flux"), 0.2, "flux-kontext")  # same architecture, other coefficients: fine
    assert math.isfinite(float(sample(tiny("flux"), model).abs().mean()))

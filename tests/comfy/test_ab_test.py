"""FewStepABTest in-process on the trained digits teacher (32 px, so runs take about a
second): identical noise, what is counted and timed, and the numbers against the ones
`make bench` computes the same way (core KSampler path, fewstep.metrics)."""

from __future__ import annotations

import math

import pytest
import torch

from comfyui_fewstep.fewstep.analysis import ab_test as ab
from comfyui_fewstep.fewstep.analysis.hooks import KEY
from comfyui_fewstep.fewstep.analysis.report import BranchSettings
from comfyui_fewstep.fewstep.metrics import difference


@pytest.fixture(scope="module", autouse=True)
def one_thread(comfy):
    """One torch thread and no progress bars in this module, as the `tiny` fixture: two
    intra-op threads on a busy 2-core machine spin-wait on each other."""
    import comfy.utils

    threads, bar = torch.get_num_threads(), comfy.utils.PROGRESS_BAR_ENABLED
    torch.set_num_threads(1)
    comfy.utils.PROGRESS_BAR_ENABLED = False
    yield
    torch.set_num_threads(threads)
    comfy.utils.PROGRESS_BAR_ENABLED = bar


@pytest.fixture(scope="module")
def digits(teacher):
    """(model, vae, positive "seven", negative "", a 32x32 latent batch of 2)."""
    import nodes

    from comfyui_fewstep.tools import teacher as T

    model, clip, vae = teacher
    encode = nodes.CLIPTextEncode().encode
    latent = nodes.EmptyLatentImage().generate(32, 32, 2)[0]
    return model, vae, encode(clip, T.prompt_for(7))[0], encode(clip, T.NEGATIVE_PROMPT)[0], latent


def run(digits, a: BranchSettings, b: BranchSettings, model_b=None, repeats=2, vae=True, seed=7):
    model, v, pos, neg, latent = digits
    return ab.run_ab_test(model, model_b or model, pos, neg, latent, seed, a, b, repeats, v if vae else None)


def test_identical_branches_give_identical_results_from_identical_noise(digits):
    model = digits[0]
    same = BranchSettings(6, 5.0, "euler", "normal")
    r = run(digits, same, same)
    rep = r.report
    assert torch.equal(r.latent_a["samples"], r.latent_b["samples"])
    assert torch.equal(r.meters["a"].noise, r.meters["b"].noise)
    assert r.meters["a"].noise.std() > 0.5, "the sampler must receive the seed's noise"
    assert math.isinf(rep.latent_psnr_db) and math.isinf(rep.pixel_psnr_db) and rep.ssim == 1.0
    assert rep.heat_scale == 0.0
    # euler: one evaluation per step; cfg 5: cond and uncond each -> 2 x 6 per image
    assert rep.a.calls_per_image == rep.b.calls_per_image == 12
    assert len(rep.a.sampling) == len(rep.b.sampling) == 2
    assert all(0 < s < t for s, t in zip(rep.a.sampling, rep.a.total)), "sampling is part of the whole call"
    assert math.isfinite(rep.speedup) and rep.speedup > 0
    text = rep.text()
    assert "latent PSNR identical (inf dB)" in text and "SSIM 1.0000" in text and "12 model calls/image" in text
    # the pictures: A, B (batch 2, 32 px decoded) and A | B | heat map, black where equal
    assert r.image_a.shape == r.image_b.shape == (2, 32, 32, 3)
    assert r.comparison.shape == (2, 32, 3 * 32 + 2 * 1, 3)
    assert r.comparison[:, :, -32:].abs().max() == 0
    # the input MODEL is untouched: the wrappers live on private clones
    wrappers = model.model_options.get("transformer_options", {}).get("wrappers", {})
    assert not any(KEY in by_key for by_key in wrappers.values())


def test_model_calls_are_counted_per_image_by_batch_rows(digits):
    # euler 4 steps at cfg 1: the uncond pass is skipped -> 4. heun 3 steps at cfg 5: two
    # evaluations per step except the last (its next sigma is 0) -> (2*3 - 1) x 2 = 10.
    r = run(digits, BranchSettings(4, 1.0, "euler", "normal"), BranchSettings(3, 5.0, "heun", "normal"),
            repeats=1, vae=False)
    assert (r.report.a.calls_per_image, r.report.b.calls_per_image) == (4, 10)
    # the meter keeps counting over the warm-up and the timed run: 4 per image x batch 2 x 2 runs
    assert r.meters["a"].diffusion_rows == r.meters["a"].apply_rows == 4 * 2 * 2
    # without a VAE: latent PSNR only, grey latent previews scaled up to 64 px, the heat map of the latents
    assert r.report.pixel_psnr_db is None and r.report.ssim is None and r.report.heat_of == "latents"
    assert "connect a VAE" in r.report.text()
    assert r.image_a.shape == (2, 64, 64, 3) and r.comparison.shape == (2, 64, 3 * 64 + 2 * 2, 3)
    assert 0 < r.report.latent_psnr_db < 60


def test_numbers_are_the_ones_the_bench_computes_for_the_same_settings(digits):
    """B's latent is what core KSampler (the bench's `nodes.common_ksampler` path) samples at
    B's settings, and the PSNR is fewstep.metrics.difference of the two latents."""
    import nodes

    model, vae, pos, neg, latent = digits
    r = run(digits, BranchSettings(30, 5.0, "euler", "normal"), BranchSettings(8, 5.0, "euler", "normal"), repeats=1)
    ref = nodes.common_ksampler(model, 7, 30, 5.0, "euler", "normal", pos, neg, latent)[0]["samples"]
    fast = nodes.common_ksampler(model, 7, 8, 5.0, "euler", "normal", pos, neg, latent)[0]["samples"]
    assert torch.equal(r.latent_a["samples"], ref) and torch.equal(r.latent_b["samples"], fast)
    assert r.report.latent_psnr_db == difference(ref, fast).psnr_db
    assert 20 < r.report.latent_psnr_db < 60  # 8 of 30 steps: close, not equal
    assert 0 < r.report.ssim < 1 and r.report.heat_scale > 0
    assert (r.report.a.calls_per_image, r.report.b.calls_per_image) == (60, 16)
    assert "speedup B vs A" in r.report.text()


def test_bad_inputs_are_refused_before_sampling(digits):
    model, vae, pos, neg, latent = digits
    s = BranchSettings(2, 5.0, "euler", "normal")
    with pytest.raises(ValueError, match="repeats is 0; it must be at least 1"):
        ab.run_ab_test(model, model, pos, neg, latent, 0, s, s, 0)
    with pytest.raises(ValueError, match="LATENT"):
        ab.run_ab_test(model, model, pos, neg, latent["samples"], 0, s, s, 1)


def test_images_too_small_for_ssim_fail_before_the_timed_runs(digits):
    import nodes

    model, vae, pos, neg, _ = digits
    tiny = nodes.EmptyLatentImage().generate(8, 8, 1)[0]  # decodes to 8x8 px
    s = BranchSettings(1, 5.0, "euler", "normal")
    with pytest.raises(ValueError, match=r"at least 11x11 px.*these are 8x8 px"):
        ab.run_ab_test(model, model, pos, neg, tiny, 0, s, s, 50, vae)


def test_the_node_returns_its_outputs_in_order_and_shows_report_and_picture(pack_nodes, digits):
    model, vae, pos, neg, latent = digits
    node = pack_nodes["FewStepABTest"]
    info = node.GET_NODE_INFO_V1()
    assert info["category"] == "FewStep/analysis"
    assert info["output"] == ["LATENT", "LATENT", "IMAGE", "IMAGE", "IMAGE", "STRING"]
    assert list(info["input"]["optional"]) == ["vae"]
    out = node.execute(model_a=model, model_b=model, positive=pos, negative=neg, latent=latent, seed=3,
                       steps_a=4, cfg_a=5.0, sampler_a="euler", scheduler_a="normal",
                       steps_b=2, cfg_b=5.0, sampler_b="euler", scheduler_b="normal", repeats=1, vae=vae)
    latent_a, latent_b, image_a, image_b, comparison, report = out.args
    assert latent_a["samples"].shape == latent_b["samples"].shape == latent["samples"].shape
    assert image_a.shape == image_b.shape == (2, 32, 32, 3) and comparison.shape[2] == 3 * 32 + 2
    assert out.ui["text"] == (report,) and len(out.ui["images"]) == 2  # the comparison, one per batch item
    assert report.startswith("A/B test") and "8 model calls/image" in report and "4 model calls/image" in report


def test_calls_a_step_cache_skips_do_not_count(digits):
    """B = the teacher through FewStep TeaCache: its skipped calls never reach the network,
    so B's count is 2 x (30 - skipped) per image (TeaCache counts a batched cond+uncond call once)."""
    from comfyui_fewstep.fewstep.caching.hooks import apply_teacache
    from comfyui_fewstep.fewstep.caching.state import Settings

    stats = []
    cached = apply_teacache(digits[0], Settings(0.1), "auto", "off", reporter=stats.append)
    same = BranchSettings(30, 5.0, "euler", "normal")
    r = run(digits, same, same, model_b=cached, repeats=1)
    assert len(stats) == 2 and stats[0]["skipped"] == stats[1]["skipped"] > 0  # warm-up and timed run alike
    assert r.report.a.calls_per_image == 60
    assert r.report.b.calls_per_image == 2 * (30 - stats[0]["skipped"])
    assert 30 < r.report.latent_psnr_db < math.inf and 0 < r.report.ssim < 1

"""The A/B test's pure parts: the timing rules of its report and its difference pictures."""

import math

import pytest
import torch

from comfyui_fewstep.fewstep.analysis.pictures import heat_map, hot_colours, latent_previews, side_by_side
from comfyui_fewstep.fewstep.analysis.report import ABReport, BranchSettings, BranchTimes, order_of_repeat, speedup


def times(sampling, total, calls=60):
    t = BranchTimes(BranchSettings(30, 5.0, "euler", "normal"), calls_per_image=calls)
    for s, w in zip(sampling, total):
        t.add(s, w)
    return t


def test_speedup_is_the_median_of_per_repeat_ratios_not_a_ratio_of_medians():
    a = times([1.0, 2.0, 9.0], [1.5, 2.5, 9.5])
    b = times([1.0, 0.5, 1.0], [1.0, 1.0, 1.5])
    assert speedup(a, b) == 4.0  # ratios 1, 4, 9
    assert a.median / b.median == 2.0  # what a ratio of medians would have said
    assert speedup(a, b, whole_call=True) == pytest.approx(2.5)  # ratios 1.5, 2.5, 6.33
    assert a.outside_sampling == 0.5
    with pytest.raises(ValueError, match="side by side"):
        speedup(a, times([1.0], [1.0]))


def test_branches_alternate_which_runs_first():
    assert [order_of_repeat(r) for r in range(3)] == [("a", "b"), ("b", "a"), ("a", "b")]


def test_report_names_every_number():
    rep = ABReport(times([0.4, 0.42], [0.41, 0.43]), times([0.1, 0.1], [0.11, 0.12], calls=16), 2,
                   latent_psnr_db=43.06, pixel_psnr_db=math.inf, ssim=0.98765, heat_scale=0.0123)
    text = rep.text()
    for part in ("2 timed run(s)", "A: euler/normal, 30 steps, cfg 5: 0.410 s, 60 model calls/image",
                 "16 model calls/image", "speedup B vs A: 4.10x (whole KSampler call: 3.66x)", "latent PSNR 43.06 dB",
                 "pixel PSNR identical (inf dB), SSIM 0.9877", "white = mean |diff| 0.0123"):
        assert part in text, (part, text)
    no_vae = ABReport(rep.a, rep.b, 2, latent_psnr_db=math.inf, heat_of="latents")
    assert "connect a VAE" in no_vae.text() and "heat map (latents): black, no difference" in no_vae.text()


def test_heat_map_is_black_where_equal_and_white_at_the_largest_difference():
    a = torch.zeros(2, 4, 5, 3)
    b = a.clone()
    b[1, 2, 3] = 0.3
    b[0, 0, 0] = 0.15
    heat, scale = heat_map(a, b)
    assert heat.shape == (2, 4, 5, 3) and scale == pytest.approx(0.3)
    assert heat[1, 2, 3].tolist() == [1.0, 1.0, 1.0]
    assert heat[0, 0, 0].tolist() == pytest.approx([1.0, 0.5, 0.0])  # half the scale: red to yellow
    assert heat.sum() == pytest.approx(heat[1, 2, 3].sum() + heat[0, 0, 0].sum())
    same, zero = heat_map(a, a)
    assert zero == 0 and same.abs().max() == 0
    assert hot_colours(torch.tensor([0.0, 1 / 3]))[1].tolist() == pytest.approx([1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="same size"):
        heat_map(a, torch.zeros(2, 4, 4, 3))


def test_side_by_side_puts_white_gaps_between_pictures():
    a, b = torch.zeros(1, 8, 64, 3), torch.full((1, 8, 64, 3), 0.5)
    row = side_by_side(a, b)
    assert row.shape == (1, 8, 64 * 2 + 2, 3)
    assert row[:, :, 64:66].min() == 1.0 and row[:, :, 66:].max() == 0.5
    with pytest.raises(ValueError, match="one shape"):
        side_by_side(a, torch.zeros(1, 8, 32, 3))


def test_latent_previews_share_one_range_and_fold_video_frames():
    a = torch.zeros(1, 4, 4, 4)
    b = torch.ones(1, 4, 4, 4)
    pa, pb = latent_previews(a, b)
    assert pa.shape == pb.shape == (1, 64, 64, 3)  # scaled up 16x to at least 64 px
    assert pa.max() == 0 and pb.min() == 1
    video = torch.randn(2, 16, 3, 8, 8)  # [B, C, T, H, W]
    va, _ = latent_previews(video, video)
    assert va.shape == (6, 64, 64, 3)

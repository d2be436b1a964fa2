import math

import pytest
import torch

from comfyui_fewstep.fewstep.metrics import difference


def test_identical_tensors_have_infinite_psnr_and_zero_error():
    x = torch.rand(2, 8, 8, 3)
    d = difference(x, x.clone(), value_range=1.0)
    assert math.isinf(d.psnr_db) and d.max_abs == 0 and d.mean_abs == 0
    assert "identical" in d.summary()


def test_psnr_matches_the_textbook_formula():
    ref = torch.zeros(1, 4, 4, 3)
    cand = torch.full_like(ref, 0.1)  # mse 0.01 over peak 1 -> 20 dB
    d = difference(ref, cand, value_range=1.0)
    assert d.psnr_db == pytest.approx(20.0)
    assert d.max_abs == pytest.approx(0.1) and d.mean_abs == pytest.approx(0.1)


def test_latents_use_the_references_own_range():
    ref = torch.tensor([0.0, 4.0])
    d = difference(ref, torch.tensor([0.0, 3.0]))
    assert d.value_range == 4.0
    assert d.psnr_db == pytest.approx(10 * math.log10(16 / 0.5))


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(1, 8, 8, 3\) vs candidate \(1, 4, 4, 3\)"):
        difference(torch.zeros(1, 8, 8, 3), torch.zeros(1, 4, 4, 3))


def test_nan_input_is_refused():
    bad = torch.zeros(3)
    bad[1] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        difference(torch.zeros(3), bad)


# ---- SSIM ---------------------------------------------------------------------------------
# kornia is in the dev extra (pyproject.toml) so that this comparison runs wherever the
# tests run; a missing kornia is an error, not a skip.
import kornia  # noqa: E402

from comfyui_fewstep.fewstep.metrics import ssim  # noqa: E402


def _pair(shape, noise, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g)
    b = (a + noise * torch.randn(shape, generator=g)).clamp(0, 1)
    return a, b


@pytest.mark.parametrize("shape,noise", [((2, 3, 32, 40), 0.1), ((1, 1, 11, 11), 0.3), ((3, 4, 17, 64), 0.02)])
def test_ssim_matches_kornia_on_the_valid_region(shape, noise):
    a, b = _pair(shape, noise)
    expected = kornia.metrics.ssim(a.double(), b.double(), 11, max_val=1.0, padding="valid").mean().item()
    assert ssim(a, b, channels_last=False) == pytest.approx(expected, abs=1e-9)
    assert 0 < expected < 1


def test_ssim_reads_comfyui_images_channels_last():
    a, b = _pair((2, 24, 30, 3), 0.2, seed=1)  # [B, H, W, C]
    expected = kornia.metrics.ssim(a.movedim(-1, 1).double(), b.movedim(-1, 1).double(), 11, padding="valid")
    assert ssim(a, b) == pytest.approx(expected.mean().item(), abs=1e-9)


def test_ssim_of_identical_images_is_one_and_falls_with_noise():
    a, _ = _pair((1, 32, 32, 3), 0.0)
    assert ssim(a, a.clone()) == 1.0
    scores = [ssim(a, _pair((1, 32, 32, 3), n, seed=0)[1]) for n in (0.01, 0.05, 0.2)]
    assert 1 > scores[0] > scores[1] > scores[2]


def test_ssim_refuses_images_under_the_window_naming_the_size_and_the_fix():
    with pytest.raises(ValueError, match=r"at least 11x11 px.*these are 12x10 px.*ImageScale"):
        ssim(torch.zeros(1, 10, 12, 3), torch.zeros(1, 10, 12, 3))


def test_ssim_refuses_different_shapes_and_non_images():
    with pytest.raises(ValueError, match="same size"):
        ssim(torch.zeros(1, 16, 16, 3), torch.zeros(1, 16, 17, 3))
    with pytest.raises(ValueError, match=r"image batch"):
        ssim(torch.zeros(16, 16, 3), torch.zeros(16, 16, 3))

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

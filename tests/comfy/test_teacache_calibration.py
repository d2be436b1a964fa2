"""Calibration in ComfyUI: the model fingerprint, one full run that fits and stores the
polynomial, later runs that use it, and logged fallbacks for unusable files."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from comfyui_fewstep.fewstep.caching import calibration as cal
from comfyui_fewstep.fewstep.caching.state import Settings
from comfyui_fewstep.fewstep.caching.hooks import apply_teacache, fingerprint
from comfyui_fewstep.tools import tiny_families as tf

# Module-wide: one quiet thread, tiny models built once and released after the module.
pytestmark = pytest.mark.usefixtures("tiny")

STEPS = 12


def sample(model, family):
    import nodes

    return nodes.common_ksampler(model, 5, STEPS, 3.0, family.sampler, family.scheduler, family.positive,
                                 family.negative, family.latent)[0]["samples"]


def with_teacache(model, root, calibration, threshold=0.3, family="auto"):
    stats = []
    return apply_teacache(model, Settings(threshold), family, calibration, store_root=root,
                          reporter=stats.append), stats


def test_fingerprint_identifies_the_weights_not_the_object_or_its_load_state(tiny, comfy):
    import comfy.model_management as mm

    a, b, other = tiny("sd15").model, tf.build("sd15", seed=0).model, tiny("sd15", seed=1).model
    fp = fingerprint(a)
    assert len(fp) == 64 and fp == fingerprint(b) and fp != fingerprint(other)
    lora = a.clone()
    key = "diffusion_model.input_blocks.1.1.proj_in.weight"
    weight = a.model.state_dict()[key]
    lora.add_patches({key: (torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) * 0.01,)}, 1.0)
    half = a.clone()
    half.add_patches({key: lora.patches[key][0][1]}, 0.5)
    fp_lora = fingerprint(lora)
    assert len({fp, fp_lora, fingerprint(half)}) == 3  # a LoRA and its strength count
    mm.load_models_gpu([lora])  # the shared weights are patched in place now
    try:
        assert lora.model.current_weight_patches_uuid is not None
        assert fingerprint(lora) == fp_lora and fingerprint(a) == fp  # ... and nothing moved
    finally:
        mm.unload_all_models()


@pytest.mark.parametrize("name", tf.FAMILIES)
def test_one_full_run_calibrates_and_later_runs_use_it(tiny, tmp_path, name):
    """After calibration the threshold means the same on every family (estimated relative
    output change): at 0.6 each tiny model skipped 5-18 calls at 0.04-0.13 relative error
    (measured), where the published polynomials needed thresholds from 0.1 to 3000."""
    family = tiny(name)
    model, stats = with_teacache(family.model, tmp_path, "calibrate on next run")
    reference = sample(family.model, family)
    assert torch.equal(sample(model, family), reference)  # the calibration run computes every call
    first = stats[-1]
    assert first["skipped"] == 0 and first["calibration"]["status"].startswith("calibrated and saved")
    path = cal.path_for(tmp_path, fingerprint(family.model))
    doc = json.loads(path.read_text())
    assert doc["fingerprint"] == fingerprint(family.model) and str(STEPS) in doc["fits"]
    assert len(doc["fits"][str(STEPS)]["points"]) >= STEPS - 3

    sample(model, family)  # the same MODEL again: no second calibration, the stored fit is used
    assert stats[-1]["calibration"]["status"] == f"stored fit ({STEPS} steps)"
    fresh, fresh_stats = with_teacache(family.model, tmp_path, "use stored", threshold=0.6)  # found by fingerprint
    out = sample(fresh, family)
    s = fresh_stats[-1]
    assert s["rescale"] == f"stored fit ({STEPS} steps)" and s["skipped"] > 0
    # 1.5x the worst measured (0.13); rounding on fp16 / GPU moves it by ~1e-3.
    assert ((out - reference).abs().mean() / reference.abs().mean()).item() < 0.2


def test_other_weights_find_no_calibration_and_off_never_reads(tiny, tmp_path):
    family = tiny("sd15")
    model, _ = with_teacache(family.model, tmp_path, "calibrate on next run")
    sample(model, family)
    other, stats = with_teacache(tiny("sd15", seed=1).model, tmp_path, "use stored")
    sample(other, family)
    assert stats[-1]["calibration"]["status"] == "none stored for this model"
    off, stats = with_teacache(family.model, tmp_path, "off")
    sample(off, family)
    assert stats[-1]["calibration"] == {"mode": "off", "status": "off"}
    assert stats[-1]["rescale"].startswith("online ratio")


def test_a_calibration_stored_by_fewstep_0_1_is_still_used(tiny, tmp_path):
    """Files saved under the earlier, module-name keyed fingerprint stay readable."""
    family = tiny("sd15")
    model, _ = with_teacache(family.model, tmp_path, "calibrate on next run")
    sample(model, family)
    legacy = fingerprint(family.model, legacy=True)
    assert legacy != fingerprint(family.model)
    doc = json.loads(cal.path_for(tmp_path, fingerprint(family.model)).read_text())
    cal.path_for(tmp_path, fingerprint(family.model)).unlink()
    cal.path_for(tmp_path, legacy).write_text(json.dumps({**doc, "fingerprint": legacy}))
    fresh, stats = with_teacache(family.model, tmp_path, "use stored", threshold=0.6)
    sample(fresh, family)
    assert stats[-1]["rescale"] == f"stored fit ({STEPS} steps) (stored by an earlier FewStep)"
    assert stats[-1]["skipped"] > 0


@pytest.mark.parametrize("content", ["{ truncated", json.dumps({"format": cal.FORMAT, "version": 1, "fingerprint": "0" * 64, "fits": {}})])
def test_corrupt_or_foreign_file_is_logged_and_sampling_goes_on(tiny, tmp_path, caplog, content):
    family = tiny("sd15")
    cal.path_for(tmp_path, fingerprint(family.model)).write_text(content)
    model, stats = with_teacache(family.model, tmp_path, "use stored")
    with caplog.at_level(logging.WARNING, logger="FewStep.TeaCache"):
        out = sample(model, family)
    assert torch.isfinite(out).all()
    assert stats[-1]["calibration"]["status"].startswith("ignored")
    assert stats[-1]["rescale"].startswith("online ratio")
    assert any("ignoring calibration" in r.getMessage() for r in caplog.records)


def test_an_interrupted_calibration_run_stores_nothing(tiny, tmp_path):
    import comfy.sample

    family = tiny("sd15")
    model, stats = with_teacache(family.model, tmp_path, "calibrate on next run")
    latent = family.latent["samples"]

    def stop(step, *args):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        comfy.sample.sample(model, comfy.sample.prepare_noise(latent, 1), STEPS, 3.0, "euler", family.scheduler,
                            family.positive, family.negative, latent, callback=stop)
    assert stats[-1]["completed"] is False
    assert not any(tmp_path.iterdir())

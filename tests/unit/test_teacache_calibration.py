"""Calibration store and fit (plain code): the file is versioned, readable and keyed by the
fingerprint; corrupt, foreign or other-version files are logged and ignored."""

import json
import logging

import numpy as np
import pytest

from comfyui_fewstep.fewstep.caching import calibration as cal
from comfyui_fewstep.fewstep.caching import profiles as ti

FP = "ab" * 32
OTHER = "cd" * 32


def points(coeffs=(2.0, 0.5, 0.01), n=20):
    xs = np.linspace(0.01, 0.3, n)
    return [(float(x), float(np.polyval(coeffs, x))) for x in xs]


def test_fit_recovers_a_quadratic_and_never_goes_negative():
    f = cal.fit(points(), steps=30, sampler="sample_euler")
    assert np.allclose(f.coefficients, (2.0, 0.5, 0.01), atol=1e-6)
    assert f.rmse < 1e-8 and f.x_min == pytest.approx(0.01) and f.x_max == pytest.approx(0.3)
    assert f(0.1) == pytest.approx(np.polyval((2.0, 0.5, 0.01), 0.1))
    assert f(0.0) == f(0.01)  # no extrapolation below the calibrated range
    assert cal.fit([(0.1, 0.0), (0.2, 0.0), (0.3, 0.0), (0.4, 0.0), (0.5, 0.0)], 10)(10.0) >= 0.0


def test_fit_needs_enough_points():
    with pytest.raises(ValueError, match="at least"):
        cal.fit(points(n=3), steps=3)


def test_store_round_trip_is_visible_and_versioned(tmp_path):
    path = cal.save(tmp_path, FP, cal.fit(points(), 30, "sample_euler"), "sd15", ti.MODEL_INPUT)
    assert path == tmp_path / f"{FP[:20]}.json"
    doc = json.loads(path.read_text())
    assert doc["format"] == cal.FORMAT and doc["version"] == cal.VERSION and doc["fingerprint"] == FP
    entry = doc["fits"]["30"]
    assert {"coefficients", "points", "rmse", "x_range", "created", "comfyui", "sampler"} <= set(entry)
    found, how = cal.lookup(tmp_path, FP, 30)
    assert found is not None and found.steps == 30 and "stored fit" in how
    assert np.allclose(found.coefficients, (2.0, 0.5, 0.01), atol=1e-6)


def test_lookup_uses_the_nearest_step_count_and_says_so(tmp_path):
    cal.save(tmp_path, FP, cal.fit(points(), 30), "sd15", ti.MODEL_INPUT)
    cal.save(tmp_path, FP, cal.fit(points((1.0, 0.2, 0.0)), 10), "sd15", ti.MODEL_INPUT)
    found, how = cal.lookup(tmp_path, FP, 25)
    assert found.steps == 30 and "30 steps used for 25" in how
    assert sorted(json.loads(cal.path_for(tmp_path, FP).read_text())["fits"]) == ["10", "30"]


def test_nothing_stored(tmp_path):
    assert cal.lookup(tmp_path, FP, 30) == (None, "none stored for this model")


@pytest.mark.parametrize("content, why", [
    ("{not json", "not readable JSON"),
    (json.dumps({"format": "something-else"}), "not a FewStep TeaCache calibration"),
    (json.dumps({"format": cal.FORMAT, "version": 99, "fingerprint": FP, "fits": {}}), "version 99"),
    (json.dumps({"format": cal.FORMAT, "version": cal.VERSION, "fingerprint": OTHER, "fits": {}}), "another model"),
    (json.dumps({"format": cal.FORMAT, "version": cal.VERSION, "fingerprint": FP, "fits": []}), "no fits"),
])
def test_unusable_files_are_logged_and_ignored(tmp_path, caplog, content, why):
    cal.path_for(tmp_path, FP).write_text(content)
    with caplog.at_level(logging.WARNING, logger="FewStep.TeaCache"):
        found, how = cal.lookup(tmp_path, FP, 30)
    assert found is None and why in how
    assert any(why in r.getMessage() for r in caplog.records)


def test_a_broken_fit_entry_is_skipped_but_good_ones_are_used(tmp_path, caplog):
    cal.save(tmp_path, FP, cal.fit(points(), 30), "sd15", ti.MODEL_INPUT)
    p = cal.path_for(tmp_path, FP)
    doc = json.loads(p.read_text())
    doc["fits"]["20"] = {"steps": 20, "coefficients": ["x"], "x_range": [0, 1]}
    p.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="FewStep.TeaCache"):
        found, _ = cal.lookup(tmp_path, FP, 20)
    assert found.steps == 30
    assert any("20-step fit" in r.getMessage() for r in caplog.records)


def test_saving_over_a_corrupt_file_replaces_it(tmp_path):
    cal.path_for(tmp_path, FP).write_text("garbage")
    cal.save(tmp_path, FP, cal.fit(points(), 30), "sd15", ti.MODEL_INPUT)
    assert cal.lookup(tmp_path, FP, 30)[0] is not None

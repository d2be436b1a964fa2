"""Calibration: fit TeaCache's indicator-to-output-change polynomial from one full run of
*this* model, store it, and use it on later runs.

Fingerprint (what "this model" means; computed by comfy_compat.model_fingerprint with
FINGERPRINT_TAG). SHA-256 over, in order: a format tag, the ComfyUI model-config class
name, then for every tensor of 2+ dimensions of the diffusion model's state dict its
shape, dtype and 8 values at evenly spaced flat positions (the pre-patch value when
ComfyUI holds a backup of an in-place patched weight), then for every weight patch on the
ModelPatcher (LoRAs etc.) its strengths and 8 sampled values of each of its tensors;
both lists sorted by content, not by module name. So the same checkpoint gives the same
fingerprint whether or not it is loaded and on any ComfyUI version (module renames and
dropped 1-D parameters do not count), and another checkpoint, a LoRA or a LoRA strength
gives another. Reading ~1,000 x 8 values takes milliseconds. Files stored by FewStep
0.1.x under the name-keyed fingerprint (LEGACY_FINGERPRINT_TAG) are still found: when
nothing is stored under the fingerprint, the legacy one is looked up.

Store: one JSON file per fingerprint, `<ComfyUI user dir>/fewstep/teacache/<first 20 hex
of the fingerprint>.json`, human-readable, with a format name and version, the full
fingerprint, and one fit per step count (coefficients, the points they were fitted to,
their error, the sampler, date and ComfyUI version). A file that is not valid JSON, has
another format or version, or holds another fingerprint is ignored with a logged warning
and the run falls back to the published coefficients / the online ratio.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path


FORMAT = "fewstep-teacache-calibration"
VERSION = 1
FINGERPRINT_TAG = b"fewstep-teacache-fingerprint-v2"
LEGACY_FINGERPRINT_TAG = b"fewstep-teacache-fingerprint-v1"  # FewStep 0.1.x, module-name keyed
MIN_POINTS = 4
NONE_STORED = "none stored for this model"
log = logging.getLogger("FewStep.TeaCache")


class CalibrationFileError(ValueError):
    """A stored calibration that cannot be used (corrupt, foreign, other version)."""


# ---- fitting ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Fit:
    """indicator change -> output change, numpy poly1d order, valid on [x_min, x_max]."""

    coefficients: tuple[float, ...]
    x_min: float
    x_max: float
    rmse: float
    points: tuple[tuple[float, float], ...]
    steps: int
    sampler: str = ""

    def __call__(self, x: float) -> float:
        if not math.isfinite(x):
            return math.inf
        x = min(max(x, self.x_min), self.x_max * 2.0)  # mild extrapolation above, none below
        acc = 0.0
        for c in self.coefficients:
            acc = acc * x + c
        return max(acc, 0.0)

    def to_json(self) -> dict:
        return {"steps": self.steps, "coefficients": list(self.coefficients), "x_range": [self.x_min, self.x_max],
                "rmse": self.rmse, "points": [list(p) for p in self.points], "sampler": self.sampler}

    @classmethod
    def from_json(cls, d: dict) -> "Fit":
        coeffs = tuple(float(c) for c in d["coefficients"])
        lo, hi = (float(v) for v in d["x_range"])
        if not coeffs or not all(math.isfinite(c) for c in coeffs) or not (0 <= lo <= hi):
            raise CalibrationFileError("fit has invalid coefficients or range")
        return cls(coeffs, lo, hi, float(d.get("rmse", math.nan)),
                   tuple((float(a), float(b)) for a, b in d.get("points", [])), int(d["steps"]), str(d.get("sampler", "")))


def fit(points, steps: int, sampler: str = "", degree: int = 2) -> Fit:
    """Least-squares polynomial through (indicator change, output change) points."""
    import numpy as np

    pts = [(float(a), float(b)) for a, b in points if math.isfinite(a) and math.isfinite(b) and a >= 0 and b >= 0]
    if len(pts) < MIN_POINTS:
        raise ValueError(f"calibration needs at least {MIN_POINTS} computed steps, got {len(pts)} usable points")
    x = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    deg = max(1, min(degree, len(pts) // 4))
    coeffs = np.polyfit(x, y, deg)
    rmse = float(np.sqrt(np.mean((np.polyval(coeffs, x) - y) ** 2)))
    return Fit(tuple(float(c) for c in coeffs), float(x.min()), float(x.max()), rmse, tuple(pts), steps, sampler)


# ---- store -----------------------------------------------------------------------------

def path_for(root: Path, fp: str) -> Path:
    return Path(root) / f"{fp[:20]}.json"


def read(root: Path, fp: str) -> dict | None:
    """The stored document for `fp`; None when there is none. CalibrationFileError when
    the file exists but cannot be used."""
    p = path_for(root, fp)
    if not p.exists():
        return None
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CalibrationFileError(f"{p} is not readable JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CalibrationFileError(f"{p} is not a FewStep TeaCache calibration file")
    if doc.get("version") != VERSION:
        raise CalibrationFileError(f"{p} has format version {doc.get('version')!r}; this FewStep reads version {VERSION}")
    if doc.get("fingerprint") != fp:
        raise CalibrationFileError(f"{p} belongs to another model (fingerprint {str(doc.get('fingerprint'))[:20]}...)")
    if not isinstance(doc.get("fits"), dict):
        raise CalibrationFileError(f"{p} has no fits")
    return doc


def lookup(root: Path, fp: str, steps: int) -> tuple[Fit | None, str]:
    """(fit, what happened) for this model and step count: the fit for `steps` or, failing
    that, the one of the nearest step count. Never raises: unusable files are logged."""
    try:
        doc = read(root, fp)
    except CalibrationFileError as e:
        log.warning("FewStep TeaCache: ignoring calibration: %s", e)
        return None, f"ignored ({e})"
    if doc is None:
        return None, NONE_STORED
    fits = {}
    for k, v in doc["fits"].items():
        try:
            fits[int(k)] = Fit.from_json(v)
        except (CalibrationFileError, KeyError, TypeError, ValueError) as e:
            log.warning("FewStep TeaCache: ignoring the %s-step fit in %s: %s", k, path_for(root, fp), e)
    if not fits:
        return None, "stored file has no usable fit"
    best = min(fits, key=lambda s: (abs(s - steps), -s))
    how = f"stored fit ({best} steps)" if best == steps else f"stored fit of {best} steps used for {steps}"
    return fits[best], how


def save(root: Path, fp: str, new_fit: Fit, architecture: str, indicator: str, comfyui: str = "unknown") -> Path:
    """Add `new_fit` to this model's file (replacing a fit of the same step count)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        doc = read(root, fp)
    except CalibrationFileError as e:
        log.warning("FewStep TeaCache: replacing unusable calibration file: %s", e)
        doc = None
    if doc is None:
        doc = {"format": FORMAT, "version": VERSION, "fingerprint": fp, "architecture": architecture,
               "indicator": indicator, "fits": {}}
    entry = new_fit.to_json()
    entry["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    entry["comfyui"] = comfyui
    doc["fits"][str(new_fit.steps)] = entry
    p = path_for(root, fp)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, p)
    return p

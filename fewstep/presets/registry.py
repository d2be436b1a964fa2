"""The preset registry: published settings for few-step LoRAs and distilled checkpoints.

presets.json holds the data (one entry per preset, each with its citation); this module
loads and validates it once (one small check per field, listed in FIELDS), and turns a
preset plus a step count into the values a sampler needs. It imports nothing from
ComfyUI, so it can be checked anywhere; sigmas and model patches, which need ComfyUI,
live in apply.py and patches.py.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .. import architectures
from .shift import ResolutionShift

PRESETS_FILE = Path(__file__).with_name("presets.json")

KINDS = ("lora", "checkpoint")
PREDICTIONS = ("eps", "v", "x0", "flow")
DEFAULT_TCD_ETA = 0.3
SHIFT_PATCHES = ("aura_flow_shift", "sd3_shift", "shift_by_resolution")  # one per preset

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")


class PresetError(ValueError):
    """A preset file entry is malformed, an id is unknown, or a step count is not supported."""


@dataclass(frozen=True)
class Source:
    title: str
    url: str | None = None

    def __str__(self) -> str:
        return f"{self.title} ({self.url})" if self.url else self.title


@dataclass(frozen=True)
class Preset:
    """One published setting. Step-dependent values (cfg, timesteps) are keyed by step count."""

    id: str
    family: str
    kind: str  # "lora" or "checkpoint"
    base: tuple[str, ...]  # ids from fewstep.architectures
    steps: tuple[int, ...]  # supported step counts, ascending
    default_steps: int
    cfg: float
    cfg_range: tuple[float, float]
    sampler: str  # a name in comfy.samplers.KSampler.SAMPLERS (plus this pack's "tcd")
    scheduler: str  # a name in comfy.samplers.KSampler.SCHEDULERS
    lora_strength: float | None  # None for full checkpoints
    prediction: str
    notes: str
    source: tuple[Source, ...]
    steps_in_file_name: bool = False  # the LoRA file name says which count it was made for
    cfg_by_steps: Mapping[int, float] = field(default_factory=lambda: MappingProxyType({}))
    # patch name -> value; "shift_by_resolution" holds a shift.ResolutionShift
    model_patches: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    eta: float | None = None  # TCD gamma
    timesteps: Mapping[int, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}))
    flux_guidance: float | None = None
    expert_split: Mapping[str, Any] | None = None  # Wan2.2 high/low-noise experts
    # Step counts at which the `sigmas` output (SamplerCustom), not KSampler's outputs, is
    # the recommended path: KSampler's scheduler runs a schedule too far from the source's.
    sigmas_preferred_at: tuple[int, ...] = ()
    sampler_chosen_by_pack: bool = False  # the source names no sampler/scheduler: FewStep picked them
    warning: str | None = None  # a known pitfall, shown as a Warning line in `info`

    def allowed_steps_text(self) -> str:
        s = self.steps
        if len(s) > 2 and list(s) == list(range(s[0], s[-1] + 1)):
            return f"{s[0]}-{s[-1]}"
        return ", ".join(str(n) for n in s)


@dataclass(frozen=True)
class Plan:
    """What a preset asks of the sampler at one step count."""

    preset: Preset
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    timesteps: tuple[int, ...] | None  # custom schedule (model timesteps, descending) or None
    guidance: float | None  # FLUX guidance for FluxGuidance, None when not used
    eta: float | None
    sigmas_preferred: bool = False  # recommend the `sigmas` output over KSampler's outputs


# ---- field checks ---------------------------------------------------------------------------
# Each check takes the raw value and the fields parsed before it, and returns the value the
# Preset holds, or raises _Invalid with the message (the caller adds which entry it is).
# FIELDS lists them in dependency order; CROSS_CHECKS then relate fields to each other.


class _Invalid(Exception):
    pass


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _check_id(v, _):
    if not (isinstance(v, str) and _ID_RE.match(v)):
        raise _Invalid("'id' must be lowercase letters, digits, '-' or '.'")
    return v


def _text(key: str):
    def check(v, _):
        if not (isinstance(v, str) and v.strip()):
            raise _Invalid(f"'{key}' must be a non-empty string")
        return v
    return check


def _one_of(key: str, allowed: tuple[str, ...]):
    def check(v, _):
        if v not in allowed:
            raise _Invalid(f"'{key}' must be one of {allowed}")
        return v
    return check


def _check_base(v, _):
    if not (isinstance(v, list) and v and all(b in architectures.ARCHITECTURES for b in v)):
        raise _Invalid(f"'base' must be a non-empty list of architecture ids ({', '.join(architectures.ids())})")
    return tuple(v)


def _check_steps(v, _):
    if not (isinstance(v, list) and v and all(_is_count(n) for n in v)):
        raise _Invalid("'steps' must be a non-empty list of positive integers")
    if v != sorted(set(v)):
        raise _Invalid("'steps' must be ascending without repeats")
    return tuple(v)


def _check_default_steps(v, parsed):
    if v not in parsed["steps"]:
        raise _Invalid(f"'default_steps' {v!r} is not in 'steps' {list(parsed['steps'])}")
    return v


def _check_cfg_range(v, _):
    if not (isinstance(v, list) and len(v) == 2 and all(_is_number(c) for c in v) and 0 < v[0] <= v[1]):
        raise _Invalid("'cfg_range' must be [low, high] with 0 < low <= high")
    return float(v[0]), float(v[1])


def _in_cfg_range(cfg, parsed) -> float:
    low, high = parsed["cfg_range"]
    if not (_is_number(cfg) and low <= cfg <= high):
        raise _Invalid(f"cfg {cfg!r} is outside 'cfg_range' {[low, high]}")
    return float(cfg)


def _step_keyed(what: str, raw: Any, steps: tuple[int, ...]) -> dict[int, Any]:
    if not isinstance(raw, dict):
        raise _Invalid(f"'{what}' must be an object keyed by step count")
    out = {}
    for key, value in raw.items():
        if not (isinstance(key, str) and key.isdigit()) or int(key) not in steps:
            raise _Invalid(f"'{what}' key {key!r} is not one of the supported step counts {list(steps)}")
        out[int(key)] = value
    return out


def _check_cfg_by_steps(v, parsed):
    keyed = _step_keyed("cfg_by_steps", v, parsed["steps"])
    return MappingProxyType({n: _in_cfg_range(c, parsed) for n, c in keyed.items()})


def _check_strength(v, parsed):
    if parsed["kind"] == "lora":
        if not (_is_number(v) and 0 < v <= 2):
            raise _Invalid("a LoRA preset needs 'lora_strength' in (0, 2]")
        return float(v)
    if v is not None:
        raise _Invalid("a checkpoint preset has 'lora_strength' null")
    return None


def _resolution_shift(v):
    try:
        return ResolutionShift.from_json(v)
    except ValueError:
        return None


# name -> parser of the value (None: invalid); patches.py implements each.
MODEL_PATCHES = {
    "model_sampling": lambda v: v if v in ("lcm", "x0") else None,
    "aura_flow_shift": lambda v: float(v) if _is_number(v) and v > 0 else None,
    "sd3_shift": lambda v: float(v) if _is_number(v) and v > 0 else None,
    "shift_by_resolution": _resolution_shift,
    "unscaled_initial_noise": lambda v: True if v is True else None,
}


def _check_model_patches(v, _):
    if not isinstance(v, dict):
        raise _Invalid("'model_patches' must be an object")
    out = {}
    for name, value in v.items():
        if name not in MODEL_PATCHES:
            raise _Invalid(f"unknown model patch {name!r}; known: {sorted(MODEL_PATCHES)}")
        out[name] = MODEL_PATCHES[name](value)
        if out[name] is None:
            raise _Invalid(f"model patch {name!r} has an invalid value {value!r}")
    if len(set(out) & set(SHIFT_PATCHES)) > 1:
        raise _Invalid("use one shift patch, not several")
    return MappingProxyType(out)


def _optional_number(key: str, ok, rule: str):
    def check(v, _):
        if v is not None and not (_is_number(v) and ok(v)):
            raise _Invalid(f"'{key}' must be {rule}")
        return None if v is None else float(v)
    return check


def _check_timesteps(v, parsed):
    keyed = _step_keyed("timesteps", v, parsed["steps"])
    for n, ts in keyed.items():
        if not (isinstance(ts, list) and len(ts) == n and all(isinstance(t, int) and 0 <= t <= 999 for t in ts)
                and all(a > b for a, b in zip(ts, ts[1:]))):
            raise _Invalid(f"timesteps for {n} step(s) must be {n} descending integers in [0, 999]")
    return MappingProxyType({n: tuple(ts) for n, ts in keyed.items()})


def _check_expert_split(v, _):
    if v is None:
        return None
    if not (isinstance(v, dict) and _is_number(v.get("boundary")) and 0 < v["boundary"] < 1
            and isinstance(v.get("high_noise_steps"), int) and set(v) == {"boundary", "high_noise_steps"}):
        raise _Invalid("'expert_split' must be {boundary in (0, 1), high_noise_steps int}")
    return MappingProxyType(dict(v))


def _check_sigmas_preferred_at(v, parsed):
    if not (isinstance(v, list) and all(n in parsed["timesteps"] for n in v) and v == sorted(set(v))):
        raise _Invalid("'sigmas_preferred_at' must list step counts (ascending) that have 'timesteps'")
    return tuple(v)


def _check_flag(key: str):
    def check(v, _):
        if not isinstance(v, bool):
            raise _Invalid(f"'{key}' must be true or false")
        return v
    return check


def _check_warning(v, _):
    if v is not None and not (isinstance(v, str) and v.strip()):
        raise _Invalid("'warning' must be a non-empty string or null")
    return v


def _check_sources(v, _):
    if not (isinstance(v, list) and v):
        raise _Invalid("'source' must be a non-empty list of {title, url}")
    out = []
    for s in v:
        if not (isinstance(s, dict) and isinstance(s.get("title"), str) and s["title"].strip()
                and set(s) <= {"title", "url"} and (s.get("url") is None or str(s["url"]).startswith("https://"))):
            raise _Invalid("each source needs a 'title' and an https 'url' (or null)")
        out.append(Source(s["title"], s.get("url")))
    return tuple(out)


_ABSENT = object()  # a required field has no default

# JSON field -> (default when absent, check). Order matters: a check may read fields above it.
FIELDS: dict[str, tuple[Any, Any]] = {
    "id": (_ABSENT, _check_id),
    "family": (_ABSENT, _text("family")),
    "notes": (_ABSENT, _text("notes")),
    "sampler": (_ABSENT, _text("sampler")),
    "scheduler": (_ABSENT, _text("scheduler")),
    "kind": (_ABSENT, _one_of("kind", KINDS)),
    "prediction": (_ABSENT, _one_of("prediction", PREDICTIONS)),
    "base": (_ABSENT, _check_base),
    "steps": (_ABSENT, _check_steps),
    "default_steps": (_ABSENT, _check_default_steps),
    "cfg_range": (_ABSENT, _check_cfg_range),
    "cfg": (_ABSENT, _in_cfg_range),
    "cfg_by_steps": ({}, _check_cfg_by_steps),
    "lora_strength": (_ABSENT, _check_strength),
    "model_patches": ({}, _check_model_patches),
    "eta": (None, _optional_number("eta", lambda e: 0 <= e <= 1, "in [0, 1]")),
    "timesteps": ({}, _check_timesteps),
    "flux_guidance": (None, _optional_number("flux_guidance", lambda g: g > 0, "a positive number")),
    "expert_split": (None, _check_expert_split),
    "steps_in_file_name": (False, _check_flag("steps_in_file_name")),
    "sigmas_preferred_at": ([], _check_sigmas_preferred_at),
    "sampler_chosen_by_pack": (False, _check_flag("sampler_chosen_by_pack")),
    "warning": (None, _check_warning),
    "source": (_ABSENT, _check_sources),
}
_REQUIRED = tuple(k for k, (default, _) in FIELDS.items() if default is _ABSENT)


# (rule that must hold on the parsed fields, message when it does not)
CROSS_CHECKS = (
    (lambda p: not p["model_patches"].get("unscaled_initial_noise") or p["steps"] == (1,),
     "'unscaled_initial_noise' is for one-step generators only"),
    (lambda p: p["sampler"] != "tcd" or p["eta"] is not None,
     "a preset using the 'tcd' sampler must give 'eta'"),
    (lambda p: not (p["timesteps"] and p["prediction"] == "flow"),
     "'timesteps' are discrete training timesteps (0-999); flow presets use a scheduler and shift"),
)


def _fail(where: str, msg: str) -> PresetError:
    return PresetError(f"{where}: {msg}")


def parse_preset(raw: Any, index: int = 0) -> Preset:
    """Validate one JSON entry and build its Preset; errors name the entry and the field."""
    if not isinstance(raw, dict):
        raise _fail(f"preset #{index}", "must be a JSON object")
    where = f"preset #{index} ({raw.get('id', '?')!s})"
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise _fail(where, f"missing field(s) {missing}")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise _fail(where, f"unknown field(s) {unknown}")
    parsed: dict[str, Any] = {}
    try:
        for name, (default, check) in FIELDS.items():
            parsed[name] = check(raw.get(name, default), parsed)
        for holds, message in CROSS_CHECKS:
            if not holds(parsed):
                raise _Invalid(message)
    except _Invalid as e:
        raise _fail(where, str(e)) from None
    return Preset(**parsed)


def parse_registry(data: Any, origin: str = "presets") -> dict[str, Preset]:
    """Validate a whole registry document ({"schema_version": 1, "presets": [...]})."""
    if not (isinstance(data, dict) and data.get("schema_version") == 1 and isinstance(data.get("presets"), list)):
        raise PresetError(f"{origin}: expected an object with schema_version 1 and a 'presets' list")
    out: dict[str, Preset] = {}
    for i, raw in enumerate(data["presets"]):
        try:
            preset = parse_preset(raw, i)
        except PresetError as e:
            raise PresetError(f"{origin}: {e}") from None
        if preset.id in out:
            raise PresetError(f"{origin}: duplicate preset id {preset.id!r}")
        out[preset.id] = preset
    if not out:
        raise PresetError(f"{origin}: no presets")
    return out


@lru_cache(maxsize=1)
def registry() -> Mapping[str, Preset]:
    """All presets, loaded and validated once per process (the file ships with the pack)."""
    try:
        data = json.loads(PRESETS_FILE.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PresetError(f"cannot read the preset registry {PRESETS_FILE}: {e}") from e
    return MappingProxyType(parse_registry(data, origin=str(PRESETS_FILE)))


def preset_ids() -> list[str]:
    return list(registry())


def get_preset(preset_id: str) -> Preset:
    try:
        return registry()[preset_id]
    except KeyError:
        raise PresetError(f"unknown preset {preset_id!r}; known presets: {', '.join(registry())}") from None


def plan(preset: Preset | str, steps: int | None = None) -> Plan:
    """The sampler settings of `preset` at `steps` (None: the preset's default count).

    Raises PresetError naming the preset and its allowed counts when `steps` is 0,
    negative or a count the preset was not made for.
    """
    if isinstance(preset, str):
        preset = get_preset(preset)
    n = preset.default_steps if steps is None else steps
    if isinstance(n, bool) or not isinstance(n, int) or n not in preset.steps:
        hint = " (0 is never valid: a sampler needs at least one step)" if n == 0 else ""
        file_hint = "; for a LoRA, use the count in its file name" if preset.steps_in_file_name else ""
        raise PresetError(
            f"preset {preset.id!r} ({preset.family}) cannot run {n!r} steps{hint}: allowed step counts are "
            f"{preset.allowed_steps_text()} (default {preset.default_steps}){file_hint}"
        )
    ts = preset.timesteps.get(n)
    return Plan(
        preset=preset, steps=n, cfg=preset.cfg_by_steps.get(n, preset.cfg), sampler_name=preset.sampler,
        scheduler=preset.scheduler, timesteps=ts, guidance=preset.flux_guidance, eta=preset.eta,
        sigmas_preferred=n in preset.sigmas_preferred_at,
    )


def unknown_names(preset: Preset, samplers: list[str], schedulers: list[str]) -> list[str]:
    """Sampler/scheduler names of `preset` that are not in the given ComfyUI lists."""
    bad = []
    if preset.sampler not in samplers:
        bad.append(f"sampler {preset.sampler!r}")
    if preset.scheduler not in schedulers:
        bad.append(f"scheduler {preset.scheduler!r}")
    return bad

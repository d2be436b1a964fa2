"""The preset registry: published settings for few-step LoRAs and distilled checkpoints.

presets.json holds the data (one entry per preset, each with its citation); this module
loads and validates it once, and turns a preset plus a step count into the values a
sampler needs. It imports nothing from ComfyUI, so it can be checked anywhere; sigmas and
model patches, which need ComfyUI, live in preset_apply.py.
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

PRESETS_FILE = Path(__file__).with_name("presets.json")

KINDS = ("lora", "checkpoint")
PREDICTIONS = ("eps", "v", "x0", "flow")
# name -> predicate on the value; preset_apply.py implements each.
MODEL_PATCHES = {
    "model_sampling": lambda v: v in ("lcm", "x0"),
    "aura_flow_shift": lambda v: _is_number(v) and v > 0,
    "sd3_shift": lambda v: _is_number(v) and v > 0,
    "unscaled_initial_noise": lambda v: v is True,
}
DEFAULT_TCD_ETA = 0.3

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
_REQUIRED = ("id", "family", "kind", "base", "steps", "default_steps", "cfg", "cfg_range",
             "sampler", "scheduler", "lora_strength", "prediction", "notes", "source")
_OPTIONAL = ("steps_in_file_name", "cfg_by_steps", "model_patches", "eta", "timesteps",
             "flux_guidance", "expert_split")


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
    model_patches: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    eta: float | None = None  # TCD gamma
    timesteps: Mapping[int, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}))
    flux_guidance: float | None = None
    expert_split: Mapping[str, Any] | None = None  # Wan2.2 high/low-noise experts

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


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fail(where: str, msg: str) -> PresetError:
    return PresetError(f"{where}: {msg}")


def _step_keyed(where: str, raw: Any, steps: tuple[int, ...], what: str) -> dict[int, Any]:
    if not isinstance(raw, dict):
        raise _fail(where, f"'{what}' must be an object keyed by step count")
    out = {}
    for key, value in raw.items():
        if not (isinstance(key, str) and key.isdigit()) or int(key) not in steps:
            raise _fail(where, f"'{what}' key {key!r} is not one of the supported step counts {list(steps)}")
        out[int(key)] = value
    return out


def parse_preset(raw: Any, index: int = 0) -> Preset:
    """Validate one JSON entry and build its Preset; errors name the entry and the field."""
    where = f"preset #{index}"
    if not isinstance(raw, dict):
        raise _fail(where, "must be a JSON object")
    where = f"preset #{index} ({raw.get('id', '?')!s})"
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise _fail(where, f"missing field(s) {missing}")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _fail(where, f"unknown field(s) {unknown}")

    pid = raw["id"]
    if not (isinstance(pid, str) and _ID_RE.match(pid)):
        raise _fail(where, "'id' must be lowercase letters, digits, '-' or '.'")
    for key in ("family", "notes", "sampler", "scheduler"):
        if not (isinstance(raw[key], str) and raw[key].strip()):
            raise _fail(where, f"'{key}' must be a non-empty string")
    if raw["kind"] not in KINDS:
        raise _fail(where, f"'kind' must be one of {KINDS}")
    if raw["prediction"] not in PREDICTIONS:
        raise _fail(where, f"'prediction' must be one of {PREDICTIONS}")
    base = raw["base"]
    if not (isinstance(base, list) and base and all(b in architectures.ARCHITECTURES for b in base)):
        raise _fail(where, f"'base' must be a non-empty list of architecture ids ({', '.join(architectures.ids())})")

    steps = raw["steps"]
    if not (isinstance(steps, list) and steps and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in steps)):
        raise _fail(where, "'steps' must be a non-empty list of positive integers")
    if steps != sorted(set(steps)):
        raise _fail(where, "'steps' must be ascending without repeats")
    steps = tuple(steps)
    if raw["default_steps"] not in steps:
        raise _fail(where, f"'default_steps' {raw['default_steps']!r} is not in 'steps' {list(steps)}")

    cfg_range = raw["cfg_range"]
    if not (isinstance(cfg_range, list) and len(cfg_range) == 2 and all(_is_number(c) for c in cfg_range)
            and 0 < cfg_range[0] <= cfg_range[1]):
        raise _fail(where, "'cfg_range' must be [low, high] with 0 < low <= high")
    cfg_by_steps = _step_keyed(where, raw.get("cfg_by_steps", {}), steps, "cfg_by_steps")
    for cfg in [raw["cfg"], *cfg_by_steps.values()]:
        if not (_is_number(cfg) and cfg_range[0] <= cfg <= cfg_range[1]):
            raise _fail(where, f"cfg {cfg!r} is outside 'cfg_range' {cfg_range}")

    strength = raw["lora_strength"]
    if raw["kind"] == "lora":
        if not (_is_number(strength) and 0 < strength <= 2):
            raise _fail(where, "a LoRA preset needs 'lora_strength' in (0, 2]")
    elif strength is not None:
        raise _fail(where, "a checkpoint preset has 'lora_strength' null")

    patches = raw.get("model_patches", {})
    if not isinstance(patches, dict):
        raise _fail(where, "'model_patches' must be an object")
    for name, value in patches.items():
        if name not in MODEL_PATCHES:
            raise _fail(where, f"unknown model patch {name!r}; known: {sorted(MODEL_PATCHES)}")
        if not MODEL_PATCHES[name](value):
            raise _fail(where, f"model patch {name!r} has an invalid value {value!r}")
    if "aura_flow_shift" in patches and "sd3_shift" in patches:
        raise _fail(where, "use one shift patch, not both")
    if patches.get("unscaled_initial_noise") and steps != (1,):
        raise _fail(where, "'unscaled_initial_noise' is for one-step generators only")

    eta = raw.get("eta")
    if eta is not None and not (_is_number(eta) and 0 <= eta <= 1):
        raise _fail(where, "'eta' must be in [0, 1]")
    if raw["sampler"] == "tcd" and eta is None:
        raise _fail(where, "a preset using the 'tcd' sampler must give 'eta'")

    timesteps = _step_keyed(where, raw.get("timesteps", {}), steps, "timesteps")
    for n, ts in timesteps.items():
        if not (isinstance(ts, list) and len(ts) == n and all(isinstance(t, int) and 0 <= t <= 999 for t in ts)
                and all(a > b for a, b in zip(ts, ts[1:]))):
            raise _fail(where, f"timesteps for {n} step(s) must be {n} descending integers in [0, 999]")

    if timesteps and raw["prediction"] == "flow":
        raise _fail(where, "'timesteps' are discrete training timesteps (0-999); flow presets use a scheduler and shift")

    guidance = raw.get("flux_guidance")
    if guidance is not None and not (_is_number(guidance) and guidance > 0):
        raise _fail(where, "'flux_guidance' must be a positive number")

    split = raw.get("expert_split")
    if split is not None:
        if not (isinstance(split, dict) and _is_number(split.get("boundary")) and 0 < split["boundary"] < 1
                and isinstance(split.get("high_noise_steps"), int) and set(split) == {"boundary", "high_noise_steps"}):
            raise _fail(where, "'expert_split' must be {boundary in (0, 1), high_noise_steps int}")

    sources = raw["source"]
    if not (isinstance(sources, list) and sources):
        raise _fail(where, "'source' must be a non-empty list of {title, url}")
    parsed_sources = []
    for s in sources:
        if not (isinstance(s, dict) and isinstance(s.get("title"), str) and s["title"].strip()
                and set(s) <= {"title", "url"} and (s.get("url") is None or str(s["url"]).startswith("https://"))):
            raise _fail(where, "each source needs a 'title' and an https 'url' (or null)")
        parsed_sources.append(Source(s["title"], s.get("url")))

    return Preset(
        id=pid, family=raw["family"], kind=raw["kind"], base=tuple(base), steps=steps,
        default_steps=raw["default_steps"], cfg=float(raw["cfg"]), cfg_range=(float(cfg_range[0]), float(cfg_range[1])),
        sampler=raw["sampler"], scheduler=raw["scheduler"],
        lora_strength=None if strength is None else float(strength), prediction=raw["prediction"],
        notes=raw["notes"], source=tuple(parsed_sources),
        steps_in_file_name=bool(raw.get("steps_in_file_name", False)),
        cfg_by_steps=MappingProxyType({n: float(c) for n, c in cfg_by_steps.items()}),
        model_patches=MappingProxyType(dict(patches)), eta=None if eta is None else float(eta),
        timesteps=MappingProxyType({n: tuple(ts) for n, ts in timesteps.items()}),
        flux_guidance=None if guidance is None else float(guidance),
        expert_split=None if split is None else MappingProxyType(dict(split)),
    )


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
    )


def unknown_names(preset: Preset, samplers: list[str], schedulers: list[str]) -> list[str]:
    """Sampler/scheduler names of `preset` that are not in the given ComfyUI lists."""
    bad = []
    if preset.sampler not in samplers:
        bad.append(f"sampler {preset.sampler!r}")
    if preset.scheduler not in schedulers:
        bad.append(f"scheduler {preset.scheduler!r}")
    return bad

"""Which preset and step count a loaded LoRA gets: what recognition found, what the user
picked in `preset`, and a `steps` override, with every choice explained for `info`.

`auto` takes the recognised preset (or the file's own FewStep metadata settings). An
unknown file gets no preset: the node then passes on KSampler's own defaults and says so.
A step count the file was distilled for (Lightning 2/4/8, Hyper-SD N-step, PCM N-step)
is kept unless the user overrides it, and an override that contradicts it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import architectures
from .files import FewStepMetadata
from .recognition import Recognition
from ..presets.registry import Preset, PresetError, get_preset, parse_preset, plan, unknown_names

AUTO = "auto"
DEFAULT_STEPS = -1  # "the count the file was made for, else the preset's default"


class LoraSettingsError(ValueError):
    """The user's preset/steps cannot work with this file; the message names the file and the fix."""


@dataclass
class LoraSettings:
    preset: Preset | None  # None: unknown file and preset 'auto'
    steps: int | None  # for presets.plan (None: the preset's default)
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class KnownNames:
    """The sampler and scheduler names this ComfyUI offers (KSampler's lists)."""

    samplers: tuple[str, ...]
    schedulers: tuple[str, ...]


def preset_from_metadata(meta: FewStepMetadata, file_name: str, names: KnownNames) -> Preset:
    """A one-off preset from a file's own FewStep settings (no preset id in its metadata)."""
    f = meta.fields
    base = list(meta.base)
    cfg = float(f["cfg"])
    source = f.get("source") or f"FewStep metadata in {file_name}"
    raw = {
        "id": "file-metadata", "family": f["family"], "kind": "lora", "base": base,
        "steps": [meta.steps], "default_steps": meta.steps, "cfg": cfg, "cfg_range": [cfg, cfg],
        "sampler": f["sampler"], "scheduler": f["scheduler"], "lora_strength": float(f.get("strength", 1.0)),
        "prediction": "flow" if architectures.is_flow(base) else "eps",
        "notes": f"Settings stored in {file_name}'s FewStep metadata.",
        "source": [{"title": source, "url": source if source.startswith("https://") else None}],
    }
    try:
        preset = parse_preset(raw)
    except PresetError as e:
        raise LoraSettingsError(f"{file_name}: its FewStep metadata cannot be used ({e}); fix it with "
                                "add_fewstep_metadata() or pick a preset by hand") from None
    bad = unknown_names(preset, list(names.samplers), list(names.schedulers))
    if bad:
        raise LoraSettingsError(f"{file_name}: its FewStep metadata names {' and '.join(bad)}, which this ComfyUI "
                                "does not have; fix the metadata or pick a preset by hand")
    return preset


def _recognised_preset(rec: Recognition, file_name: str, names: KnownNames) -> Preset | None:
    if rec.preset is not None:
        return get_preset(rec.preset)
    if rec.source == "metadata" and rec.metadata is not None:
        return preset_from_metadata(rec.metadata, file_name, names)
    return None


def check_steps_value(steps: int, file_name: str) -> None:
    if steps == 0 or steps < DEFAULT_STEPS:
        raise LoraSettingsError(
            f"{file_name}: steps {steps} cannot run (a sampler needs at least one step). Set steps to -1 to use "
            "the count the LoRA was made for, or to a positive count its preset supports."
        )


def choose(rec: Recognition, preset_choice: str, steps: int, file_name: str, names: KnownNames) -> LoraSettings:
    """The preset and steps for this file; LoraSettingsError when the request cannot work."""
    check_steps_value(steps, file_name)
    found = _recognised_preset(rec, file_name, names)
    file_steps = rec.steps if found is not None else None
    lines = []
    if preset_choice == AUTO:
        preset = found
        if preset is None:
            lines.append("Preset: none (preset 'auto' and the file was not recognised). Outputs are KSampler's defaults; "
                         "pick the LoRA's preset in `preset`.")
            if steps != DEFAULT_STEPS:
                lines.append(f"steps {steps} passed through unchecked: no preset to check it against.")
            return LoraSettings(None, steps if steps != DEFAULT_STEPS else None, lines)
        lines.append(f"Preset: {preset.id} (auto, from the {rec.source}).")
    else:
        try:
            preset = get_preset(preset_choice)
        except PresetError as e:
            raise LoraSettingsError(f"{file_name}: {e}") from None
        if found is not None and found.id != preset.id:
            lines.append(f"Preset: {preset.id} (your choice; the file was recognised as {found.id} by {rec.source}).")
            file_steps = None
        else:
            lines.append(f"Preset: {preset.id} (your choice).")

    if file_steps is not None and file_steps not in preset.steps:
        lines.append(f"The file says {file_steps} steps, which {preset.id} has no setting for.")
        file_steps = None
    if steps == DEFAULT_STEPS:
        chosen = file_steps
        if file_steps is not None:
            lines.append(f"Steps {file_steps}: the count the file was made for (from the {rec.source}).")
    else:
        if preset.steps_in_file_name and file_steps is not None and steps != file_steps:
            raise LoraSettingsError(
                f"{file_name} was distilled for {file_steps} steps (from the {rec.source}); {preset.family} LoRAs only "
                f"work at the count they were made for. Set steps to -1 (or {file_steps}), or load the {steps}-step file."
            )
        chosen = steps
        lines.append(f"Steps {steps}: your override.")
    try:
        plan(preset, chosen)
    except PresetError as e:
        raise LoraSettingsError(f"{file_name}: {e}. Set steps to -1 for the default.") from None
    return LoraSettings(preset, chosen, lines)

"""FewStepLoraLoader's work, in order: resolve the name safely, read the header (refusing
pickles and damaged files), load and check the tensors, apply the LoRA with the
architecture check, recognise the file, choose the preset and steps, apply the preset.

Every check that can fail runs before the file is hashed, so a refused file leaves nothing
behind (not even a hash-cache entry). `describe_lora` is the same recognition and choice
without a model, for the pack's HTTP route and the node's badge.
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.samplers
import torch

from .apply import apply_lora, load_lora_tensors
from .library import LoraLibrary, file_version, library, resolve_lora
from .settings import AUTO, DEFAULT_STEPS, KnownNames, LoraSettingsError, check_steps_value, choose
from ..presets.apply import apply_preset
from ..presets.registry import PresetError, plan

# What the node passes on for a file it cannot recognise: KSampler's own defaults.
UNKNOWN_DEFAULTS = {"steps": 20, "cfg": 8.0, "sampler_name": "euler", "scheduler": "normal"}


@dataclass
class LoadedLora:
    model: object
    clip: object | None
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    info: str
    sigmas: torch.Tensor
    guidance: float


def _known_names() -> KnownNames:
    return KnownNames(tuple(comfy.samplers.KSampler.SAMPLERS), tuple(comfy.samplers.KSampler.SCHEDULERS))


def load(model, clip, lora_name: str, strength_model: float, strength_clip: float, preset: str = AUTO,
         steps: int = DEFAULT_STEPS, lib: LoraLibrary | None = None) -> LoadedLora:
    """Raises LoraNameError, LoraFileError (incl. LoraArchitectureError) or LoraSettingsError,
    each naming the file and the fix."""
    lib = lib or library()
    path = resolve_lora(lora_name)
    check_steps_value(steps, lora_name)
    structure = lib.structure(path)  # refuses pickles, truncated and corrupt files
    lines = [f"FewStep LoRA loader: {lora_name}."]

    if strength_model == 0 and strength_clip == 0:
        new_model, new_clip = model, clip
        applied_lines = ["Strengths are 0: the LoRA is not applied (as core LoraLoader)."]
    else:
        tensors = load_lora_tensors(path, file_version(path))
        applied = apply_lora(model, clip, tensors, strength_model, strength_clip, lora_name,
                             structure.architecture)
        new_model, new_clip, applied_lines = applied.model, applied.clip, applied.lines

    rec, warnings = lib.recognise(path)
    settings = choose(rec, preset, steps, lora_name, _known_names())
    lines += rec.lines + [f"Warning: {w}" for w in warnings] + settings.lines + applied_lines

    if settings.preset is None:
        n = settings.steps or UNKNOWN_DEFAULTS["steps"]
        sampling = new_model.get_model_object("model_sampling")
        sigmas = comfy.samplers.calculate_sigmas(sampling, UNKNOWN_DEFAULTS["scheduler"], n).float().cpu()
        lines.append(f"Outputs: KSampler's defaults ({n} steps, cfg {UNKNOWN_DEFAULTS['cfg']:g}, "
                     f"{UNKNOWN_DEFAULTS['sampler_name']}/{UNKNOWN_DEFAULTS['scheduler']}); no model patches.")
        return LoadedLora(new_model, new_clip, n, UNKNOWN_DEFAULTS["cfg"], UNKNOWN_DEFAULTS["sampler_name"],
                          UNKNOWN_DEFAULTS["scheduler"], "\n".join(lines), sigmas, 0.0)

    try:
        applied_preset = apply_preset(new_model, settings.preset, settings.steps)
    except PresetError as e:
        raise LoraSettingsError(f"{lora_name}: {e}") from None
    p = applied_preset.plan
    published = settings.preset.lora_strength
    if published is not None and abs(published - strength_model) > 1e-6 and strength_model != 0:
        lines.append(f"Note: strength_model is {strength_model:g}; the preset's published strength is {published:g}.")
    lines.append(applied_preset.info)
    return LoadedLora(applied_preset.model, new_clip, p.steps, p.cfg, p.sampler_name, p.scheduler, "\n".join(lines),
                      applied_preset.sigmas, 0.0 if p.guidance is None else p.guidance)


def describe_lora(lora_name: str, preset: str = AUTO, steps: int = DEFAULT_STEPS,
                  lib: LoraLibrary | None = None) -> dict:
    """What the node would choose for this file, without a model (JSON for the badge)."""
    lib = lib or library()
    path = resolve_lora(lora_name)
    rec, warnings = lib.recognise(path)
    settings = choose(rec, preset, steps, lora_name, _known_names())
    s = rec.structure
    out = {
        "lora_name": lora_name, "recognised_by": rec.source, "architecture": s.architecture, "rank": s.rank,
        "preset": None, "family": None, "base": [], "steps": None, "cfg": None, "sampler_name": None,
        "scheduler": None, "guidance": None, "needs_sigmas": False,
        "info": "\n".join(rec.lines + [f"Warning: {w}" for w in warnings] + settings.lines),
    }
    if settings.preset is None:
        arch = s.architecture or "unknown architecture"
        out["badge"] = f"Unknown LoRA ({arch}" + (f", rank {s.rank}" if s.rank else "") + ") - pick a preset"
        return out
    p = plan(settings.preset, settings.steps)
    out.update(
        preset=None if settings.preset.id == "file-metadata" else settings.preset.id,
        family=settings.preset.family, base=list(settings.preset.base), steps=p.steps, cfg=p.cfg,
        sampler_name=p.sampler_name, scheduler=p.scheduler, guidance=p.guidance, needs_sigmas=p.sigmas_preferred,
    )
    # With needs_sigmas the recommended path is the node's `sigmas` output into SamplerCustom:
    # KSampler's scheduler cannot run the preset's timesteps (DMD2's one step at t=399).
    sampling = (f"sigmas \u2192 SamplerCustom ({p.sampler_name})" if p.sigmas_preferred
                else f"{p.sampler_name}/{p.scheduler}")
    out["badge"] = (f"{settings.preset.family} \u00b7 {p.steps} step{'s' if p.steps != 1 else ''} \u00b7 cfg {p.cfg:g} "
                    f"\u00b7 {sampling}")
    return out


__all__ = ["LoadedLora", "describe_lora", "load", "UNKNOWN_DEFAULTS"]

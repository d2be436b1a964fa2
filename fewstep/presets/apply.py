"""A preset applied to a MODEL: the patched clone, the sampler settings, the SIGMAS for
SamplerCustom, and an `info` text saying what was chosen, from where, and how to wire
what KSampler's steps/cfg/sampler/scheduler cannot express."""

from __future__ import annotations

from dataclasses import dataclass

import comfy.samplers
import torch

from ..architectures import family_of
from .patches import apply_model_patches
from .registry import Plan, Preset, get_preset, plan
from ..sampling.tcd import ETA_OPTION, TCD_NAME


@dataclass
class AppliedPreset:
    model: object  # a ModelPatcher clone
    plan: Plan
    sigmas: torch.Tensor  # 1-D, descending, ending in 0
    info: str


def sigmas_for(model, p: Plan) -> torch.Tensor:
    """The schedule the preset was made for, on `model`'s (patched) sampling object."""
    sampling = model.get_model_object("model_sampling")
    if p.timesteps is not None:
        sigmas = sampling.sigma(torch.tensor(p.timesteps, dtype=torch.float32))
        return torch.cat([sigmas.float().cpu(), sigmas.new_zeros(1).float().cpu()])
    return comfy.samplers.calculate_sigmas(sampling, p.scheduler, p.steps).float().cpu()


def ksampler_timesteps(model, p: Plan) -> tuple[float, ...]:
    """The timesteps KSampler's own scheduler would run for this plan (to compare in `info`)."""
    sampling = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, p.scheduler, p.steps)[:-1]
    return tuple(round(float(sampling.timestep(s.reshape(1))), 2) for s in sigmas)


def _timesteps_line(p: Plan, ksampler_ts: tuple[float, ...] | None) -> str:
    """Which of the two paths runs the preset's custom timesteps, and which one to use."""
    listed = ", ".join(map(str, p.timesteps))
    custom = f"SamplerCustom (sampler: KSamplerSelect {p.sampler_name!r})"
    if ksampler_ts is None:
        ksampler = ""
    elif [round(t) for t in ksampler_ts] == list(p.timesteps):
        ksampler = f"; KSampler's {p.scheduler!r} runs the same timesteps"
    else:
        ksampler = f"; KSampler's {p.scheduler!r} would run timesteps {', '.join(f'{t:g}' for t in ksampler_ts)}"
    if p.sigmas_preferred:
        return (f"Recommended: connect `sigmas` to {custom}: it runs the preset's timesteps {listed}{ksampler}, "
                "which is not the schedule the preset was made for.")
    return f"`sigmas` runs the preset's timesteps {listed} exactly with {custom}{ksampler}; KSampler's outputs are the default."


def _wiring_lines(p: Plan, ksampler_ts: tuple[float, ...] | None) -> list[str]:
    preset = p.preset
    lines = []
    if p.timesteps is not None:
        lines.append(_timesteps_line(p, ksampler_ts))
    if p.guidance is not None:
        lines.append(f"FLUX guidance {p.guidance:g}: connect `guidance` to FluxGuidance on the positive conditioning; keep cfg {p.cfg:g}.")
    if p.sampler_name == TCD_NAME:
        lines.append(
            f"TCD eta {p.eta:g}: the 'tcd' sampler (KSampler or KSamplerSelect) reads it from this MODEL; or use "
            f"FewStep TCD Sampler (eta {p.eta:g}) with SamplerCustom. 'tcd' is registered by FewStep: workflows "
            "using it need the pack."
        )
    if preset.expert_split is not None:
        k, n = preset.expert_split["high_noise_steps"], p.steps
        lines.append(
            f"Two experts (boundary {preset.expert_split['boundary']:g}): run KSamplerAdvanced on the high-noise model "
            f"(its LoRA applied) for steps 0-{k} and on the low-noise model for steps {k}-{n}, both {n} total steps, "
            f"patched like this MODEL."
        )
    if preset.model_patches.get("unscaled_initial_noise"):
        lines.append("Text-to-image only: the first step ignores an input latent's noise level.")
    return lines


def describe(p: Plan, model_archs: list[str], model_config: str, patch_notes: list[str],
             ksampler_ts: tuple[float, ...] | None = None) -> str:
    preset = p.preset
    lines = [f"FewStep preset {preset.id}: {preset.family} ({preset.kind}, for {', '.join(preset.base)})."]
    cfg_range = "" if preset.cfg_range[0] == preset.cfg_range[1] else f" (range {preset.cfg_range[0]:g}-{preset.cfg_range[1]:g})"
    lines.append(
        f"Steps {p.steps} (allowed: {preset.allowed_steps_text()}), cfg {p.cfg:g}{cfg_range}, "
        f"sampler {p.sampler_name}, scheduler {p.scheduler}."
    )
    if preset.sampler_chosen_by_pack:
        lines.append(f"Sampler and scheduler ({p.sampler_name} / {p.scheduler}) are FewStep's choice: the source names none.")
    if preset.steps_in_file_name:
        lines.append("Use the step count in the LoRA's file name.")
    if preset.lora_strength is not None:
        lines.append(f"LoRA strength {preset.lora_strength:g}.")
    lines.append("Model patches: " + ("; ".join(patch_notes) if patch_notes else "none") + ".")
    if model_archs and not set(model_archs) & set(preset.base):
        lines.append(
            f"Warning: this model is {model_config} ({', '.join(model_archs)}), not {', '.join(preset.base)}: "
            "the settings may not fit."
        )
    if preset.warning:
        lines.append(f"Warning: {preset.warning}")
    lines += _wiring_lines(p, ksampler_ts)
    lines.append(f"Notes: {preset.notes}")
    lines.append("Source: " + "; ".join(str(s) for s in preset.source))
    return "\n".join(lines)


def apply_preset(model, preset: Preset | str, steps: int | None = None) -> AppliedPreset:
    """Everything FewStepPreset outputs. Raises PresetError for an unknown preset, a step
    count it cannot do, or a patch that cannot apply to this kind of model."""
    if isinstance(preset, str):
        preset = get_preset(preset)
    p = plan(preset, steps)
    patched, notes = apply_model_patches(model, preset)
    if p.sampler_name == TCD_NAME and p.eta is not None:
        patched.model_options.setdefault("transformer_options", {})[ETA_OPTION] = p.eta
    ksampler_ts = ksampler_timesteps(patched, p) if p.timesteps is not None else None
    family = family_of(model)
    info = describe(p, family.ids, family.config, notes, ksampler_ts)
    return AppliedPreset(patched, p, sigmas_for(patched, p), info)

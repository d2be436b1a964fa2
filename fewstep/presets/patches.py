"""Model patches presets ask for, applied to a clone by calling the core nodes
(comfy_extras/nodes_model_advanced.py) themselves, so a FewStep preset and the
hand-wired core graph sample identically. The caller's model is never touched.
"""

from __future__ import annotations

from .. import comfy_compat
from ..architectures import family_of
from .registry import Preset, PresetError

_NEEDS = {  # patch -> (check on the current model_sampling, what it needs)
    "model_sampling": (comfy_compat.is_discrete_sampling, "a discrete (SD-style) model"),
    "unscaled_initial_noise": (comfy_compat.is_discrete_sampling, "a discrete (SD-style) model"),
    "aura_flow_shift": (comfy_compat.is_discrete_flow_sampling, "a flow-matching model"),
    "sd3_shift": (comfy_compat.is_discrete_flow_sampling, "a flow-matching model"),
}


def _require(model, preset: Preset, patch: str) -> None:
    check, what = _NEEDS[patch]
    current = model.get_model_object("model_sampling")
    if not check(current):
        raise PresetError(
            f"preset {preset.id!r} ({preset.family}) patches the model with {patch!r}, which needs {what}, "
            f"but this model ({family_of(model).config}) samples with {type(current).__name__}. "
            f"Pick a preset made for {', '.join(preset.base)} models."
        )


def apply_model_patches(model, preset: Preset):
    """A clone of `model` carrying the preset's patches, and one line per patch for `info`."""
    patches = preset.model_patches
    for name in patches:
        _require(model, preset, name)
    patched = model.clone()
    notes = []
    if "model_sampling" in patches:
        kind = patches["model_sampling"]
        patched = comfy_compat.core_model_sampling_discrete(patched, kind)
        label = "LCM model sampling" if kind == "lcm" else "x0 (sample) prediction"
        notes.append(f'{label}, as core ModelSamplingDiscrete "{kind}"')
    if "aura_flow_shift" in patches:
        patched = comfy_compat.core_model_sampling_aura_flow(patched, float(patches["aura_flow_shift"]))
        notes.append(f"shift {float(patches['aura_flow_shift']):g}, as core ModelSamplingAuraFlow")
    if "sd3_shift" in patches:
        patched = comfy_compat.core_model_sampling_sd3(patched, float(patches["sd3_shift"]))
        notes.append(f"shift {float(patches['sd3_shift']):g}, as core ModelSamplingSD3")
    if patches.get("unscaled_initial_noise"):
        sampling = comfy_compat.with_unscaled_initial_noise(patched.get_model_object("model_sampling"))
        patched.add_object_patch("model_sampling", sampling)
        notes.append("initial noise fed unscaled (pure noise at the preset's timestep, as the model was trained)")
    return patched, notes

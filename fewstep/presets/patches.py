"""Model patches presets ask for, applied to a clone by calling the core nodes
(comfy_extras/nodes_model_advanced.py) themselves, so a FewStep preset and the
hand-wired core graph sample identically. The caller's model is never touched.

`shift_by_resolution` is the one patch no core node offers: the shift depends on the
image size, known only when sampling starts. The clone samples at shift 1 (core
ModelSamplingAuraFlow), so every schedule computed from it (KSampler's scheduler,
BasicScheduler, the preset's `sigmas`) is the unshifted one, and an OUTER_SAMPLE
wrapper re-shifts that schedule from the latent's size at the start of each run.
"""

from __future__ import annotations

import logging

import comfy.patcher_extension

from .. import comfy_compat
from ..architectures import family_of
from .registry import Preset, PresetError
from .shift import ResolutionShift, time_shift

log = logging.getLogger("FewStep")
RESOLUTION_SHIFT_KEY = "fewstep_shift_by_resolution"
# Image sizes (width, height) whose shifts `info` lists for the resolution rule.
EXAMPLE_SIZES = ((512, 512), (1024, 1024), (1328, 1328), (1664, 928))

_NEEDS = {  # patch -> (check on the current model_sampling, what it needs)
    "model_sampling": (comfy_compat.is_discrete_sampling, "a discrete (SD-style) model"),
    "unscaled_initial_noise": (comfy_compat.is_discrete_sampling, "a discrete (SD-style) model"),
    # The shift patches replace the model's flow sampling object whatever its class
    # (ModelSamplingFlux for Qwen-Image and FLUX, ModelSamplingDiscreteFlow for SD3/Wan).
    "aura_flow_shift": (comfy_compat.is_flow_sampling, "a flow-matching model"),
    "sd3_shift": (comfy_compat.is_flow_sampling, "a flow-matching model"),
    "shift_by_resolution": (comfy_compat.is_flow_sampling, "a flow-matching model"),
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
    if "shift_by_resolution" in patches:
        rule = patches["shift_by_resolution"]
        patched = _shift_by_resolution(patched, rule)
        sizes = ", ".join(f"{w}x{h} -> {rule.shift_for_image(w, h):.2f}" for w, h in EXAMPLE_SIZES)
        notes.append(
            f"shift by resolution, set from the latent's size when sampling starts ({sizes}); schedules from this "
            "MODEL are computed at shift 1 (core ModelSamplingAuraFlow) and re-shifted then, so add no "
            "ModelSamplingAuraFlow after it. By hand at one size: core ModelSamplingFlux with base_shift "
            f"{rule.log_shift_for_tokens(256):.3f}, max_shift {rule.log_shift_for_tokens(4096):.3f} and the image's "
            "width and height")
    if patches.get("unscaled_initial_noise"):
        sampling = comfy_compat.with_unscaled_initial_noise(patched.get_model_object("model_sampling"))
        patched.add_object_patch("model_sampling", sampling)
        notes.append("initial noise fed unscaled (pure noise at the preset's timestep, as the model was trained)")
    return patched, notes


class _ReshiftByResolution:
    """OUTER_SAMPLE wrapper: the run's unshifted schedule -> the shift of its latent's size."""

    def __init__(self, rule: ResolutionShift):
        self.rule = rule

    def __call__(self, executor, *args, **kwargs):
        sigmas = comfy_compat.outer_sample_args(args)[3]
        shape = comfy_compat.outer_sample_latent_shape(args, kwargs)
        shift = self.rule.shift_for_latent(shape)
        log.debug("FewStep preset: shift %.4f for a latent of shape %s", shift, shape)
        return executor(*comfy_compat.with_outer_sample_sigmas(args, time_shift(sigmas, shift)), **kwargs)


def _shift_by_resolution(model, rule: ResolutionShift):
    """Shift 1 on a clone plus the wrapper that sets the real shift per run."""
    patched = comfy_compat.core_model_sampling_aura_flow(model, 1.0)
    outer = comfy.patcher_extension.WrappersMP.OUTER_SAMPLE
    patched.remove_wrappers_with_key(outer, RESOLUTION_SHIFT_KEY)
    patched.add_wrapper_with_key(outer, RESOLUTION_SHIFT_KEY, _ReshiftByResolution(rule))
    return patched

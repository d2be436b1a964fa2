"""Model patches presets ask for, applied to a clone with add_object_patch("model_sampling").

Each builds the same sampling object as the core node named in its description
(comfy_extras/nodes_model_advanced.py), so a FewStep preset and the hand-wired core
graph sample identically. The caller's model is never touched.
"""

from __future__ import annotations

import copy

from .registry import Preset, PresetError

# ComfyUI model-config class name -> architecture id used in presets.json `base`.
# Looked up along the config's MRO, so SSD1B also counts as sdxl, FluxSchnell as flux.
ARCH_BY_CONFIG = {
    "SD15": "sd15", "SD20": "sd21", "SDXL": "sdxl", "SSD1B": "ssd1b", "SD3": "sd3",
    "Flux": "flux", "QwenImage": "qwen_image", "WAN21_T2V": "wan", "WAN22_T2V": "wan22_5b",
}


def model_architectures(model) -> list[str]:
    """Architecture ids of a ComfyUI MODEL, most specific first ([] when unknown)."""
    config = getattr(getattr(model, "model", None), "model_config", None)
    found = []
    for cls in type(config).__mro__:
        arch = ARCH_BY_CONFIG.get(cls.__name__)
        if arch and arch not in found:
            found.append(arch)
    if "wan22_5b" in found:  # WAN22_T2V subclasses WAN21_T2V but is a different network
        found.remove("wan")
    return found


def config_name(model) -> str:
    config = getattr(getattr(model, "model", None), "model_config", None)
    return type(config).__name__ if config is not None else type(model).__name__


class _UnscaledInitialNoise:
    """Start from unit-variance noise whatever the first sigma: a one-step generator trained
    on pure noise at a 'conditioning' timestep (DMD2: t=399) sees what it was trained on.
    (ComfyUI otherwise starts at sigma * noise unless sigma is the schedule's maximum.)"""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return super().noise_scaling(sigma, noise, latent_image, max_denoise=True)


def _require(model, preset: Preset, patch: str, needed: type, what: str) -> None:
    current = model.get_model_object("model_sampling")
    if not isinstance(current, needed):
        raise PresetError(
            f"preset {preset.id!r} ({preset.family}) patches the model with {patch!r}, which needs {what}, "
            f"but this model ({config_name(model)}) samples with {type(current).__name__}. "
            f"Pick a preset made for {', '.join(preset.base)} models."
        )


def _discrete_sampling(model, kind: str):
    """What core ModelSamplingDiscrete(sampling=kind, zsnr=False) installs."""
    import comfy.model_sampling

    if kind == "lcm":
        from comfy_extras.nodes_model_advanced import LCM, ModelSamplingDiscreteDistilled

        base, prediction = ModelSamplingDiscreteDistilled, LCM
    else:
        base, prediction = comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.X0

    class ModelSamplingAdvanced(base, prediction):
        pass

    return ModelSamplingAdvanced(model.model.model_config, zsnr=False)


def _flow_sampling(model, shift: float, multiplier: float):
    """What core ModelSamplingSD3 (multiplier 1000) / ModelSamplingAuraFlow (1.0) install."""
    import comfy.model_sampling

    class ModelSamplingAdvanced(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    sampling = ModelSamplingAdvanced(model.model.model_config)
    sampling.set_parameters(shift=shift, multiplier=multiplier)
    return sampling


def _with_unscaled_initial_noise(sampling):
    cls = type(f"UnscaledInitialNoise{type(sampling).__name__}", (_UnscaledInitialNoise, type(sampling)), {})
    patched = copy.copy(sampling)  # shares the (read-only) schedule buffers
    patched.__class__ = cls
    return patched


def apply_model_patches(model, preset: Preset):
    """A clone of `model` carrying the preset's patches, and one line per patch for `info`."""
    import comfy.model_sampling

    patched = model.clone()
    notes = []
    patches = preset.model_patches
    if "model_sampling" in patches:
        kind = patches["model_sampling"]
        _require(model, preset, "model_sampling", comfy.model_sampling.ModelSamplingDiscrete, "a discrete (SD-style) model")
        patched.add_object_patch("model_sampling", _discrete_sampling(model, kind))
        label = "LCM model sampling" if kind == "lcm" else "x0 (sample) prediction"
        notes.append(f'{label}, as core ModelSamplingDiscrete "{kind}"')
    for name, multiplier, core in (("aura_flow_shift", 1.0, "ModelSamplingAuraFlow"), ("sd3_shift", 1000.0, "ModelSamplingSD3")):
        if name in patches:
            _require(model, preset, name, comfy.model_sampling.ModelSamplingDiscreteFlow, "a flow-matching model")
            patched.add_object_patch("model_sampling", _flow_sampling(model, float(patches[name]), multiplier))
            notes.append(f"shift {float(patches[name]):g}, as core {core}")
    if patches.get("unscaled_initial_noise"):
        _require(model, preset, "unscaled_initial_noise", comfy.model_sampling.ModelSamplingDiscrete, "a discrete (SD-style) model")
        patched.add_object_patch("model_sampling", _with_unscaled_initial_noise(patched.get_model_object("model_sampling")))
        notes.append("initial noise fed unscaled (pure noise at the preset's timestep, as the model was trained)")
    return patched, notes

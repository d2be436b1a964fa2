"""Published settings for few-step LoRAs and distilled checkpoints.

registry.py + presets.json (pure): every preset with its citation, validated on load,
and `plan(preset, steps)` -> the sampler settings. shift.py (pure): flow shifts, incl.
the resolution-dependent one. patches.py and apply.py (hooks): the model patches a preset
needs (through the core ModelSampling nodes, plus the per-run resolution shift) and the
SIGMAS and `info` FewStepPreset and FewStepLoraLoader output.
"""

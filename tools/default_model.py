"""The built-in default model that `make demo` and `make serve` use: no download needed.

The digits teacher (tools/teacher.py) is a tiny SD1.5-shaped checkpoint trained here on
scikit-learn's handwritten digits, so its denoising trajectories are real; it draws the
digit its prompt names ("seven") at 32x32.
"""

from __future__ import annotations

from pathlib import Path

from .tiny_models import install_checkpoint, tiny_sd15_checkpoint

DEFAULT_CHECKPOINT = "fewstep-digits-teacher.safetensors"
RANDOM_CHECKPOINT = "fewstep-tiny-random-sd15.safetensors"
# What workflows/distill_then_use.json saves on its first run (the trainer numbers its
# files), and what workflows/use_distilled_lora.json loads: built here, never downloaded.
DISTILLED_LORA = "fewstep_digits_distill_00001.safetensors"


def install_default_models(models_dir: Path) -> list[str]:
    """Build (first time only) and link the default models into a ComfyUI models folder."""
    from .teacher import teacher_checkpoint

    return [install_checkpoint(teacher_checkpoint(), models_dir, DEFAULT_CHECKPOINT),
            install_checkpoint(tiny_sd15_checkpoint(), models_dir, RANDOM_CHECKPOINT)]

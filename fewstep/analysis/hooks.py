"""What the A/B test measures, hooked into a clone of each branch's model.

- SAMPLER_SAMPLE wrapper: times the sampler loop only. ComfyUI calls it after
  `prepare_sampling` has loaded (and, when the other branch's clone was loaded last,
  re-patched) the model, so the time excludes loading; the caller times the whole
  KSampler call around it, and the rest is reported as load/patch time.
- DIFFUSION_MODEL and APPLY_MODEL wrappers, added last (innermost): count model
  evaluations by batch rows, since ComfyUI batches cond and uncond into one call or runs
  them apart depending on free memory. DIFFUSION_MODEL sits inside any step cache that
  skips at APPLY_MODEL or DIFFUSION_MODEL, so skipped calls do not count; APPLY_MODEL is
  the fallback for models whose network does not pass through DIFFUSION_MODEL (SD3's MMDiT).
- The clock is read with the sampling device synchronised (CUDA and MPS queue work).
"""

from __future__ import annotations

import time

import comfy.patcher_extension as pe

from .. import comfy_compat

KEY = "fewstep_abtest"


class Meter:
    """One branch's measurements during one node run (created per run, never stored on a model)."""

    def __init__(self, device):
        self.device = device
        self.sampling_seconds: list[float] = []  # one entry per sampler loop
        self.diffusion_rows = 0
        self.diffusion_calls = 0  # network calls (cond and uncond batched count once)
        self.apply_rows = 0
        self.noise = None  # the noise of the last sampling run

    def clock(self) -> float:
        comfy_compat.synchronize(self.device)
        return time.perf_counter()

    def sampler_sample(self, executor, *args, **kwargs):
        self.noise = comfy_compat.sampler_sample_noise(args)
        start = self.clock()
        try:
            return executor(*args, **kwargs)
        finally:
            self.sampling_seconds.append(self.clock() - start)

    def apply_model(self, executor, *args, **kwargs):
        self.apply_rows += int(comfy_compat.apply_model_args(args, kwargs)[0].shape[0])
        return executor(*args, **kwargs)

    def diffusion_model(self, executor, *args, **kwargs):
        self.diffusion_rows += int(comfy_compat.diffusion_model_args(args, kwargs)[0].shape[0])
        self.diffusion_calls += 1
        return executor(*args, **kwargs)

    def rows(self) -> int:
        """Model evaluations so far, in batch rows (DIFFUSION_MODEL when it is reached)."""
        return self.diffusion_rows or self.apply_rows


def metered(model):
    """(clone of `model` with the A/B wrappers, its Meter). The input MODEL is untouched."""
    m = model.clone()
    meter = Meter(comfy_compat.load_device(m))
    m.add_wrapper_with_key(pe.WrappersMP.SAMPLER_SAMPLE, KEY, meter.sampler_sample)
    m.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, KEY, meter.apply_model)
    m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, KEY, meter.diffusion_model)
    return m, meter

"""FewStepABTest's run: two models sampled from identical noise, timed side by side.

Per branch: a metered clone (hooks.py), one untimed warm-up, then `repeats` timed runs in
alternating order (report.py). Both branches go through core KSampler with the same seed
and latent, so they start from the same noise (checked on the noise the sampler receives).
The latents, pictures and quality numbers come from the warm-up runs (sampling is
deterministic; the timed runs only time), so a bad input (images too small for SSIM)
fails before the long part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import comfy_compat
from ..metrics import difference, ssim
from .hooks import Meter, metered
from .pictures import as_rgb, heat_map, latent_previews, side_by_side
from .report import ABReport, BranchSettings, BranchTimes, order_of_repeat


@dataclass
class ABResult:
    latent_a: dict
    latent_b: dict
    image_a: torch.Tensor  # decoded, or a grey latent preview without a VAE
    image_b: torch.Tensor
    comparison: torch.Tensor  # A | B | heat map
    report: ABReport
    meters: dict[str, Meter]


class _Branch:
    def __init__(self, model, settings: BranchSettings, inputs: dict):
        self.model, self.meter = metered(model)
        self.times = BranchTimes(settings)
        self.inputs = inputs
        self.settings = settings

    def run(self) -> tuple[dict, float]:
        """(latent, seconds of the whole KSampler call)."""
        s = self.settings
        start = self.meter.clock()
        latent = comfy_compat.core_ksampler(self.model, steps=s.steps, cfg=s.cfg, sampler_name=s.sampler,
                                            scheduler=s.scheduler, **self.inputs)
        return latent, self.meter.clock() - start


def _check(repeats: int, latent: dict) -> None:
    if repeats < 1:
        raise ValueError(f"repeats is {repeats}; it must be at least 1 (3 or more give a steadier median)")
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), torch.Tensor):
        raise ValueError("latent must be a LATENT (e.g. from Empty Latent Image)")


def _quality(a: dict, b: dict, vae) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    la, lb = a["samples"], b["samples"]
    if la.shape != lb.shape:
        raise ValueError(
            f"A and B sampled latents of different shapes ({tuple(la.shape)} vs {tuple(lb.shape)}): both models "
            "must use the same latent format (the same model family)")
    numbers = {"latent_psnr_db": difference(la, lb).psnr_db}
    if vae is None:
        img_a, img_b = latent_previews(la, lb)
        numbers["heat_of"] = "latents"
    else:
        img_a, img_b = comfy_compat.core_vae_decode(vae, a), comfy_compat.core_vae_decode(vae, b)
        numbers["ssim"] = ssim(img_a, img_b)  # first: refuses images under 11 px with the fix
        numbers["pixel_psnr_db"] = difference(img_a, img_b, value_range=1.0).psnr_db
    heat, numbers["heat_scale"] = heat_map(img_a, img_b)
    comparison = side_by_side(as_rgb(img_a.float().cpu()), as_rgb(img_b.float().cpu()), heat)
    return img_a, img_b, comparison, numbers


def run_ab_test(model_a, model_b, positive, negative, latent: dict, seed: int, settings_a: BranchSettings,
                settings_b: BranchSettings, repeats: int, vae=None) -> ABResult:
    _check(repeats, latent)
    inputs = {"seed": seed, "positive": positive, "negative": negative, "latent": latent}
    branches = {"a": _Branch(model_a, settings_a, inputs), "b": _Branch(model_b, settings_b, inputs)}
    out = {}
    for key, br in branches.items():  # warm-up: first loads, caches; its results are the outputs
        out[key], br.times.warmup_total = br.run()
        br.times.calls_per_image = br.meter.rows() / latent["samples"].shape[0]
    noise_a, noise_b = branches["a"].meter.noise, branches["b"].meter.noise
    if noise_a is None or noise_b is None or not torch.equal(noise_a.cpu(), noise_b.cpu()):
        raise RuntimeError("the two branches did not start from the same noise; report this with both models' types")
    img_a, img_b, comparison, numbers = _quality(out["a"], out["b"], vae)

    for r in range(repeats):
        for key in order_of_repeat(r):
            br = branches[key]
            before = len(br.meter.sampling_seconds)
            _, total = br.run()
            if len(br.meter.sampling_seconds) != before + 1:
                raise comfy_compat.incompatible("the SAMPLER_SAMPLE wrapper (it did not run exactly once per KSampler call)")
            br.times.add(br.meter.sampling_seconds[-1], total)
    report = ABReport(branches["a"].times, branches["b"].times, repeats, **numbers)
    return ABResult(out["a"], out["b"], img_a, img_b, comparison, report,
                    {k: br.meter for k, br in branches.items()})

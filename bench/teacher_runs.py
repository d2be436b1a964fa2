"""Sampling the trained digits teacher (tools/teacher.py) the same way for every quality row.

Every candidate (a cached model, fewer steps, later a distilled student) draws the same
digits from the same seeds as the reference, through ComfyUI's own KSampler path
(`nodes.common_ksampler`), and is scored against the reference's final latents (PSNR,
max |diff|, via fewstep.metrics.difference) and by the held-out digit classifier.
Model calls are counted by FewStepABTest's own meter (fewstep/analysis/hooks.py), added
last, i.e. innermost: it sees only the calls that actually reach the UNet (a step cache's
skipped calls do not), in calls and in batch rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..fewstep.metrics import difference
from .context import BenchContext

CALIBRATION_SEED = 10_000  # sample_set draws seeds seed + digit (0-9 by default)


@dataclass
class SampleSet:
    latents: torch.Tensor  # (digits * per_digit, 4, h, w) final latents, digit-major
    labels: np.ndarray  # prompted digit per sample
    predicted: np.ndarray  # what the classifier reads in each decoded sample
    calls_per_run: float  # UNet calls per sampling run (one run = one digit's batch)
    seconds: float
    evals_per_sample: float = float("nan")  # model evaluations per sample (rows / samples)


@dataclass
class Quality:
    psnr_db: float
    max_abs: float
    prompted: float  # share read as the prompted digit
    agrees: float  # share read as the same digit as the reference sample


class TeacherBench:
    """The teacher loaded once (CheckpointLoaderSimple's loader), its prompts encoded once."""

    def __init__(self, ctx: BenchContext):
        import nodes

        from ..tools import teacher

        self.teacher = teacher
        t0 = time.perf_counter()
        with torch.inference_mode(False):  # a first build trains it, which needs autograd
            path = teacher.teacher_checkpoint(log=lambda s: ctx.log("  " + s))
        self.model, self.clip, self.vae = teacher.load_teacher(path)
        self.settings = dict(teacher.TEACHER_SETTINGS)
        self.digits = list(ctx.pick(range(10), smoke=(3, 7)))
        self.per_digit = ctx.pick(5, full=10, smoke=2)  # default: 50 samples keep `make bench` short
        encode = nodes.CLIPTextEncode().encode
        self.negative = encode(self.clip, teacher.NEGATIVE_PROMPT)[0]
        self.positive = {d: encode(self.clip, teacher.prompt_for(d))[0] for d in range(10)}
        self.version = teacher.TEACHER_VERSION
        ctx.log(f"  teacher {self.version} ready in {time.perf_counter() - t0:.0f} s")

    def describe(self) -> str:
        s = self.settings
        return (f"{s['steps']} steps, cfg {s['cfg']:g}, {s['sampler']}/{s['scheduler']}, "
                f"{s['width']}x{s['height']} px")

    def sample(self, model, digit: int, batch: int, seed: int, **overrides) -> torch.Tensor:
        import nodes

        s = {**self.settings, **overrides}
        latent = nodes.EmptyLatentImage().generate(s["width"], s["height"], batch)[0]
        return nodes.common_ksampler(model, seed, s["steps"], s["cfg"], s["sampler"], s["scheduler"],
                                     self.positive[digit], self.negative, latent)[0]["samples"]

    def sample_set(self, model, seed: int = 0, **overrides) -> SampleSet:
        """`per_digit` samples of every digit, seed `seed + digit` (as tools/teacher.py draws them)."""
        from ..fewstep.analysis.hooks import metered

        counted, counter = metered(model)
        t0 = time.perf_counter()
        latents = [self.sample(counted, d, self.per_digit, seed + d, **overrides) for d in self.digits]
        seconds = time.perf_counter() - t0
        latents_t = torch.cat(latents)
        images = self.vae.decode(latents_t)
        labels = np.repeat(self.digits, self.per_digit)
        return SampleSet(latents_t, labels, np.asarray(self.teacher.classify_images(images)),
                         counter.diffusion_calls / len(self.digits), seconds, counter.rows() / len(labels))

    def scored(self, ctx: BenchContext, key, model, **overrides) -> tuple[SampleSet, Quality]:
        """sample_set + quality vs the reference, once per bench process for `key` (families
        share configs, e.g. the frontier chart reuses the caching and few-step rows)."""
        def build():
            s = self.sample_set(model, **overrides)
            return s, self.quality(s, self.reference(ctx))

        return ctx.memo(("scored", key), build)

    def calibration_run(self, model) -> None:
        """One sampling run outside the evaluation set (a seed no sample_set uses), for
        methods that calibrate on their first run."""
        self.sample(model, 7, 1, CALIBRATION_SEED)

    def reference(self, ctx: BenchContext) -> SampleSet:
        """The teacher at its own settings: what every quality figure is measured against."""
        return ctx.memo(("teacher-reference", self.version), lambda: self.sample_set(self.model))

    @staticmethod
    def quality(candidate: SampleSet, reference: SampleSet) -> Quality:
        d = difference(reference.latents, candidate.latents)
        return Quality(d.psnr_db, d.max_abs, float((candidate.predicted == candidate.labels).mean()),
                       float((candidate.predicted == reference.predicted).mean()))

    def timing_run(self, model, **overrides):
        """One batch-1 sampling run (digit 7, seed 7): the unit every wall time times.
        Returns a callable whose result is the UNet calls that run made (a cache may skip a
        different number than on the quality runs' batches)."""
        from ..fewstep.analysis.hooks import metered

        counted, counter = metered(model)

        def run():
            before = counter.diffusion_calls
            self.sample(counted, 7, 1, 7, **overrides)
            return counter.diffusion_calls - before

        return run


def teacher_bench(ctx: BenchContext) -> TeacherBench:
    return ctx.memo("teacher-bench", lambda: TeacherBench(ctx))


"""The A/B test's numbers and its report text. Pure: no ComfyUI, no timing of its own.

Timing rules (the same as `make bench`, bench/harness.py): one untimed warm-up per branch,
then `repeats` runs with the order alternating (A B, B A, ...) so load from other processes
hits both alike; a branch's time is the median of its runs; the speedup is the median of
the per-repeat ratios A/B, never a ratio of numbers taken at different times.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BranchSettings:
    steps: int
    cfg: float
    sampler: str
    scheduler: str

    def describe(self) -> str:
        return f"{self.sampler}/{self.scheduler}, {self.steps} steps, cfg {self.cfg:g}"


@dataclass
class BranchTimes:
    """One branch's runs: seconds inside the sampler loop and of the whole KSampler call."""

    settings: BranchSettings
    sampling: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    warmup_total: float = 0.0  # the untimed first run (includes the first model load)
    calls_per_image: float = 0.0  # model evaluations per latent, cond and uncond each counting

    def add(self, sampling: float, total: float) -> None:
        self.sampling.append(sampling)
        self.total.append(total)

    @property
    def median(self) -> float:
        return statistics.median(self.sampling)

    @property
    def outside_sampling(self) -> float:
        """Median seconds of each run spent before and after the sampler loop: loading and
        patching the model (switching clones re-patches), conditioning, noise."""
        return statistics.median(t - s for t, s in zip(self.total, self.sampling))


def speedup(a: BranchTimes, b: BranchTimes, whole_call: bool = False) -> float:
    """How many times faster B samples than A: median of per-repeat ratios A/B, of the
    sampler loop (or, with whole_call, of the whole KSampler call, as `make bench` times)."""
    ta_list, tb_list = (a.total, b.total) if whole_call else (a.sampling, b.sampling)
    if len(ta_list) != len(tb_list) or not ta_list:
        raise ValueError("speedup needs the same number (>= 1) of runs of both branches, taken side by side")
    return statistics.median(ta / tb if tb > 0 else math.inf for ta, tb in zip(ta_list, tb_list))


def order_of_repeat(r: int) -> tuple[str, str]:
    """A first on even repeats, B first on odd ones."""
    return ("a", "b") if r % 2 == 0 else ("b", "a")


@dataclass
class ABReport:
    a: BranchTimes
    b: BranchTimes
    repeats: int
    latent_psnr_db: float
    pixel_psnr_db: float | None = None  # None without a VAE
    ssim: float | None = None
    heat_scale: float = 0.0  # the |difference| drawn white in the heat map
    heat_of: str = "pixels"  # or "latents" without a VAE

    @property
    def speedup(self) -> float:
        return speedup(self.a, self.b)

    def text(self) -> str:
        def psnr(v: float) -> str:
            return "identical (inf dB)" if math.isinf(v) else f"{v:.2f} dB"

        lines = [f"A/B test, {self.repeats} timed run(s) per branch after one warm-up; times are medians of the sampler loop only"]
        for name, br in (("A", self.a), ("B", self.b)):
            lines.append(f"{name}: {br.settings.describe()}: {br.median:.3f} s, {br.calls_per_image:g} model calls/image, "
                         f"load/patch/prepare {br.outside_sampling:.3f} s")
        lines.append(f"speedup B vs A: {self.speedup:.2f}x (whole KSampler call: {speedup(self.a, self.b, True):.2f}x)")
        lines.append(f"latent PSNR {psnr(self.latent_psnr_db)}")
        if self.pixel_psnr_db is None:
            lines.append("pixel PSNR and SSIM: connect a VAE")
        else:
            lines.append(f"pixel PSNR {psnr(self.pixel_psnr_db)}, SSIM {self.ssim:.4f}")
        lines.append(f"heat map ({self.heat_of}): white = mean |diff| {self.heat_scale:.4g}" if self.heat_scale > 0
                     else f"heat map ({self.heat_of}): black, no difference")
        return "\n".join(lines)

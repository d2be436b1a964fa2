"""The student's few-step sampler, differentiable, run by ComfyUI's own guider.

k-diffusion's sample_euler / sample_lcm are decorated @torch.no_grad(), so the student
loop is a `comfy.samplers.Sampler` of its own (as core's TrainSampler is): the same
update rules (euler's d = (x - denoised) / sigma; LCM's re-noising with
model_sampling.noise_scaling) with the model called through the guider, so conds, cfg,
model patches and wrappers apply exactly as in KSampler. Without a backward hook it
gives KSampler's result bit for bit (tests/comfy/test_distill_engine.py).

Per-step gradient checkpointing keeps one step's activations at a time, so memory
stays nearly flat in the number of student steps. LCM's per-step noise is drawn from
a private generator before the checkpointed function, so a recompute sees the same noise.
"""

from __future__ import annotations

from typing import Callable

import comfy.samplers
import torch
import torch.utils.checkpoint

from ..fewstep import comfy_compat


def euler_update(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, _noise, _ms):
    """x, denoised (B, C, H, W); sigma, sigma_next scalars. As k-diffusion's sample_euler."""
    d = (x - denoised) / sigma.reshape([1] * x.ndim)
    return x + d * (sigma_next - sigma)


def lcm_update(x: torch.Tensor, denoised: torch.Tensor, sigma, sigma_next: torch.Tensor, noise, model_sampling):
    """As k-diffusion's sample_lcm: jump to the prediction, re-noise to sigma_next."""
    if sigma_next > 0:
        return model_sampling.noise_scaling(sigma_next, noise, denoised)
    return denoised


UPDATES: dict[str, Callable] = {"euler": euler_update, "lcm": lcm_update}


class StudentSampler(comfy.samplers.Sampler):
    """Runs the student from the teacher's noise; `on_result(latent)` sees the final latent
    (with grad, as KSampler would return it) before it leaves the guider, where backward must run while the model
    is loaded. `noise_generator` feeds LCM's per-step noise (None: core's seeded noise,
    for comparisons with KSampler)."""

    def __init__(self, sampler: str, checkpoint: bool, on_result: Callable[[torch.Tensor], None] | None = None,
                 noise_generator: torch.Generator | None = None, noise_rows: tuple[int, list[int]] | None = None):
        self.update = UPDATES[sampler]
        self.name, self.checkpoint, self.on_result = sampler, checkpoint, on_result
        self.noise_generator = noise_generator
        self.noise_rows = noise_rows  # (global batch, this process's rows): noise is drawn for the whole batch

    @staticmethod
    def skip_noise(generator: torch.Generator, batch: int, like: torch.Tensor, steps: int) -> None:
        """Advance `generator` as a run over `batch` rows would (a process with no rows)."""
        for _ in range(steps):
            torch.randn((batch, *like.shape[1:]), dtype=like.dtype, generator=generator)

    def _step_noises(self, x: torch.Tensor, steps: int, seed) -> list:
        if self.name != "lcm":
            return [None] * steps
        generator = self.noise_generator
        if generator is None:  # standing in for KSampler's lcm: core's own seeded noise
            draw = comfy_compat.default_noise_sampler(x, seed)
            return [draw(None, None) for _ in range(steps)]
        total, rows = self.noise_rows or (x.shape[0], None)
        noises = []
        for _ in range(steps):
            n = torch.randn((total, *x.shape[1:]), dtype=x.dtype, layout=x.layout, device=generator.device,
                            generator=generator)
            noises.append((n if rows is None else n[rows]).to(x.device))
        return noises

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        model_sampling = model_wrap.inner_model.model_sampling
        x = model_sampling.noise_scaling(sigmas[0], noise, latent_image, self.max_denoise(model_wrap, sigmas))
        s_in = x.new_ones([x.shape[0]])
        options, seed = extra_args.get("model_options", {}), extra_args.get("seed")
        noises = self._step_noises(x, len(sigmas) - 1, seed)

        def step(x_in, sigma, sigma_next, step_noise):
            denoised = model_wrap(x_in, sigma * s_in, model_options=options, seed=seed)
            return self.update(x_in, denoised, sigma, sigma_next, step_noise, model_sampling)

        for i in range(len(sigmas) - 1):
            if self.checkpoint and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(step, x, sigmas[i], sigmas[i + 1], noises[i], use_reentrant=False)
            else:
                x = step(x, sigmas[i], sigmas[i + 1], noises[i])
        x = model_sampling.inverse_noise_scaling(sigmas[-1], x)
        if self.on_result is not None:  # in the space KSampler returns latents in (the teacher's)
            self.on_result(model_wrap.inner_model.process_latent_out(x.to(torch.float32)))
        return x.detach()

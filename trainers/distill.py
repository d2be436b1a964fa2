"""Direct Distill: the student (the model plus a trainable adapter) samples N steps at a low
cfg from the teacher's noise, and the loss is the MSE between its final latent and the
teacher's many-step, high-cfg result. The node, the bench and the tests all run `train`.

Progress, events and interrupts go through `Callbacks`; nothing here imports `server`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import comfy.samplers
import torch

from ..fewstep import architectures, comfy_compat
from ..fewstep.lora.apply import apply_lora, load_lora_tensors
from ..fewstep.lora.library import file_version
from ..fewstep.metrics import difference
from . import adapters as adapter_hooks
from . import conds, lora_format, plan as planning, teacher
from .collective import Single, shard
from .config import DistillConfig, DistillConfigError
from .files import RESUME_EXT, checkpoint_name, load_resume, resolve_in, run_stem, save_resume, save_tensors
from .schedule import lr_factor
from .student import StudentSampler

log = logging.getLogger("FewStep.Distill")


class DistillDiverged(RuntimeError):
    """The loss or a gradient became NaN/Inf; the last good checkpoint is kept."""


def _nothing(*_args, **_kwargs):
    return None


@dataclass
class Callbacks:
    progress: Callable[[str, int, int], None] = _nothing  # (phase, done, total); phases: teacher, train
    event: Callable[[dict], None] = _nothing  # loss / held-out numbers for a live chart
    log: Callable[[str], None] = log.info
    check_interrupt: Callable[[], None] = _nothing  # raises to stop; the engine saves first


@dataclass
class DistillResult:
    model: object  # the student for sampling: a clone of the teacher with the saved LoRA patched in
    lora_path: Path
    resume_path: Path
    losses: list[float]
    heldout: list[tuple[int, float]]  # (iteration, latent PSNR in dB vs the teacher)
    report: str
    heldout_teacher: torch.Tensor  # (H, C, h, w) latents, for a comparison grid
    heldout_before: torch.Tensor
    heldout_after: torch.Tensor
    seconds: dict = field(default_factory=dict)


class _Run:
    """Per-run state: created by `train`, dropped when it returns."""

    def __init__(self, config, model, prompts, samples, targets, callbacks, collective):
        self.config, self.callbacks, self.collective = config, callbacks, collective
        self.prompts, self.samples, self.targets = prompts, samples, targets
        self.train_idx = [i for i, s in enumerate(samples) if not s.heldout]
        self.held_idx = [i for i, s in enumerate(samples) if s.heldout]
        self.student = model.clone()
        if config.training_dtype == "bf16":
            self.student.set_model_compute_dtype(torch.bfloat16)
        self.adapters = adapter_hooks.attach(self.student, config.adapter, config.rank, config.alpha, config.target,
                                             config.seed)
        self.optimizer = torch.optim.AdamW(self.adapters.parameters(), lr=config.learning_rate, weight_decay=0.0)
        self.batches = planning.BatchStream(len(self.train_idx), config.batch_size, config.seed)
        self.lcm_noise = torch.Generator().manual_seed(config.seed + 1)
        sampling = self.student.get_model_object("model_sampling")
        self.sigmas = comfy.samplers.calculate_sigmas(sampling, config.student_scheduler, config.student_steps).float()
        self.noise = torch.cat([teacher.noise_for(teacher.empty_latent(model, config, 1), s.seed) for s in samples])
        self.iteration, self.losses, self.heldout = 0, [], []
        self.last_saved: str | None = None

    # -- one sampling run of the student through ComfyUI's guider --
    def student_run(self, rows: list[int], on_result=None, noise_rows: tuple[int, list[int]] | None = None) -> torch.Tensor:
        pairs = [conds.first_pair(self.prompts.positive[self.samples[i].prompt_index]) for i in rows]
        negative = conds.stack([conds.first_pair(self.prompts.negative)] * len(rows))
        guider = comfy.samplers.CFGGuider(self.student)
        guider.set_conds(conds.stack(pairs), negative)
        guider.set_cfg(self.config.student_cfg)
        sampler = StudentSampler(self.config.student_sampler, self.config.gradient_checkpointing, on_result,
                                 self.lcm_noise, noise_rows)
        noise = self.noise[rows].clone()
        latent = torch.zeros_like(noise)
        autocast = torch.autocast(noise.device.type, dtype=torch.bfloat16, enabled=self.config.training_dtype == "bf16")
        with autocast:
            return guider.sample(noise, latent, sampler, self.sigmas.clone(), seed=self.samples[rows[0]].seed,
                                 disable_pbar=True)

    def evaluate(self) -> tuple[float, torch.Tensor]:
        if not self.held_idx:
            return math.nan, torch.empty(0)
        state = self.lcm_noise.get_state()
        self.lcm_noise.manual_seed(self.config.seed + 2)  # the same LCM noise at every evaluation
        try:
            with torch.no_grad():
                out = self.student_run(self.held_idx).float().cpu()
        finally:
            self.lcm_noise.set_state(state)
        if not torch.isfinite(out).all():
            raise self.diverged("the held-out samples")
        return difference(self.targets[self.held_idx], out).psnr_db, out

    def diverged(self, what: str) -> DistillDiverged:
        kept = f"The last good checkpoint is kept: {self.last_saved}." if self.last_saved else "Nothing was saved."
        return DistillDiverged(
            f"FewStep Distill stopped at iteration {self.iteration}: {what} became NaN/Inf. {kept} Lower "
            "learning_rate (e.g. by 10x; a resume may change it), use training_dtype fp32, or check the teacher settings.")

    def train_step(self) -> float:
        """One optimizer step on the global batch; with several processes each runs its
        share, its loss weighted by that share, and the adapter gradients are summed."""
        batch = [self.train_idx[i] for i in self.batches.next()]
        mine = shard(list(range(len(batch))), self.collective.rank, self.collective.world)
        rows = [batch[i] for i in mine]
        target = self.targets[rows].clone()
        weight = len(rows) / len(batch)
        losses = [0.0]

        def backward(latent):
            loss = torch.nn.functional.mse_loss(latent.float(), target.to(latent.device)) * weight
            loss.backward()  # here, while ComfyUI still holds the model loaded
            losses[0] = loss.detach().item()

        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate * lr_factor(self.config.lr_schedule, self.iteration,
                                                                  self.config.iterations)
        self.optimizer.zero_grad(set_to_none=True)
        if rows:
            with torch.enable_grad():
                self.student_run(rows, backward, (len(batch), mine))
        elif self.config.student_sampler == "lcm":  # keep the shared noise generator in step with the others
            StudentSampler.skip_noise(self.lcm_noise, len(batch), self.noise[:1], self.config.student_steps)
        self.collective.all_reduce_gradients(self.adapters.parameters())
        loss = self.collective.sum(losses[0])
        grads_finite = all(torch.isfinite(p.grad).all() for p in self.adapters.parameters() if p.grad is not None)
        if not (math.isfinite(loss) and grads_finite):
            self.iteration += 1
            raise self.diverged("the loss" if not math.isfinite(loss) else "a gradient")
        self.optimizer.step()
        self.iteration += 1
        self.losses.append(loss)
        return loss

    # -- resume state: adapters, AdamW moments (with each parameter's step), generators --
    def state_tensors(self) -> tuple[dict, dict]:
        tensors = {f"adapter|{k}": v.clone() for k, v in self.adapters.state_dict().items()}
        opt = self.optimizer.state_dict()
        steps = {}
        for index, state in opt["state"].items():
            for name, value in state.items():
                if name == "step":
                    steps[str(index)] = float(value)
                else:
                    tensors[f"optim|{index}|{name}"] = value.clone()
        batches = self.batches.state()
        tensors["rng|batches"] = batches.pop("generator")
        tensors["rng|lcm"] = self.lcm_noise.get_state()
        meta = {"iteration": self.iteration, "losses": self.losses, "heldout": self.heldout, "steps": steps,
                "batches": batches, "config": self.config.to_dict()}
        return tensors, meta

    def load_state(self, tensors: dict, meta: dict) -> None:
        self.adapters.load_state_dict({k[len("adapter|"):]: v for k, v in tensors.items() if k.startswith("adapter|")})
        opt = self.optimizer.state_dict()
        state = {}
        for index in opt["param_groups"][0]["params"]:
            if str(index) not in meta["steps"]:
                continue
            state[index] = {"step": torch.tensor(meta["steps"][str(index)])}
            for name in ("exp_avg", "exp_avg_sq"):
                state[index][name] = tensors[f"optim|{index}|{name}"].clone()
        opt["state"] = state
        self.optimizer.load_state_dict(opt)
        self.batches.load_state({**meta["batches"], "generator": tensors["rng|batches"]})
        self.lcm_noise.set_state(tensors["rng|lcm"])
        self.iteration, self.losses = int(meta["iteration"]), list(meta["losses"])
        self.heldout = [tuple(x) for x in meta["heldout"]]


def _resume_file(config: DistillConfig, folder: Path, base: str) -> tuple[dict, dict] | None:
    if not config.resume:
        return None
    path = resolve_in(folder, config.resume, RESUME_EXT)
    tensors, meta = load_resume(path)
    stored = DistillConfig.from_dict(meta["config"])
    stored_base = meta.get("base")
    if stored_base != base:
        raise DistillConfigError(f"resume file {path.name} was trained on {stored_base}, but this model is {base}; "
                                 "resume on the same base model, or leave resume empty to start fresh")
    ours, theirs = replace(config, resume="").training_fields(), stored.training_fields()
    changed = sorted(k for k in ours if ours[k] != theirs.get(k))
    if changed:
        raise DistillConfigError(f"resume file {path.name} was trained with other settings ({', '.join(changed)}); "
                                 "set them as they were, or leave resume empty to start fresh")
    if int(meta["iteration"]) > config.iterations:
        raise DistillConfigError(f"resume file {path.name} is at iteration {meta['iteration']}, past iterations "
                                 f"{config.iterations}; raise iterations to continue training")
    return tensors, meta


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".fewstep_write_probe.partial"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise DistillConfigError(f"cannot write to the LoRA folder {folder} ({e.strerror or e}); make it writable "
                                 "or point ComfyUI's loras folder elsewhere") from e


def train(config: DistillConfig, model, clip, output_folder: Path, callbacks: Callbacks | None = None,
          upstream_loras: tuple[str, ...] = (), collective=None) -> DistillResult:
    """Generate (or reuse) teacher samples, train, save; see the module docstring.

    `collective` (trainers/collective.py) shares the work between processes: teacher
    samples and batches are sharded by rank, one process writes files."""
    cb = callbacks or Callbacks()
    collective = collective or Single()
    config.check()
    family = architectures.family_of(model)
    if family.id is None:
        raise DistillConfigError(f"FewStep Distill does not know this model ({family.config}); supported families: "
                                 f"{', '.join(architectures.ids())}")
    output_folder = Path(output_folder)
    resumed = _resume_file(config, output_folder, family.id)
    _check_writable(output_folder)
    t0 = time.perf_counter()
    with torch.inference_mode(False):
        prompts = teacher.encode(clip, config)
        samples = planning.samples(config)
        paths = teacher.cache_paths(model, prompts, samples, config)
        generated, reused = teacher.generate(model, prompts, samples, paths, config,
                                             lambda d, t: cb.progress("teacher", d, t), cb.log, cb.check_interrupt,
                                             shard=(collective.rank, collective.world))
        collective.barrier()  # every rank's samples are on disk before anyone reads them
        targets = teacher.load(paths)
        t_teacher = time.perf_counter() - t0
        run = _Run(config, model, prompts, samples, targets, cb, collective)
        try:
            result = _train(run, family.id, output_folder, resumed, cb, upstream_loras,
                            {"teacher": t_teacher, "teacher_generated": generated, "teacher_reused": reused})
        finally:
            run.optimizer = None  # drop the per-run state with the optimizer's moments
    return replace(result, model=sampling_student(model, result.lora_path))


def sampling_student(model, lora_path: Path):
    """A clone of `model` with the saved file applied as FewStepLoraLoader applies it (core's
    weight patches), so the MODEL output is exactly what loading the file later gives.

    The training clone's weight wrappers rebuild W + dW on every forward (a 4-step run on the
    digits teacher took 339 ms with them, 123 ms patched, 113 ms without the LoRA); patches
    are merged into the weights once when the model loads."""
    tensors = load_lora_tensors(lora_path, file_version(lora_path))
    return apply_lora(model, None, tensors, 1.0, 0.0, lora_path.name, None).model


def _train(run: _Run, base: str, folder: Path, resumed, cb: Callbacks, upstream_loras, seconds) -> DistillResult:
    config = run.config
    comfy_compat.load_for_training(run.student)
    psnr_before, before = run.evaluate()
    if resumed is not None:
        run.load_state(*resumed)
        cb.log(f"FewStep Distill: resumed at iteration {run.iteration} of {config.iterations}")
    elif not math.isnan(psnr_before):
        run.heldout.append((0, psnr_before))
    stem = run_stem(folder, config.lora_name)
    resume_path = folder / f"{stem}{RESUME_EXT}"

    def save(name: str) -> Path:
        """One process writes; the others wait until the files are complete."""
        if not run.collective.writer:
            run.collective.barrier()
            run.last_saved = name
            return folder / name
        tensors, meta = run.state_tensors()
        save_resume(resume_path, tensors, {**meta, "base": base})
        names = adapter_hooks.kohya_names(run.student, run.adapters.modules)
        md = lora_format.metadata(config.to_json(), base, config.student_steps, config.student_cfg,
                                  config.student_sampler, config.student_scheduler, list(upstream_loras), run.iteration)
        path = save_tensors(folder / name, lora_format.kohya_tensors(run.adapters.export(), names), md)
        run.last_saved = name
        run.collective.barrier()
        return path

    t1 = time.perf_counter()
    interrupt = comfy_compat.interrupt_exception_type()
    try:
        while run.iteration < config.iterations:
            cb.check_interrupt()
            loss = run.train_step()
            event = {"iteration": run.iteration, "iterations": config.iterations, "loss": loss}
            if config.save_every and run.iteration % config.save_every == 0 and run.iteration < config.iterations:
                psnr, _ = run.evaluate()
                run.heldout.append((run.iteration, psnr))
                event["heldout_psnr"] = psnr
                save(checkpoint_name(stem, run.iteration))
            cb.event(event)
            cb.progress("train", run.iteration, config.iterations)
    except (interrupt, KeyboardInterrupt):
        if run.iteration > 0:
            path = save(checkpoint_name(stem, run.iteration))
            cb.log(f"FewStep Distill: interrupted at iteration {run.iteration}; saved {path.name} and "
                   f"{resume_path.name} (put {resume_path.name} in resume to continue)")
        raise
    seconds["train"] = time.perf_counter() - t1
    psnr_after, after = run.evaluate()
    run.heldout.append((run.iteration, psnr_after))
    cb.event({"iteration": run.iteration, "iterations": config.iterations, "heldout_psnr": psnr_after, "done": True})
    lora_path = save(f"{stem}.safetensors")
    report = _report(config, base, lora_path, run, psnr_before, psnr_after, seconds)
    return DistillResult(run.student, lora_path, resume_path, run.losses, run.heldout, report,
                         run.targets[run.held_idx] if run.held_idx else torch.empty(0), before, after, seconds)


def _report(config, base, lora_path, run, before, after, seconds) -> str:
    lines = [
        f"FewStep Distill: {lora_path.name} ({base}, {config.adapter} rank {config.rank} on {config.target})",
        f"teacher: {config.teacher_steps} steps, cfg {config.teacher_cfg:g}, {config.teacher_sampler}/"
        f"{config.teacher_scheduler}; {seconds['teacher_generated']} samples generated, "
        f"{seconds['teacher_reused']} reused, {seconds['teacher']:.1f} s",
        f"student: {config.student_steps} steps, cfg {config.student_cfg:g}, {config.student_sampler}/"
        f"{config.student_scheduler}",
        f"training: {run.iteration} iterations, batch {config.batch_size}, lr {config.learning_rate:g} "
        f"({config.lr_schedule}), {seconds['train']:.1f} s; final loss {run.losses[-1]:.5f}" if run.losses else
        "training: nothing left to train",
        f"held-out ({len(run.held_idx)} samples), latent PSNR vs the teacher: before {before:.2f} dB, "
        f"after {after:.2f} dB",
    ]
    return "\n".join(lines)

"""FewStepDistillTrainer: teacher samples in, a few-step student LoRA out (trainers/).

Inputs are append-only: saved UI workflows store widget values by position.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import comfy.samplers
import comfy.utils
import folder_paths
from comfy_api.latest import io, ui

from ..fewstep import comfy_compat
from ..trainers import report as pictures
from ..trainers.config import ADAPTERS, LR_SCHEDULES, STUDENT_SAMPLERS, TARGETS, TRAINING_DTYPES, DistillConfig
from ..trainers.distill import Callbacks, train
from ..trainers.files import write_atomic
from ..trainers.graph import NotExportable, cli_source, upstream_loras
from ..trainers.targets import DESCRIPTIONS

EVENT = "fewstep.distill"  # web/js/distill_chart.js draws these on the node
_PREVIEW_SAMPLES = 8


def _combo(name, options, default, tooltip):
    return io.Combo.Input(name, options=list(options), default=default, tooltip=tooltip)


class FewStepDistillTrainer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        samplers, schedulers = comfy.samplers.KSampler.SAMPLERS, comfy.samplers.KSampler.SCHEDULERS
        return io.Schema(
            node_id="FewStepDistillTrainer",
            display_name="FewStep Distill Trainer",
            category="FewStep/training",
            description="Direct Distill: samples your prompts with the model at many steps and high cfg (the teacher), "
            "then trains a LoRA so the same model reproduces them in a few steps at cfg 1. Saves the LoRA into the "
            "loras folder with FewStep preset metadata; shows the loss live on the node.",
            inputs=[
                io.Model.Input("model", tooltip="The teacher. The student is this model plus a trainable LoRA; the input "
                               "model itself is never changed."),
                io.Clip.Input("clip", tooltip="Encodes the prompts (frozen)."),
                io.String.Input("prompts", multiline=True, default="",
                                tooltip="Training prompts, one per line. Varied prompts generalise better; a few "
                                "extra seeds per prompt are held out to measure that."),
                io.String.Input("negative", multiline=True, default="",
                                tooltip="The teacher's negative prompt (used with teacher_cfg; the student at cfg 1 "
                                "does not need one)."),
                io.Int.Input("width", default=512, min=8, max=8192, step=8, tooltip="Image width in pixels (multiple of 8)."),
                io.Int.Input("height", default=512, min=8, max=8192, step=8, tooltip="Image height in pixels (multiple of 8)."),
                io.Int.Input("teacher_steps", default=30, min=2, max=200, tooltip="Steps of the teacher's samples (the quality target)."),
                io.Float.Input("teacher_cfg", default=5.0, min=0.1, max=30.0, step=0.1, tooltip="CFG of the teacher's samples."),
                _combo("teacher_sampler", samplers, "euler", "Sampler of the teacher's samples."),
                _combo("teacher_scheduler", schedulers, "normal", "Scheduler of the teacher's samples."),
                io.Int.Input("student_steps", default=4, min=1, max=50,
                             tooltip="Steps the student is trained for (fewer than teacher_steps)."),
                io.Float.Input("student_cfg", default=1.0, min=0.1, max=30.0, step=0.1,
                               tooltip="CFG of the student. 1 = one model call per step (no negative pass)."),
                _combo("student_sampler", STUDENT_SAMPLERS, "euler",
                       "Sampler the student is trained through; FewStep implements these differentiably. Use the same "
                       "in KSampler afterwards (the saved LoRA's metadata says which)."),
                _combo("student_scheduler", schedulers, "sgm_uniform", "Scheduler of the student's steps."),
                io.Int.Input("samples_per_prompt", default=8, min=1, max=1000,
                             tooltip="Teacher samples (seeds) per prompt used for training."),
                io.Int.Input("iterations", default=300, min=1, max=1000000, tooltip="Optimizer steps."),
                io.Float.Input("learning_rate", default=0.001, min=0.0, max=1.0, step=0.00001,
                               tooltip="AdamW learning rate (1e-3 suits small LoRAs; 1e-4 for large models)."),
                _combo("lr_schedule", LR_SCHEDULES, "cosine_warmup",
                       "cosine_warmup: 5% linear warmup, then cosine decay to 0. constant_warmup: warmup, then flat. "
                       "constant: flat."),
                _combo("adapter", ADAPTERS, "lora", "Adapter type, from ComfyUI's weight adapters (lora saves in kohya "
                       "format; loha/lokr/oft in LyCORIS key format)."),
                io.Int.Input("rank", default=16, min=0, max=256, tooltip="Adapter rank (capacity). 8-32 is typical."),
                io.Float.Input("alpha", default=16.0, min=0.0, max=1024.0, step=0.5,
                               tooltip="LoRA alpha; the update is scaled by alpha / rank."),
                _combo("target", TARGETS, "all", "Which layers get adapters. "
                       + "; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items())
                       + ". all (as diffusers' LCM-LoRA training) distilled best on the built-in teacher."),
                io.Int.Input("batch_size", default=8, min=1, max=1024, tooltip="Samples per optimizer step."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF,
                             tooltip="Decides the teacher samples' seeds, adapter init and batch order; a rerun with "
                             "the same inputs reuses the cached teacher samples.", control_after_generate=False),
                io.Boolean.Input("gradient_checkpointing", default=True,
                                 tooltip="Recompute each student step in backward: memory stays nearly flat in "
                                 "student_steps at about 1.3x the time."),
                _combo("training_dtype", TRAINING_DTYPES, "fp32",
                       "Compute dtype of the model while training; adapter weights always stay fp32."),
                io.String.Input("lora_name", default="fewstep_distill",
                                tooltip="File name stem in the loras folder; each run gets the next free number "
                                "(name_00001.safetensors), nothing is overwritten."),
                io.Int.Input("save_every", default=100, min=0, max=1000000,
                             tooltip="Save a checkpoint LoRA and measure held-out quality every N iterations "
                             "(0: only at the end)."),
                io.String.Input("resume", default="",
                                tooltip="Continue a run: the .distill file written beside its LoRA (e.g. "
                                "fewstep_distill_00001.distill). Empty: start fresh."),
                io.Vae.Input("vae", optional=True,
                             tooltip="Optional: decodes the comparison grid (teacher / student before / after)."),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="The student: the input model with the trained LoRA "
                                "applied, ready for a KSampler at student_steps and student_cfg."),
                io.String.Output(display_name="lora_name", tooltip="The saved LoRA's file name in the loras folder."),
                io.Image.Output(display_name="loss_curve", tooltip="Training loss and held-out PSNR over iterations."),
                io.String.Output(display_name="report", tooltip="Settings, time, held-out distance before and after."),
                io.Image.Output(display_name="comparison", tooltip="Rows: teacher / student before / student after on "
                                "held-out seeds (decoded with the VAE; a latent preview without one)."),
            ],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, clip, prompts, negative, width, height, teacher_steps, teacher_cfg, teacher_sampler,
                teacher_scheduler, student_steps, student_cfg, student_sampler, student_scheduler, samples_per_prompt,
                iterations, learning_rate, lr_schedule, adapter, rank, alpha, target, batch_size, seed,
                gradient_checkpointing, training_dtype, lora_name, save_every, resume, vae=None) -> io.NodeOutput:
        config = DistillConfig.from_text(
            prompts, negative=negative, width=width, height=height, teacher_steps=teacher_steps,
            teacher_cfg=teacher_cfg, teacher_sampler=teacher_sampler, teacher_scheduler=teacher_scheduler,
            student_steps=student_steps, student_cfg=student_cfg, student_sampler=student_sampler,
            student_scheduler=student_scheduler, samples_per_prompt=samples_per_prompt, iterations=iterations,
            learning_rate=learning_rate, lr_schedule=lr_schedule, adapter=adapter, rank=rank, alpha=alpha,
            target=target, batch_size=batch_size, seed=seed, gradient_checkpointing=gradient_checkpointing,
            training_dtype=training_dtype, lora_name=lora_name.strip(), save_every=save_every,
            resume=resume.strip()).check()
        node_id = getattr(cls.hidden, "unique_id", None)
        bars = {}

        def progress(phase, done, total):
            bar = bars.get(phase) or bars.setdefault(phase, comfy.utils.ProgressBar(total, node_id=node_id))
            bar.update_absolute(done, total)

        def event(data):
            comfy_compat.send_event(EVENT, {"node": node_id, **{k: _finite(v) for k, v in data.items()}})

        folder = Path(folder_paths.get_folder_paths("loras")[0])
        result = train(config, model, clip, folder,
                       Callbacks(progress=progress, event=event, check_interrupt=comfy_compat.throw_if_interrupted),
                       upstream_loras=tuple(upstream_loras(getattr(cls.hidden, "prompt", None), node_id)))
        report = result.report + "\n" + _export_cli_config(config, getattr(cls.hidden, "prompt", None), node_id,
                                                          result.lora_path)
        curve = pictures.loss_curve(result.losses, result.heldout)
        comparison = _comparison(vae, result)
        return io.NodeOutput(result.model, result.lora_path.name, curve, report, comparison, ui=ui.PreviewText(report))


def _export_cli_config(config, prompt, node_id, lora_path: Path) -> str:
    """Write <lora>.json, which tools/distill_cli.py runs to reproduce this run headless."""
    try:
        source = cli_source(prompt, node_id)
    except NotExportable as e:
        return f"headless config: not written ({e})"
    settings = {k: v for k, v in config.to_dict().items() if k not in ("resume", "extra")}
    data = {**source, "prompts": settings.pop("prompts"), "distill": settings}
    path = write_atomic(lora_path.with_suffix(".json"), json.dumps(data, indent=2).encode())
    return f"headless config: {path.name} (python tools/distill_cli.py --config {path.name})"


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _comparison(vae, result):
    rows = [result.heldout_teacher, result.heldout_before, result.heldout_after]
    if rows[0].numel() == 0:
        return pictures.loss_curve([], [])
    rows = [r[:_PREVIEW_SAMPLES] for r in rows]
    if vae is None:
        return pictures.grid([pictures.latent_preview(r) for r in rows])
    return pictures.grid([vae.decode(r)[..., :3].float().cpu() for r in rows])

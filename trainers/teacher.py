"""Teacher samples: ComfyUI's own KSampler path at the teacher settings, one seed per
sample, all generated before training and cached under <user>/fewstep/teacher_cache.

The cache key hashes what decides the sample: the model's weights and weight patches
(a MODEL carries no file path), its model_sampling, the encoded prompt and negative,
the seed, the size and the sampler settings. A rerun with the same inputs reuses the
samples; during training "teacher" means these files, so the teacher and student
patchers never alternate (each switch would unpatch and re-patch the whole model).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import comfy.sample
import comfy.utils
import torch
from safetensors.torch import load_file

from ..fewstep import comfy_compat
from .config import DistillConfig
from .files import save_tensors
from .plan import Sample

CACHE_FOLDER = "teacher_cache"
CACHE_VERSION = "1"


@dataclass
class Prompts:
    """Encoded conditioning, one CONDITIONING per prompt, plus the negative."""
    positive: list
    negative: list


def encode(clip, config: DistillConfig) -> Prompts:
    """CLIPTextEncode's own call on every prompt (no grad: the text encoder is frozen)."""
    def one(text):
        return clip.encode_from_tokens_scheduled(clip.tokenize(text))

    with torch.no_grad():
        return Prompts([one(p) for p in config.prompts], one(config.negative))


def empty_latent(model, config: DistillConfig, batch: int) -> torch.Tensor:
    """Zeros shaped like EmptyLatentImage for this model: (B, C, H/8, W/8), or
    (B, C, 1, H/8, W/8) for a video model's one-frame latent."""
    latent_format = model.get_model_object("latent_format")
    channels = latent_format.latent_channels
    dims = getattr(latent_format, "latent_dimensions", 2)
    shape = [batch, channels] + [1] * (dims - 2) + [config.height // 8, config.width // 8]
    return torch.zeros(shape)


def noise_for(latent: torch.Tensor, seed: int) -> torch.Tensor:
    """KSampler's initial noise for one sample (batch 1) at `seed`."""
    return comfy.sample.prepare_noise(latent[:1], seed)


def _tensor_digest(h, value) -> None:
    if isinstance(value, torch.Tensor):
        h.update(f"{tuple(value.shape)}|{value.dtype}".encode())
        h.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    elif isinstance(value, dict):
        for k in sorted(value):
            h.update(str(k).encode())
            _tensor_digest(h, value[k])
    elif isinstance(value, (list, tuple)):
        for v in value:
            _tensor_digest(h, v)
    else:
        h.update(repr(value).encode())


def model_key(model) -> str:
    """Weights, weight patches and model_sampling parameters of the teacher."""
    h = hashlib.sha256(comfy_compat.model_fingerprint(model, b"fewstep-distill-teacher").encode())
    sampling = model.get_model_object("model_sampling")
    h.update(type(sampling).__name__.encode())
    _tensor_digest(h, {k: v for k, v in sampling.state_dict().items()})
    return h.hexdigest()


def sample_key(teacher_key: str, conditioning, negative, sample: Sample, config: DistillConfig) -> str:
    h = hashlib.sha256(f"{CACHE_VERSION}|{teacher_key}|{sample.seed}|{config.width}x{config.height}|"
                       f"{config.teacher_steps}|{config.teacher_cfg!r}|{config.teacher_sampler}|"
                       f"{config.teacher_scheduler}".encode())
    _tensor_digest(h, conditioning)
    _tensor_digest(h, negative)
    return h.hexdigest()


def cache_dir() -> Path:
    return comfy_compat.user_data_dir(CACHE_FOLDER)


def cache_paths(model, prompts: Prompts, plan: list[Sample], config: DistillConfig) -> list[Path]:
    """The cache file of every sample of `plan`, in plan order (the weights are hashed once)."""
    folder, teacher_key = cache_dir(), model_key(model)
    return [folder / f"{sample_key(teacher_key, prompts.positive[s.prompt_index], prompts.negative, s, config)}"
                     ".safetensors" for s in plan]


def generate(model, prompts: Prompts, plan: list[Sample], paths: list[Path], config: DistillConfig, progress, log,
             check_interrupt, shard: tuple[int, int] = (0, 1)) -> tuple[int, int]:
    """Make sure every sample of `plan` is at its path; returns (generated, reused).

    With shard = (rank, world), this process generates only samples i % world == rank;
    each file is written once (atomic rename), so ranks can share one cache folder."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    todo = [(i, s) for i, s in enumerate(plan) if not paths[i].exists()]
    reused = len(plan) - len(todo)
    mine = [(i, s) for i, s in todo if i % shard[1] == shard[0]]
    if reused:
        log(f"FewStep Distill: reusing {reused} of {len(plan)} teacher samples from {cache_dir()}")
    bar, comfy.utils.PROGRESS_BAR_ENABLED = comfy.utils.PROGRESS_BAR_ENABLED, False
    try:
        for done, (i, s) in enumerate(mine):
            check_interrupt()
            latent = empty_latent(model, config, 1)
            positive = prompts.positive[s.prompt_index]
            with torch.no_grad():
                out = comfy.sample.sample(model, noise_for(latent, s.seed), config.teacher_steps, config.teacher_cfg,
                                          config.teacher_sampler, config.teacher_scheduler, positive, prompts.negative,
                                          latent, seed=s.seed, disable_pbar=True)
            meta = {"prompt": s.prompt, "seed": str(s.seed), "width": str(config.width), "height": str(config.height),
                    "settings": json.dumps({"steps": config.teacher_steps, "cfg": config.teacher_cfg,
                                            "sampler": config.teacher_sampler, "scheduler": config.teacher_scheduler})}
            save_tensors(paths[i], {"latent": out.detach().to("cpu", torch.float32).clone()}, meta)
            progress(done + 1, len(mine))
    finally:
        comfy.utils.PROGRESS_BAR_ENABLED = bar
    return len(mine), reused


def load(paths: list[Path]) -> torch.Tensor:
    """(N, C, ...) teacher latents from `paths` (after generate)."""
    return torch.cat([load_file(str(p))["latent"] for p in paths])

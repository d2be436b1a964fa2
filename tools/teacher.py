"""FewStep's trained tiny teacher: a text-to-image diffusion model of handwritten digits.

What it is: an SD1.5-shaped checkpoint (the tiny one-level UNet of `tiny_models`, the
random frozen CLIP-L, a TAESD-layout VAE) trained here on CPU on scikit-learn's 8x8
handwritten digits, so that caching, token merging and distillation can be judged on
real denoising trajectories. ComfyUI's own CheckpointLoaderSimple loads it;
`CLIPTextEncode("seven seven seven seven")` + KSampler (30 steps, cfg 5, euler, normal,
32x32) + VAEDecode draws a seven.

What it is not: an image model anyone would use. Images are 32 px, upsampled from 8x8;
the latent is simply the 8x8 picture folded into 4 channels
(latent = pixel_unshuffle(image in [-1, 1], 2) / 0.18215), and the VAE is trained to
unfold and upsample it. Random-weight models suffice for timing; this one exists for
quality numbers, and conclusions about big models drawn from it need care.

Measured (ComfyUI 0.3.75, torch 2.14.1, 2 CPU cores, never alone on the machine):
training took 1002 s (1512 CPU-s) beside other test runs and 1840 s (2338 CPU-s) beside
a benchmark; from a fresh clone, 30-step samples matched the prompted digit 100/100 times
(logistic-regression classifier fitted on the held-out split only). Each build records
its own times in the file's metadata (fewstep.train_seconds, fewstep.train_cpu_seconds).

Build: `.venv/bin/python -P -m comfyui_fewstep.tools.teacher`, or `teacher_checkpoint()`,
which caches the file under cache_dir()/models/<TEACHER_VERSION>/ (never committed).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import comfy_runtime as rt
from .tiny_models import TINY_SD15_VERSION, cache_dir, init_taesd, save_atomic, tiny_sd15_checkpoint

# Bump when anything changes what the trained file contains (data, recipe, seeds, steps).
TEACHER_VERSION = "teacher-digits-v2"

# The teacher's own sampling settings: the reference every quality figure compares to.
TEACHER_SETTINGS = {"steps": 30, "cfg": 5.0, "sampler": "euler", "scheduler": "normal",
                    "width": 32, "height": 32}

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NEGATIVE_PROMPT = ""
# Repeating the word makes the random CLIP's embeddings of two digits differ by ~60%
# instead of ~25% (measured), which the UNet learns faster.
_REPEAT = 4


def prompt_for(digit: int) -> str:
    return " ".join([WORDS[int(digit)]] * _REPEAT)


PROMPTS = tuple(prompt_for(d) for d in range(10))

LATENT_SCALE = 0.18215  # SD1.5's latent_format.scale_factor: model-space = VAE-space * this
HELD_OUT = 600          # digits kept out of training; only the classifier is fitted on them
SEED = 0
UNET_STEPS, UNET_BATCH, UNET_LR = 600, 32, 1e-3
VAE_PARTS = {"decoder": (250, 16, 1e-3), "encoder": (400, 8, 2e-3)}  # steps, batch, lr
DROPOUT = 0.1           # share of empty prompts, so classifier-free guidance works


# ---- data: pixels <-> latents <-> 32 px pictures ----------------------------------------

@functools.lru_cache(maxsize=1)
def digits_split():
    """(x_train, y_train, x_held, y_held): 8x8 digits as 0..16 floats, a pinned split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x, y = d.data.astype(np.float32), d.target.astype(np.int64)
    tr, ho = train_test_split(np.arange(len(y)), test_size=HELD_OUT, random_state=SEED, stratify=y)
    return x[tr], y[tr], x[ho], y[ho]


def to_latent(x8) -> torch.Tensor:
    """0..16 ink values (N, 64) -> model-space latents (N, 4, 4, 4), dark ink on white."""
    pix = 1.0 - torch.as_tensor(x8, dtype=torch.float32).reshape(-1, 1, 8, 8) / 8.0
    return F.pixel_unshuffle(pix, 2)


def render(z: torch.Tensor) -> torch.Tensor:
    """Model-space latents -> the (N, 3, 32, 32) picture in [0, 1] the VAE decoder learns."""
    pix = F.interpolate(F.pixel_shuffle(z, 2), scale_factor=4, mode="bilinear", align_corners=False)
    return ((pix.clamp(-1, 1) + 1) / 2).expand(-1, 3, -1, -1)


def images_to_8x8(images) -> np.ndarray:
    """ComfyUI IMAGE (B, H, W, 3) in [0, 1] -> (B, 64) ink values 0..16, like load_digits."""
    img = torch.as_tensor(images, dtype=torch.float32).detach().movedim(-1, 1).mean(1, keepdim=True)
    small = F.adaptive_avg_pool2d(img, 8)
    return ((1.0 - small.clamp(0, 1)) * 16.0).reshape(len(img), 64).numpy()


@functools.lru_cache(maxsize=1)
def _classifier():
    """Logistic regression on the held-out digits, seen through the same 32 px round trip
    (render, then images_to_8x8) that sampled images go through. Never on training images."""
    from sklearn.linear_model import LogisticRegression

    _, _, x_held, y_held = digits_split()
    pictures = render(to_latent(x_held)).movedim(1, -1)
    return LogisticRegression(max_iter=5000, C=0.1, random_state=SEED).fit(images_to_8x8(pictures), y_held)


def classify_images(images) -> np.ndarray:
    """The digit (0-9) in each 32 px ComfyUI IMAGE, for quality measurements."""
    return _classifier().predict(images_to_8x8(images))


# ---- training ---------------------------------------------------------------------------

def _train_vae(z_train: torch.Tensor, log) -> torch.nn.Module:
    """TAESD-layout VAE whose decoder unfolds latents into 32 px pictures and whose encoder
    folds them back. vae_scale = 0.18215 makes its inner latent the model-space one."""
    import comfy.taesd.taesd

    vae = init_taesd(comfy.taesd.taesd.TAESD(latent_channels=4), seed=SEED + 2)
    gen = torch.Generator().manual_seed(SEED + 3)
    clock = _stopwatch()
    for part, (steps, batch, lr) in VAE_PARTS.items():
        net = getattr(vae, "taesd_" + part)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for step in range(steps):
            z = z_train[torch.randint(len(z_train), (batch,), generator=gen)]
            if part == "decoder":
                # Sampled latents are never exactly on the data: teach the decoder nearby ones too.
                z = z + torch.randn(z.shape, generator=gen) * torch.rand(batch, 1, 1, 1, generator=gen) * 0.3
                loss = F.mse_loss(net(z), render(z))
            else:
                loss = F.mse_loss(net(render(z)), z)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % 50 == 0 or step == steps - 1:
                log(f"  vae {part} step {step + 1}/{steps} loss {loss.item():.5f} ({clock()})")
    with torch.no_grad():
        vae.vae_scale.fill_(LATENT_SCALE)
        vae.vae_shift.fill_(0.0)
    return vae


def _encode_prompts(clip) -> torch.Tensor:
    """(11, 77, 768): the ten digit prompts and the empty one, through CLIPTextEncode itself,
    so training sees exactly the conditioning that sampling will."""
    import nodes

    texts = list(PROMPTS) + [NEGATIVE_PROMPT]
    return torch.cat([nodes.CLIPTextEncode().encode(clip, t)[0][0][0] for t in texts]).float()


def _train_unet(base_model, emb: torch.Tensor, z_train: torch.Tensor, y_train: torch.Tensor, log):
    """x0-prediction loss through ComfyUI's own BaseModel.apply_model at uniformly drawn
    timesteps of the model's discrete schedule; 10% of prompts replaced by the empty one."""
    unet = base_model.diffusion_model
    unet.requires_grad_(True)
    sigmas = base_model.model_sampling.sigmas.float()
    opt = torch.optim.AdamW(unet.parameters(), lr=UNET_LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * s / UNET_STEPS))))
    gen = torch.Generator().manual_seed(SEED + 4)
    clock = _stopwatch()
    for step in range(UNET_STEPS):
        idx = torch.randint(len(z_train), (UNET_BATCH,), generator=gen)
        x0, label = z_train[idx], y_train[idx].clone()
        label[torch.rand(UNET_BATCH, generator=gen) < DROPOUT] = 10  # the empty prompt
        sigma = sigmas[torch.randint(len(sigmas), (UNET_BATCH,), generator=gen)]
        noisy = x0 + torch.randn(x0.shape, generator=gen) * sigma[:, None, None, None]
        loss = F.mse_loss(base_model.apply_model(noisy, sigma, c_crossattn=emb[label]), x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == UNET_STEPS - 1:
            log(f"  unet step {step + 1}/{UNET_STEPS} loss {loss.item():.4f} ({clock()})")
    unet.requires_grad_(False)


def _stopwatch():
    """Wall and CPU time since now: on a shared machine CPU time / threads is the better
    guess at the time alone."""
    t0, c0 = time.time(), time.process_time()
    return lambda: f"{time.time() - t0:.0f} s wall, {time.process_time() - c0:.0f} s cpu"


def _threads() -> int:
    return int(os.environ.get("FEWSTEP_TRAIN_THREADS", len(os.sched_getaffinity(0))))


def build_teacher(path: Path, log=print) -> Path:
    """Train and write the teacher checkpoint to `path` (atomically). ~10 min on 2 cores."""
    rt.import_comfy_for_library_use()
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(_threads())
    # Callers may sit in inference mode (ComfyUI runs nodes that way); loaded weights must
    # be ordinary tensors for autograd, so everything from loading on runs outside it.
    try:
        with torch.inference_mode(False), torch.enable_grad():
            return _build(path, log)
    finally:
        torch.set_num_threads(prev_threads)


def _build(path: Path, log) -> Path:
    import comfy.sd
    from safetensors.torch import load_file

    t0, c0 = time.time(), time.process_time()
    torch.manual_seed(SEED)
    # Start from the tiny random SD1.5 checkpoint: its CLIP is kept byte for byte, so the
    # prompt embeddings learnt here are what CheckpointLoaderSimple + CLIPTextEncode give.
    start = tiny_sd15_checkpoint(SEED)
    model, clip = comfy.sd.load_checkpoint_guess_config(str(start), output_vae=False, output_clip=True)[:2]
    x_train, y_train, _, _ = digits_split()
    z_train, y_t = to_latent(x_train), torch.as_tensor(y_train)
    log(f"teacher {TEACHER_VERSION}: {len(y_t)} training digits, {_threads()} threads")
    emb = _encode_prompts(clip)
    vae = _train_vae(z_train, log)
    _train_unet(model.model, emb, z_train, y_t, log)
    seconds, cpu = time.time() - t0, time.process_time() - c0

    sd = {k: v for k, v in load_file(str(start)).items() if k.startswith("cond_stage_model.")}
    for k, v in model.model.diffusion_model.state_dict().items():
        sd["model.diffusion_model." + k] = v.detach().float().contiguous()
    for k, v in vae.state_dict().items():
        sd["first_stage_model." + k] = v.detach().float().contiguous()
    split = hashlib.sha256(np.ascontiguousarray(x_train).tobytes()).hexdigest()[:16]
    save_atomic(sd, path, metadata={
        "fewstep.teacher": TEACHER_VERSION, "fewstep.base": TINY_SD15_VERSION,
        "fewstep.train_seconds": f"{seconds:.0f}", "fewstep.train_cpu_seconds": f"{cpu:.0f}",
        "fewstep.train_threads": str(_threads()),
        "fewstep.train_split_sha256": split, "fewstep.settings": repr(TEACHER_SETTINGS)})
    log(f"teacher trained in {seconds:.0f} s ({cpu:.0f} s cpu on {_threads()} threads) -> {path}")
    return path


def teacher_path() -> Path:
    """Where the cached teacher lives (it may not be built yet)."""
    return cache_dir() / "models" / TEACHER_VERSION / f"{TEACHER_VERSION}.safetensors"


def teacher_checkpoint(log=print) -> Path:
    """Path of the cached teacher; trains it first if missing (one builder at a time)."""
    path = teacher_path()
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it right now
        if not path.exists():
            build_teacher(path, log)
    return path


# ---- sampling and measuring, the same way everywhere ------------------------------------

def load_teacher(path: Path | None = None):
    """(MODEL, CLIP, VAE) through ComfyUI's standard checkpoint loader."""
    rt.import_comfy_for_library_use()
    import comfy.sd

    path = path or teacher_checkpoint()
    return comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)[:3]


def sample_digits(model, clip, vae, digits, per_digit: int = 10, seed: int = 0, **overrides):
    """Decoded IMAGE batches (per_digit, 32, 32, 3), one per digit, drawn with ComfyUI's own
    KSampler path at TEACHER_SETTINGS (overridable, e.g. steps=4)."""
    import comfy.utils
    import nodes

    s = {**TEACHER_SETTINGS, **overrides}
    bar, comfy.utils.PROGRESS_BAR_ENABLED = comfy.utils.PROGRESS_BAR_ENABLED, False
    try:
        with torch.inference_mode():  # as in ComfyUI's prompt execution
            neg = nodes.CLIPTextEncode().encode(clip, NEGATIVE_PROMPT)[0]
            latent = nodes.EmptyLatentImage().generate(s["width"], s["height"], per_digit)[0]
            out = []
            for d in digits:
                pos = nodes.CLIPTextEncode().encode(clip, prompt_for(d))[0]
                samples = nodes.common_ksampler(model, seed + int(d), s["steps"], s["cfg"], s["sampler"],
                                                s["scheduler"], pos, neg, latent)[0]["samples"]
                out.append(vae.decode(samples))
            return out
    finally:
        comfy.utils.PROGRESS_BAR_ENABLED = bar


def evaluate(path: Path | None = None, per_digit: int = 10, seed: int = 0) -> dict:
    """Share of samples the held-out classifier reads as the prompted digit."""
    model, clip, vae = load_teacher(path)
    images = sample_digits(model, clip, vae, range(10), per_digit, seed)
    hits = [(classify_images(img) == d).mean() for d, img in enumerate(images)]
    return {"accuracy": float(np.mean(hits)), "per_digit": [float(h) for h in hits], "images": images}


def main(argv=None) -> None:
    """Build the teacher if needed; measure it when it was just built (or with --evaluate),
    so `make test` / `make demo` pay for the 100 samples only once."""
    import argparse

    parser = argparse.ArgumentParser(description="Build (once) and check FewStep's digits teacher.")
    parser.add_argument("--evaluate", action="store_true", help="measure accuracy even if it was cached")
    args = parser.parse_args(argv)
    t0 = time.time()
    cached = teacher_path().exists()
    path = teacher_checkpoint()
    print(f"teacher: {path} ({'cached' if cached else f'built in {time.time() - t0:.0f} s'})")
    if cached and not args.evaluate:
        return
    t0 = time.time()
    result = evaluate(path)
    print(f"accuracy {result['accuracy']:.2f} over 100 samples at {TEACHER_SETTINGS} "
          f"({time.time() - t0:.0f} s); per digit {result['per_digit']}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()

"""Quality on real denoising trajectories: the trained digits teacher (tools/teacher.py) at
its own settings (30 euler steps, cfg 5), 4 samples of every digit, seeds 100 + digit.

Measured here (teacher-digits-v2, ComfyUI 0.3.75, CPU): FewStep TeaCache at its default
threshold 0.1 skipped 17.6 of 30 calls per run (at least 16 in every run) at 50.3 dB
latent PSNR against the uncached run, every digit read the same as uncached; core
EasyCache at its defaults (0.2, start 0.15, end 0.95) skipped 15.7 at 37.9 dB. The
bounds below leave room for machine-level float noise, not for a worse algorithm.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_fewstep.fewstep.metrics import difference
from comfyui_fewstep.fewstep.caching.state import Settings
from comfyui_fewstep.fewstep.caching.hooks import apply_teacache

PER_DIGIT, SEED = 4, 100
MIN_SKIPPED, MIN_PSNR_DB = 15, 45.0  # at threshold 0.1, per run / over all samples


@pytest.fixture(scope="module")
def teacher(comfy):
    import comfy.utils

    from comfyui_fewstep.tools import teacher as t

    bar, comfy.utils.PROGRESS_BAR_ENABLED = comfy.utils.PROGRESS_BAR_ENABLED, False
    with torch.inference_mode(False):  # a first build trains it
        path = t.teacher_checkpoint()
    model, clip, vae = t.load_teacher(path)
    import nodes

    encode = nodes.CLIPTextEncode().encode
    conds = {d: encode(clip, t.prompt_for(d))[0] for d in range(10)}
    yield t, model, vae, conds, encode(clip, t.NEGATIVE_PROMPT)[0]
    comfy.utils.PROGRESS_BAR_ENABLED = bar


def draw(teacher, model):
    """(latents of all digits, classifier reads, UNet calls per run)."""
    import comfy.patcher_extension
    import nodes

    t, _, vae, conds, negative = teacher
    s = t.TEACHER_SETTINGS
    calls = []
    counted = model.clone()  # innermost counter: sees only the calls that reach the UNet
    counted.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_counter",
                                 lambda ex, *a, **k: calls.append(1) or ex(*a, **k))
    latent = nodes.EmptyLatentImage().generate(s["width"], s["height"], PER_DIGIT)[0]
    out = []
    with torch.inference_mode():
        for d in range(10):
            out.append(nodes.common_ksampler(counted, SEED + d, s["steps"], s["cfg"], s["sampler"], s["scheduler"],
                                             conds[d], negative, latent)[0]["samples"])
        latents = torch.cat(out)
        reads = np.asarray(t.classify_images(vae.decode(latents)))
    return latents, reads, len(calls) / 10


@pytest.fixture(scope="module")
def reference(teacher):
    return draw(teacher, teacher[1])


def test_default_threshold_skips_half_the_calls_and_keeps_every_digit(teacher, reference):
    ref_latents, ref_reads, ref_calls = reference
    assert ref_calls == 30 and (ref_reads == np.repeat(np.arange(10), PER_DIGIT)).mean() >= 0.9
    stats = []
    model = apply_teacache(teacher[1], Settings(0.1), "auto", "off", reporter=stats.append)
    latents, reads, calls = draw(teacher, model)
    assert len(stats) == 10 and min(s["skipped"] for s in stats) >= MIN_SKIPPED
    assert calls == pytest.approx(30 - np.mean([s["skipped"] for s in stats]))  # skipped calls never reach the UNet
    assert (reads == ref_reads).all(), "a cached run drew a different digit than the uncached one"
    assert difference(ref_latents, latents).psnr_db >= MIN_PSNR_DB


def test_skips_more_than_core_easycache_at_its_default_with_lower_error(teacher, reference):
    from comfy_extras.nodes_easycache import EasyCacheNode

    ref_latents, _, _ = reference
    easy = EasyCacheNode.execute(teacher[1], reuse_threshold=0.2, start_percent=0.15, end_percent=0.95,
                                 verbose=False).args[0]
    easy_latents, _, easy_calls = draw(teacher, easy)
    ours_latents, _, ours_calls = draw(teacher, apply_teacache(teacher[1], Settings(0.1), "auto", "off"))
    assert ours_calls <= easy_calls
    assert difference(ref_latents, ours_latents).psnr_db >= difference(ref_latents, easy_latents).psnr_db + 6.0

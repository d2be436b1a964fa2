"""The trained digits teacher meets its bar through ComfyUI's own loader, sampler and VAE:
100 samples at the teacher's settings are read as the prompted digit at least 80% of the
time by a classifier that never saw a training image, and the pictures are real pictures."""

import numpy as np
import pytest
import torch

from comfyui_fewstep.tools import teacher as T


PER_DIGIT = 5


@pytest.fixture(scope="module")
def drawn(teacher, teacher_path):
    """Five samples of every digit, seed 0 + digit, as the benchmark draws them."""
    return T.evaluate(teacher_path, per_digit=PER_DIGIT, seed=0)


def test_checkpoint_is_detected_as_sd15_with_a_taesd_vae(teacher, teacher_path):
    import comfy.supported_models
    import comfy.taesd.taesd
    from safetensors import safe_open

    model, clip, vae = teacher
    assert isinstance(model.model.model_config, comfy.supported_models.SD15)
    assert isinstance(vae.first_stage_model, comfy.taesd.taesd.TAESD)
    with safe_open(str(teacher_path), "pt") as f:
        assert f.metadata()["fewstep.teacher"] == T.TEACHER_VERSION


def test_classifier_reads_unseen_digits_through_the_32px_round_trip():
    # Fitted on the held-out split only; the training split is unseen data for it.
    x_train, y_train, _, _ = T.digits_split()
    pictures = T.render(T.to_latent(x_train)).movedim(1, -1)
    assert (T.classify_images(pictures) == y_train).mean() >= 0.9


def test_vae_decodes_latents_to_digits_and_encodes_them_back(teacher):
    _, _, vae = teacher
    x_train, y_train, x_held, _ = T.digits_split()
    z_held = T.to_latent(x_held[:200])  # digits the VAE never saw
    with torch.inference_mode():
        images = vae.decode(z_held / T.LATENT_SCALE)  # VAE space, as VAEDecode receives it
        assert images.shape == (200, 32, 32, 3)
        pixel_err = (images - T.render(z_held).movedim(1, -1)).abs().mean()
        back = vae.encode(images) * T.LATENT_SCALE
        # Digits the classifier never saw, through VAEDecode, and through VAEEncode + VAEDecode.
        decoded = vae.decode(T.to_latent(x_train[:200]) / T.LATENT_SCALE)
        round_trip = vae.decode(vae.encode(decoded))
    assert pixel_err < 0.06, f"decoded pictures are {pixel_err:.3f} off the 32 px digits"
    err = (back - z_held).abs().mean() / z_held.abs().mean()
    assert err < 0.2, f"encode(decode(z)) is {err:.0%} off z"
    assert (T.classify_images(decoded) == y_train[:200]).mean() >= 0.88
    assert (T.classify_images(round_trip) == y_train[:200]).mean() >= 0.85


def test_samples_show_the_prompted_digit(drawn):
    acc = drawn["accuracy"]
    print(f"teacher {T.TEACHER_VERSION}: {acc:.0%} of {10 * PER_DIGIT} samples read as the prompted digit; "
          f"per digit {drawn['per_digit']}")
    assert acc >= 0.8


def test_samples_are_not_degenerate(drawn):
    images = torch.cat(drawn["images"])
    assert images.shape == (10 * PER_DIGIT, 32, 32, 3)
    # Each picture has ink on paper, not a flat field.
    assert images.flatten(1).std(dim=1).min() > 0.1
    # Samples of one prompt differ from each other (not one memorised picture)...
    per_digit = torch.stack(drawn["images"])  # (10 digits, PER_DIGIT samples, ...)
    assert (per_digit - per_digit.mean(1, keepdim=True)).abs().mean() > 0.02
    # ...and the average pictures of different prompts differ.
    means = per_digit.mean(1).flatten(1)
    gaps = torch.cdist(means, means)[~torch.eye(10, dtype=bool)]
    assert gaps.min() > 0.1 * means.norm(dim=1).mean()


def test_the_prompt_alone_changes_the_picture(teacher):
    """Same noise, different prompts: the conditioning, not the seed, picks the digit."""
    import nodes

    model, clip, vae = teacher
    s = T.TEACHER_SETTINGS
    latent = nodes.EmptyLatentImage().generate(s["width"], s["height"], 4)[0]
    with torch.inference_mode():
        neg = nodes.CLIPTextEncode().encode(clip, T.NEGATIVE_PROMPT)[0]
        out = {}
        for d in (1, 7):
            pos = nodes.CLIPTextEncode().encode(clip, T.prompt_for(d))[0]
            samples = nodes.common_ksampler(model, 123, s["steps"], s["cfg"], s["sampler"], s["scheduler"],
                                            pos, neg, latent)[0]["samples"]
            out[d] = vae.decode(samples)
    assert (out[1] - out[7]).abs().mean() > 0.05
    assert np.mean(T.classify_images(out[7]) == 7) > np.mean(T.classify_images(out[1]) == 7)

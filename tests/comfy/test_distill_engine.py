"""The distillation engine in-process on the tiny SD1.5 model: the student sampler is
KSampler's euler/lcm, resume is exact, training leaves the rest of the graph alone, the
saved file loads in core LoraLoader and FewStepLoraLoader, bad settings fail early."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pytest
import torch

from comfyui_fewstep.trainers.config import DistillConfig, DistillConfigError
from comfyui_fewstep.trainers.distill import Callbacks, DistillDiverged, train
from comfyui_fewstep.trainers.files import DistillFileError

SMALL = dict(width=32, height=32, teacher_steps=6, teacher_cfg=4.0, student_steps=2, samples_per_prompt=2,
             iterations=4, batch_size=2, rank=2, alpha=2.0, save_every=0, learning_rate=1e-3, target="attention")


def config(**overrides) -> DistillConfig:
    return DistillConfig.from_text("a red square\na blue circle", **{**SMALL, **overrides})


def run(tiny_sd15, folder, cfg, callbacks=None):
    model, clip, _ = tiny_sd15
    with torch.inference_mode():  # as inside a ComfyUI prompt: every input is an inference tensor
        return train(cfg, model, clip, folder, callbacks)


@pytest.fixture(scope="module")
def trained(tiny_sd15, lora_dirs):
    return run(tiny_sd15, lora_dirs.loras, config(lora_name="trained"))


def ksample(model, conds, sampler, seed=5, steps=2, cfg=1.0, latent=None):
    import nodes

    latent = {"samples": torch.zeros(2, 4, 4, 4) if latent is None else latent}
    return nodes.common_ksampler(model, seed, steps, cfg, sampler, "sgm_uniform", conds[0], conds[1], latent)[0]["samples"]


@pytest.mark.parametrize("sampler", ["euler", "lcm"])
def test_student_sampler_is_ksamplers_sampler_bit_for_bit(tiny_sd15, sampler):
    import comfy.sample
    import comfy.samplers
    import nodes

    from comfyui_fewstep.trainers.student import StudentSampler

    model, clip, _ = tiny_sd15
    conds = nodes.CLIPTextEncode().encode(clip, "seven")[0], nodes.CLIPTextEncode().encode(clip, "")[0]
    latent = torch.zeros(2, 4, 4, 4)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "sgm_uniform", 2)
    noise = comfy.sample.prepare_noise(latent, 5)
    ours = comfy.sample.sample_custom(model, noise, 1.0, StudentSampler(sampler, checkpoint=False), sigmas, conds[0],
                                      conds[1], latent, seed=5)
    assert torch.equal(ours, ksample(model, conds, sampler))


def test_saved_lora_loads_every_key_in_core_loraloader(trained, tiny_sd15, lora_dirs, caplog):
    import comfy.sd
    import comfy.utils

    lora = comfy.utils.load_torch_file(str(trained.lora_path), safe_load=True)
    assert all(k.startswith("lora_unet_") for k in lora)
    with caplog.at_level(logging.WARNING):
        patched, _ = comfy.sd.load_lora_for_models(tiny_sd15[0], None, lora, 1.0, 0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    trained_modules = {k.rsplit(".lora_up", 1)[0] for k in lora if ".lora_up." in k}
    added = set(patched.patches) - set(tiny_sd15[0].patches)
    assert len(added) == len(trained_modules) > 0


def test_the_model_output_is_the_saved_file_and_reproduces_the_trained_student(trained, tiny_sd15):
    """The trainer's MODEL is the base with the saved file patched in, exactly as core
    LoraLoader applies it (not the training clone's weight wrappers), and that file
    reproduces what training measured: the held-out result of the wrapped student."""
    import comfy.sd
    import comfy.utils
    import nodes

    from comfyui_fewstep.trainers import plan

    lora = comfy.utils.load_torch_file(str(trained.lora_path), safe_load=True)
    loaded, _ = comfy.sd.load_lora_for_models(tiny_sd15[0], None, lora, 1.0, 0)
    # no training wrappers left: they rebuild W + dW on every call (3x slower on the teacher)
    assert trained.model.weight_wrapper_patches == tiny_sd15[0].weight_wrapper_patches
    assert set(trained.model.patches) == set(loaded.patches)
    encode = nodes.CLIPTextEncode().encode
    held = [s for s in plan.samples(config(lora_name="trained")) if s.heldout][0]
    conds = encode(tiny_sd15[1], held.prompt)[0], encode(tiny_sd15[1], "")[0]
    one = torch.zeros(1, 4, 4, 4)
    a = ksample(trained.model, conds, "euler", seed=held.seed, latent=one)
    assert torch.equal(a, ksample(loaded, conds, "euler", seed=held.seed, latent=one))
    assert not torch.equal(ksample(tiny_sd15[0], conds, "euler", seed=held.seed, latent=one), a)  # training changed it
    # training applied fp32 adapters as weight wrappers, the file is baked in: a few ulps of the output
    assert (a - trained.heldout_after[:1]).abs().max().item() <= 1e-4 * a.abs().max().item()


def test_fewsteploraloader_recognises_the_file_by_metadata_even_renamed(trained, pack_nodes, tiny_sd15, lora_dirs):
    renamed = lora_dirs.loras / "model.safetensors"
    renamed.write_bytes(trained.lora_path.read_bytes())
    out = pack_nodes["FewStepLoraLoader"].execute(tiny_sd15[0], "model.safetensors", 1.0, 1.0, "auto", -1,
                                                  clip=tiny_sd15[1]).args
    steps, cfg, sampler, scheduler, info = out[2], out[3], out[4], out[5], out[6]
    assert (steps, cfg, sampler, scheduler) == (2, 1.0, "euler", "sgm_uniform")
    assert "FewStep Distill" in info and "metadata" in info


def test_another_branch_of_the_graph_is_unchanged_by_training(tiny_sd15, lora_dirs):
    import nodes

    model, clip, _ = tiny_sd15
    conds = nodes.CLIPTextEncode().encode(clip, "a blue circle")[0], nodes.CLIPTextEncode().encode(clip, "")[0]
    before = ksample(model, conds, "euler", steps=6, cfg=4.0)
    result = run(tiny_sd15, lora_dirs.loras, config(lora_name="branch"))
    ksample(result.model, conds, "euler")  # the student runs (and loads) in between
    assert torch.equal(ksample(model, conds, "euler", steps=6, cfg=4.0), before)


class _StopAt:
    """check_interrupt that presses ComfyUI's Cancel before iteration `at` + 1."""

    def __init__(self, at):
        self.at, self.calls = at, 0

    def __call__(self):
        import comfy.model_management

        self.calls += 1
        if self.calls == self.at + 1:
            raise comfy.model_management.InterruptProcessingException()


def test_interrupt_saves_once_and_resume_is_bit_identical(tiny_sd15, lora_dirs):
    import comfy.model_management
    import comfy.utils

    full = run(tiny_sd15, lora_dirs.loras, config(lora_name="full", lr_schedule="cosine_warmup", target="attention+mlp",
                                                  student_sampler="lcm"))
    cfg = config(lora_name="cut", lr_schedule="cosine_warmup", target="attention+mlp", student_sampler="lcm")
    stop = _StopAt(2)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        run(tiny_sd15, lora_dirs.loras, cfg, Callbacks(check_interrupt=stop))
    saved = sorted(p.name for p in lora_dirs.loras.glob("cut_*"))
    assert saved == ["cut_00001.distill", "cut_00001_it000002.safetensors"]
    resumed = run(tiny_sd15, lora_dirs.loras, dataclasses.replace(cfg, resume="cut_00001.distill"))
    assert resumed.lora_path.name == "cut_00002.safetensors"  # a new name: nothing overwritten
    assert resumed.losses[:2] == full.losses[:2] and resumed.losses == full.losses
    a = comfy.utils.load_torch_file(str(full.lora_path))
    b = comfy.utils.load_torch_file(str(resumed.lora_path))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_settings_and_missing_files(tiny_sd15, lora_dirs, trained):
    resume = trained.resume_path.name
    with pytest.raises(DistillConfigError, match="rank"):
        run(tiny_sd15, lora_dirs.loras, config(rank=3, resume=resume))
    with pytest.raises(DistillFileError, match="does not exist"):
        run(tiny_sd15, lora_dirs.loras, config(resume="nothing_here.distill"))
    with pytest.raises(DistillFileError, match="plain file name"):
        run(tiny_sd15, lora_dirs.loras, config(resume="../../etc/passwd"))


def test_resume_refuses_a_file_trained_on_another_architecture(tiny_sd15, lora_dirs, trained):
    import json

    from safetensors import safe_open

    from comfyui_fewstep.trainers.files import RESUME_KEY, load_resume, save_resume

    tensors, state = load_resume(trained.resume_path)
    save_resume(lora_dirs.loras / "sdxl_run.distill", tensors, {**state, "base": "sdxl"})
    with safe_open(str(lora_dirs.loras / "sdxl_run.distill"), "pt") as f:
        assert json.loads(f.metadata()[RESUME_KEY])["base"] == "sdxl"
    with pytest.raises(DistillConfigError, match="trained on sdxl"):
        run(tiny_sd15, lora_dirs.loras, config(resume="sdxl_run.distill"))


def test_an_unwritable_lora_folder_fails_before_training_and_leaves_nothing(tiny_sd15, tmp_path):
    folder = tmp_path / "loras"
    folder.mkdir()
    os.chmod(folder, 0o555)
    try:
        if os.access(folder, os.W_OK):  # root ignores modes: /proc refuses new files to everyone
            folder = Path("/proc/self/fewstep-loras")
        with pytest.raises(DistillConfigError, match="cannot write"):
            run(tiny_sd15, folder, config())
        assert not folder.exists() or list(folder.iterdir()) == []
    finally:
        os.chmod(tmp_path / "loras", 0o755)


def test_a_failed_disk_write_leaves_no_partial_file(tmp_path):
    from comfyui_fewstep.trainers.files import save_tensors

    target = tmp_path / "gone" / "x.safetensors"  # the folder vanished mid-run
    with pytest.raises(DistillFileError, match="cannot write"):
        save_tensors(target, {"a": torch.zeros(2)}, {})
    assert not target.exists() and not list(tmp_path.glob("**/*.partial"))


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tiny_sd15, lora_dirs):
    """Two good iterations, then a resume at lr 1e30: its first step overflows the weights."""
    good = run(tiny_sd15, lora_dirs.loras, config(lora_name="diverge", iterations=2, save_every=1))
    resume_bytes = good.resume_path.read_bytes()
    cfg = config(lora_name="diverge", iterations=6, save_every=1, learning_rate=1e30, resume=good.resume_path.name)
    with pytest.raises(DistillDiverged, match="iteration 3.*NaN/Inf.*Lower learning_rate"):
        run(tiny_sd15, lora_dirs.loras, cfg)
    assert sorted(p.name for p in lora_dirs.loras.glob("diverge_*")) == [
        "diverge_00001.distill", "diverge_00001.safetensors", "diverge_00001_it000001.safetensors"]
    assert good.resume_path.read_bytes() == resume_bytes


def test_bad_settings_fail_before_any_work(tiny_sd15, lora_dirs):
    with pytest.raises(DistillConfigError) as e:
        run(tiny_sd15, lora_dirs.loras, config(student_steps=6, width=30, rank=0, learning_rate=0, lora_name="../x"))
    message = str(e.value)
    for part in ("student_steps", "width 30", "rank 0", "learning_rate", "lora_name"):
        assert part in message
    assert not list(lora_dirs.loras.glob("x*"))


@pytest.mark.parametrize("adapter", ["loha", "lokr", "oft"])
def test_other_adapters_train_and_load_in_core_loraloader(tiny_sd15, lora_dirs, adapter, caplog):
    import comfy.sd
    import comfy.utils

    result = run(tiny_sd15, lora_dirs.loras, config(lora_name=f"adapter_{adapter}", adapter=adapter, iterations=1))
    lora = comfy.utils.load_torch_file(str(result.lora_path), safe_load=True)
    with caplog.at_level(logging.WARNING):
        patched, _ = comfy.sd.load_lora_for_models(tiny_sd15[0], None, lora, 1.0, 0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    assert len(set(patched.patches) - set(tiny_sd15[0].patches)) == len(result_modules(lora))


def result_modules(lora: dict) -> set[str]:
    return {k.rsplit(".", 1)[0] for k in lora if k.endswith(".alpha")}


def test_a_short_run_on_the_digits_teacher_beats_the_untrained_student_on_held_out_seeds(teacher, lora_dirs):
    """40 iterations on two digits. The untrained model at 2 steps and cfg 1 lands ~19 dB
    from the teacher's 30-step cfg-5 result (the cfg gap alone); the full recipe reaches
    ~38 dB at 4 steps. Half the distance in dB (+6) after 40 iterations leaves a wide margin
    on either side, on any float type."""
    from comfyui_fewstep.tools import teacher as digits

    model, clip, _ = teacher
    cfg = DistillConfig(prompts=(digits.prompt_for(3), digits.prompt_for(7)), width=32, height=32,
                        teacher_steps=digits.TEACHER_SETTINGS["steps"], teacher_cfg=digits.TEACHER_SETTINGS["cfg"],
                        student_steps=2, samples_per_prompt=6, heldout_per_prompt=2, iterations=40, batch_size=6,
                        rank=8, alpha=8.0, learning_rate=2e-3, save_every=0, gradient_checkpointing=False,
                        lora_name="digits")
    with torch.inference_mode():
        result = train(cfg, model, clip, lora_dirs.loras)
    (_, before), (_, after) = result.heldout[0], result.heldout[-1]
    assert after > before + 6.0, result.report

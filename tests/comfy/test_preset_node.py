"""FewStepPreset on the tiny SD1.5 model (and tiny Qwen-Image / Wan models for the flow
presets): its outputs drive ComfyUI's own KSampler and SamplerCustom, patches land on a
clone only and match the core nodes, custom schedules are exact, each preset's `info`
says which path to wire and why, and bad step counts fail clearly."""

import math
from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(scope="module")
def node(pack_nodes):
    return pack_nodes["FewStepPreset"]


def run(node, model, preset, steps=-1):
    out = node.execute(model, preset, steps).args
    assert len(out) == 8
    return SimpleNamespace(zip=out, model=out[0], steps=out[1], cfg=out[2], sampler=out[3], scheduler=out[4],
                           info=out[5], sigmas=out[6], guidance=out[7])


def empty_latent():
    import nodes

    return nodes.EmptyLatentImage().generate(64, 64, 1)[0]


@pytest.fixture(scope="module")
def qwen(comfy):
    """Tiny Qwen-Image (ComfyUI's QwenImage config: ModelSamplingFlux, as the real model)."""
    from comfyui_fewstep.tools import tiny_families as tf

    return tf.build("qwen_image")


def recording_sigmas(model):
    """A clone whose diffusion model only records the sigma of each call (flow models with
    multiplier 1 get timestep = sigma) and predicts 0: the schedule without the compute."""
    seen = []

    def recorder(apply_model, args):
        seen.append(float(args["timestep"].flatten()[0]))
        return torch.zeros_like(args["input"])

    m = model.clone()
    m.set_model_unet_function_wrapper(recorder)
    return m, seen


def qwen_latent(size):
    return {"samples": torch.zeros(1, 16, 1, size // 8, size // 8)}  # a size x size image's 5-D Qwen latent


def ksample(o, conds, seed=5):
    import nodes

    return nodes.common_ksampler(o.model, seed, o.steps, o.cfg, o.sampler, o.scheduler, *conds, empty_latent())[0]["samples"]


def test_outputs_are_the_published_contract_and_link_into_ksampler(node):
    import comfy.samplers

    info = node.GET_NODE_INFO_V1()
    assert info["category"] == "FewStep/presets"
    assert list(info["input"]["required"]) == ["model", "preset", "steps"]
    assert info["output_name"] == ["MODEL", "steps", "cfg", "sampler_name", "scheduler", "info", "sigmas", "guidance"]
    assert info["output"][:3] == ["MODEL", "INT", "FLOAT"] and info["output"][5:] == ["STRING", "SIGMAS", "FLOAT"]
    # KSampler accepts a link only if the option lists are equal (execution's validate_node_input).
    from comfy_execution.validation import validate_node_input

    ksampler_inputs = __import__("nodes").KSampler.INPUT_TYPES()["required"]
    assert validate_node_input(info["output"][3], ksampler_inputs["sampler_name"][0])
    assert validate_node_input(info["output"][4], ksampler_inputs["scheduler"][0])
    assert "tcd" in info["output"][3] and info["output"][3] == comfy.samplers.KSampler.SAMPLERS
    assert all(t for t in info["output_tooltips"])
    assert set(info["input"]["required"]["preset"][1]["options"]) >= {"lcm-lora", "dmd2-sdxl-1step-unet", "wan21-lightx2v-4step"}


def test_lcm_patch_is_on_the_clone_and_samples_like_core_model_sampling_discrete(node, tiny_sd15, conds):
    import comfy.model_sampling
    from comfy_extras.nodes_model_advanced import LCM, ModelSamplingDiscrete

    model = tiny_sd15[0]
    before = model.get_model_object("model_sampling")
    o = run(node, model, "lcm-lora")
    assert (o.steps, o.cfg, o.sampler, o.scheduler, o.guidance) == (4, 1.0, "lcm", "sgm_uniform", 0.0)
    assert o.model is not model
    assert isinstance(o.model.get_model_object("model_sampling"), LCM)
    assert model.get_model_object("model_sampling") is before and not isinstance(before, LCM)
    assert "model_sampling" not in model.object_patches
    assert isinstance(before, comfy.model_sampling.EPS)

    ours = ksample(o, conds)
    core_model = ModelSamplingDiscrete().patch(model, "lcm", False)[0]
    core = ksample(SimpleNamespace(model=core_model, steps=4, cfg=1.0, sampler="lcm", scheduler="sgm_uniform"), conds)
    assert torch.equal(ours, core)
    plain = ksample(SimpleNamespace(model=model, steps=4, cfg=1.0, sampler="lcm", scheduler="sgm_uniform"), conds)
    assert not torch.equal(ours, plain)  # the patch changes sampling
    assert torch.isfinite(ours).all()
    assert torch.equal(o.sigmas, __import__("comfy.samplers").samplers.calculate_sigmas(o.model.get_model_object("model_sampling"), "sgm_uniform", 4).float())


def test_dmd2_one_step_runs_at_t399_on_pure_noise(node, tiny_sd15, conds):
    import comfy.sample
    from comfy_extras.nodes_custom_sampler import KSamplerSelect, SamplerCustom

    model = tiny_sd15[0]
    o = run(node, model, "dmd2-sdxl-1step-unet")
    sampling = model.get_model_object("model_sampling")
    sigma_399 = sampling.sigma(torch.tensor([399.0]))
    torch.testing.assert_close(o.sigmas, torch.cat([sigma_399, torch.zeros(1)]))
    assert int(sampling.timestep(o.sigmas[:1])) == 399
    assert ("Recommended: connect `sigmas` to SamplerCustom (sampler: KSamplerSelect 'lcm'): it runs the preset's "
            "timesteps 399; KSampler's 'sgm_uniform' would run timesteps 999") in o.info
    assert "not sdxl" in o.info  # the tiny model is SD1.5: a warning, not a failure

    lcm = KSamplerSelect.execute("lcm").args[0]
    seed = 11
    latent = empty_latent()
    ours = SamplerCustom.execute(o.model, True, seed, 1.0, *conds, lcm, o.sigmas, latent).args[0]["samples"]
    # By hand: hand the UNet the seed's unit noise n directly (no add_noise, latent already
    # in sigma space: n * sqrt(1 + sigma^2), which calculate_input divides back to n).
    n = comfy.sample.prepare_noise(latent["samples"], seed)
    scale = model.model.latent_format.scale_factor
    start = {"samples": n * (1 + sigma_399**2).sqrt() / scale}
    by_hand = SamplerCustom.execute(model, False, seed, 1.0, *conds, lcm, o.sigmas, start).args[0]["samples"]
    torch.testing.assert_close(ours, by_hand, rtol=1e-4, atol=1e-4)
    unpatched = SamplerCustom.execute(model, True, seed, 1.0, *conds, lcm, o.sigmas, latent).args[0]["samples"]
    assert (unpatched - ours).abs().mean() > 1e-2 * ours.abs().mean()


def test_dmd2_four_step_sigmas_are_the_training_timesteps(node, tiny_sd15):
    import comfy.samplers

    model = tiny_sd15[0]
    o = run(node, model, "dmd2-sdxl-4step")
    sampling = model.get_model_object("model_sampling")
    torch.testing.assert_close(o.sigmas[:-1], sampling.sigma(torch.tensor([999.0, 749.0, 499.0, 249.0])))
    assert o.sigmas[-1] == 0
    approx = comfy.samplers.calculate_sigmas(sampling, o.scheduler, o.steps)
    torch.testing.assert_close(o.sigmas, approx.float(), rtol=5e-3, atol=0)  # what KSampler would use: close, not equal
    assert not torch.equal(o.sigmas, approx.float())


def test_turbo_sigmas_equal_core_sd_turbo_scheduler_and_are_recommended_above_one_step(node, tiny_sd15):
    from comfy_extras.nodes_custom_sampler import SDTurboScheduler

    model = tiny_sd15[0]
    for steps in (1, 2, 3, 4):
        o = run(node, model, "sd-turbo", steps)
        core = SDTurboScheduler.execute(model, steps, 1.0).args[0]
        torch.testing.assert_close(o.sigmas, core.float())
        assert o.sampler == "euler_ancestral" and o.steps == steps
        assert ("Recommended: connect `sigmas`" in o.info) == (steps > 1)
    # Above one step KSampler's sgm_uniform runs diffusers' trailing spacing, not Stability's 999/899/...
    assert "KSampler's 'sgm_uniform' would run timesteps 999, 749, 500, 250" in o.info
    assert "KSampler's 'sgm_uniform' runs the same timesteps" in run(node, model, "sd-turbo", 1).info


def test_x0_patch_for_lightning_one_step(node, tiny_sd15, conds):
    import comfy.model_sampling

    o = run(node, tiny_sd15[0], "sdxl-lightning-1step")
    assert isinstance(o.model.get_model_object("model_sampling"), comfy.model_sampling.X0)
    assert not isinstance(tiny_sd15[0].get_model_object("model_sampling"), comfy.model_sampling.X0)
    assert torch.isfinite(ksample(o, conds)).all()


def test_tcd_preset_carries_its_eta_to_ksamplers_tcd(node, tiny_sd15, conds, pack_nodes):
    from comfy_extras.nodes_custom_sampler import BasicScheduler, SamplerCustom

    from comfyui_fewstep.fewstep.sampling.tcd import ETA_OPTION

    model = tiny_sd15[0]
    o = run(node, model, "hyper-sd-1step-unified-tcd", 4)
    assert (o.sampler, o.scheduler) == ("tcd", "simple")
    assert o.model.model_options["transformer_options"][ETA_OPTION] == 1.0
    assert ETA_OPTION not in model.model_options.get("transformer_options", {})
    via_ksampler = ksample(o, conds)
    sampler = pack_nodes["FewStepTCDSampler"].execute(1.0).args[0]
    sigmas = BasicScheduler.execute(o.model, "simple", 4, 1.0).args[0]
    via_custom = SamplerCustom.execute(o.model, True, 5, 1.0, *conds, sampler, sigmas, empty_latent()).args[0]["samples"]
    assert torch.equal(via_ksampler, via_custom)
    assert "FewStep TCD Sampler (eta 1)" in o.info
    # The sigmas output is diffusers' TCDScheduler schedule; KSampler's 'simple' stays the default.
    sampling = model.get_model_object("model_sampling")
    torch.testing.assert_close(o.sigmas[:-1], sampling.sigma(torch.tensor([999.0, 759.0, 499.0, 259.0])))
    assert ("`sigmas` runs the preset's timesteps 999, 759, 499, 259 exactly with SamplerCustom (sampler: KSamplerSelect "
            "'tcd'); KSampler's 'simple' would run timesteps 999, 749, 499, 249; KSampler's outputs are the default.") in o.info


def test_flux_guidance_and_info_wiring(node, tiny_sd15):
    o = run(node, tiny_sd15[0], "hyper-flux-dev", 16)
    assert (o.steps, o.cfg, o.guidance) == (16, 1.0, 3.5)
    assert "connect `guidance` to FluxGuidance" in o.info
    assert "https://huggingface.co/ByteDance/Hyper-SD" in o.info
    assert "LoRA strength 0.125" in o.info


def test_pack_chosen_samplers_and_warnings_are_said_in_info(node, tiny_sd15):
    pack_line = "Sampler and scheduler (lcm / sgm_uniform) are FewStep's choice: the source names none."
    assert pack_line in run(node, tiny_sd15[0], "dmd2-sdxl-pixai-8step-cfg1.6").info
    assert "FewStep's choice" not in run(node, tiny_sd15[0], "dmd2-sdxl-4step").info  # the README names lcm


def test_qwen_lightning_applies_on_qwen_images_own_sampling_and_warns_about_the_fp8_base(node, qwen):
    from comfy_extras.nodes_model_advanced import ModelSamplingAuraFlow

    assert type(qwen.model.get_model_object("model_sampling")).__mro__[1].__name__ == "ModelSamplingFlux"
    o = run(node, qwen.model, "qwen-image-lightning", 4)
    core = ModelSamplingAuraFlow().patch_aura(qwen.model, 3.0)[0]
    expected = __import__("comfy.samplers").samplers.calculate_sigmas(core.get_model_object("model_sampling"), "simple", 4)
    torch.testing.assert_close(o.sigmas, expected.float())
    warning = next(line for line in o.info.splitlines() if line.startswith("Warning: "))
    assert "qwen_image_fp8_e4m3fn" in warning and "grid artifacts" in warning
    assert "Qwen-Image-fp8-e4m3fn-Lightning-4steps-V1.0" in warning and "qwen_image_fp8_e4m3fn_scaled" in warning


@pytest.mark.parametrize("size", [1024, 1328])
def test_qwen_distill_samples_diffsynths_shift_for_the_latents_size(node, qwen, size):
    import nodes
    from comfy_extras.nodes_custom_sampler import KSamplerSelect, SamplerCustom
    from comfy_extras.nodes_model_advanced import ModelSamplingFlux

    o = run(node, qwen.model, "qwen-image-distill-lora")
    assert (o.steps, o.cfg, o.sampler, o.scheduler) == (15, 1.0, "euler", "simple")
    conds = (qwen.positive, qwen.negative)
    m, seen = recording_sigmas(o.model)
    nodes.common_ksampler(m, 1, o.steps, o.cfg, o.sampler, o.scheduler, *conds, qwen_latent(size))
    # DiffSynth's set_timesteps_qwen_image before its terminal stretch: linspace(1, 0, 16)[:-1]
    # shifted by exp(mu), mu = 0.5 + (tokens - 256) * 0.4 / 7936, tokens = (size // 16) ** 2.
    mu = 0.5 + ((size // 16) ** 2 - 256) * 0.4 / 7936
    t = torch.linspace(1, 0, 16, dtype=torch.float64)[:-1]
    diffsynth = math.exp(mu) / (math.exp(mu) + 1 / t - 1)
    # ComfyUI's 'simple' picks t from a 1000-step table, within 1e-3 of linspace; d sigma / dt
    # <= shift <= 2.31 on [0, 1], so the sigmas agree to 2.31e-3 on any device and dtype.
    torch.testing.assert_close(torch.tensor(seen, dtype=torch.float64), diffsynth, atol=2.5e-3, rtol=0)

    # The same schedule as core ModelSamplingFlux wired by hand at this size (same bound:
    # its table has 10000 steps).
    core = ModelSamplingFlux().patch(qwen.model, 0.5 + 3840 * 0.4 / 7936, 0.5, size, size)[0]
    mc, seen_core = recording_sigmas(core)
    nodes.common_ksampler(mc, 1, o.steps, o.cfg, o.sampler, o.scheduler, *conds, qwen_latent(size))
    torch.testing.assert_close(torch.tensor(seen), torch.tensor(seen_core), atol=2.5e-3, rtol=0)

    # The preset's `sigmas` into SamplerCustom with this MODEL is re-shifted the same way.
    ms, seen_custom = recording_sigmas(o.model)
    euler = KSamplerSelect.execute("euler").args[0]
    SamplerCustom.execute(ms, True, 1, 1.0, *conds, euler, o.sigmas, qwen_latent(size))
    assert seen_custom == seen
    # The input model keeps ComfyUI's own sampling and gets no wrapper.
    from comfyui_fewstep.fewstep.presets.patches import RESOLUTION_SHIFT_KEY

    assert qwen.model.get_wrappers(__import__("comfy.patcher_extension").patcher_extension.WrappersMP.OUTER_SAMPLE,
                                   RESOLUTION_SHIFT_KEY) == []
    assert "1024x1024 -> 2.00, 1328x1328 -> 2.30" in o.info
    assert "last step starts at sigma 0.02" in o.info and "FewStep does not stretch" in o.info


def test_wan_lightx2v_runs_lightx2vs_timesteps_and_names_both_samplers(node, comfy):
    """LightX2V's 4-step distill: denoising_step_list 1000/750/500/250 shifted by 5 (its
    WanStepDistillScheduler) is exactly the preset's simple schedule at shift 5."""
    from comfyui_fewstep.tools import tiny_families as tf

    o = run(node, tf.build_model("wan21"), "wan21-lightx2v-4step")
    t = torch.tensor([1.0, 0.75, 0.5, 0.25])
    torch.testing.assert_close(o.sigmas[:-1], 5 * t / (1 + 4 * t))
    assert o.sigmas[-1] == 0 and (o.steps, o.cfg, o.sampler) == (4, 1.0, "lcm")
    assert "still say the LCM scheduler" in o.info and "deterministic Euler step since late 2025" in o.info
    assert "configs/distill/wan21/wan_t2v_distill_lora_4step_cfg.json" in o.info


@pytest.mark.parametrize("steps", [0, 3, 5, 101])
def test_unsupported_step_counts_fail_clearly(node, tiny_sd15, steps):
    from comfyui_fewstep.fewstep.presets.registry import PresetError

    with pytest.raises(PresetError, match=r"preset 'sdxl-lightning'.*allowed step counts are 2, 4, 8"):
        node.execute(tiny_sd15[0], "sdxl-lightning", steps)
    msg = node.validate_inputs(preset="sdxl-lightning", steps=steps)
    assert isinstance(msg, str) and "allowed step counts are 2, 4, 8" in msg


def test_validation_accepts_good_inputs_and_refuses_unknown_presets(node):
    assert node.validate_inputs(preset="sdxl-lightning", steps=-1) is True
    assert node.validate_inputs(preset="sdxl-lightning", steps=8) is True
    assert node.validate_inputs(preset="sdxl-lightning") is True  # steps linked from another node
    assert "unknown preset 'nope'" in node.validate_inputs(preset="nope", steps=-1)
    assert "allowed step counts are 2, 4, 8" in node.validate_inputs(preset="hyper-sd-nstep", steps=1)


def test_a_step_override_changes_steps_and_sigmas(node, tiny_sd15):
    o = run(node, tiny_sd15[0], "lcm-lora", 2)
    assert o.steps == 2 and o.sigmas.shape == (3,)


def test_flow_patch_on_an_sd_model_is_refused_with_both_architectures(node, tiny_sd15):
    from comfyui_fewstep.fewstep.presets.registry import PresetError

    with pytest.raises(PresetError, match=r"'qwen-image-lightning'.*flow-matching model.*SD15.*qwen_image"):
        node.execute(tiny_sd15[0], "qwen-image-lightning", -1)


def test_every_sampler_and_scheduler_is_one_comfyui_knows(pack_nodes):
    """Loading the pack registered 'tcd'; every other name is core's."""
    import comfy.samplers

    from comfyui_fewstep.fewstep.presets import registry as P

    samplers, schedulers = comfy.samplers.KSampler.SAMPLERS, comfy.samplers.KSampler.SCHEDULERS
    for preset in P.registry().values():
        assert P.unknown_names(preset, samplers, schedulers) == [], preset.id
    # The check itself must be able to fail.
    fake = P.get_preset("lcm-lora")
    assert P.unknown_names(fake, ["euler"], ["karras"]) == ["sampler 'lcm'", "scheduler 'sgm_uniform'"]

"""FewStepPreset on the tiny SD1.5 model: its outputs drive ComfyUI's own KSampler and
SamplerCustom, patches land on a clone only and match the core nodes, custom schedules
are exact, and bad step counts fail clearly."""

from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(scope="module")
def conds(tiny_sd15):
    import nodes

    _, clip, _ = tiny_sd15
    return nodes.CLIPTextEncode().encode(clip, "seven")[0], nodes.CLIPTextEncode().encode(clip, "")[0]


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


def ksample(o, conds, seed=5):
    import nodes

    return nodes.common_ksampler(o.model, seed, o.steps, o.cfg, o.sampler, o.scheduler, *conds, empty_latent())[0]["samples"]


def test_outputs_are_what_the_issue_fixes_and_link_into_ksampler(node):
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
    assert "Custom timesteps 399: KSampler's 'sgm_uniform' cannot run them exactly (it would run timesteps 999)" in o.info
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


def test_turbo_sigmas_equal_core_sd_turbo_scheduler(node, tiny_sd15):
    from comfy_extras.nodes_custom_sampler import SDTurboScheduler

    model = tiny_sd15[0]
    for steps in (1, 2, 3, 4):
        o = run(node, model, "sd-turbo", steps)
        core = SDTurboScheduler.execute(model, steps, 1.0).args[0]
        torch.testing.assert_close(o.sigmas, core.float())
        assert o.sampler == "euler_ancestral" and o.steps == steps


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


def test_flux_guidance_and_info_wiring(node, tiny_sd15):
    o = run(node, tiny_sd15[0], "hyper-flux-dev", 16)
    assert (o.steps, o.cfg, o.guidance) == (16, 1.0, 3.5)
    assert "connect `guidance` to FluxGuidance" in o.info
    assert "https://huggingface.co/ByteDance/Hyper-SD" in o.info
    assert "LoRA strength 0.125" in o.info


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


def test_a_step_override_changes_steps_and_sigmas(node, tiny_sd15):
    o = run(node, tiny_sd15[0], "lcm-lora", 2)
    assert o.steps == 2 and o.sigmas.shape == (3,)


def test_flow_patch_on_an_sd_model_is_refused_with_both_architectures(node, tiny_sd15):
    from comfyui_fewstep.fewstep.presets.registry import PresetError

    with pytest.raises(PresetError, match=r"'qwen-image-lightning'.*flow-matching model.*SD15.*qwen_image"):
        node.execute(tiny_sd15[0], "qwen-image-lightning", -1)


def test_wan_shift_5_reproduces_lightx2v_timesteps(comfy):
    """lightx2v's 4-step distill: timesteps 1000/750/500/250 shifted by 5 = our simple schedule."""
    import comfy.samplers

    from comfyui_fewstep.fewstep.presets import patches as model_patches

    carrier = SimpleNamespace(model=SimpleNamespace(model_config=None))
    sampling = model_patches._flow_sampling(carrier, 5.0, 1000.0)
    sigmas = comfy.samplers.calculate_sigmas(sampling, "simple", 4)
    t = torch.tensor([1.0, 0.75, 0.5, 0.25])
    expected = 5 * t / (1 + 4 * t)
    torch.testing.assert_close(sigmas[:-1].float(), expected)
    assert sigmas[-1] == 0


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

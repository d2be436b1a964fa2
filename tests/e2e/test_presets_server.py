"""FewStepPreset and the "tcd" sampler in a real ComfyUI server: preset outputs link into
core KSampler / SamplerCustom, the validator accepts the links, and a bad step count is
refused at validation while the server keeps serving."""

import urllib.parse

import pytest

from comfyui_fewstep.tools.graphs import Graph
from comfyui_fewstep.tools.server import PromptRejected
from comfyui_fewstep.tools.synth_loras import sdxl_only_lora, write_lora


def preset_graph(preset: str, steps: int = -1, seed: int = 1, custom: bool = False, prefix: str = "preset"):
    g = Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name="tiny-sd15.safetensors")
    pos = g.add("CLIPTextEncode", text="seven", clip=g.out(ckpt, 1))
    neg = g.add("CLIPTextEncode", text="", clip=g.out(ckpt, 1))
    latent = g.add("EmptyLatentImage", width=64, height=64, batch_size=1)
    p = g.add("FewStepPreset", model=g.out(ckpt), preset=preset, steps=steps)
    if custom:
        sampler = g.add("KSamplerSelect", sampler_name="lcm")
        samples = g.add("SamplerCustom", model=g.out(p, 0), add_noise=True, noise_seed=seed, cfg=g.out(p, 2),
                        positive=g.out(pos), negative=g.out(neg), sampler=g.out(sampler), sigmas=g.out(p, 6),
                        latent_image=g.out(latent))
    else:
        samples = g.add("KSampler", model=g.out(p, 0), seed=seed, steps=g.out(p, 1), cfg=g.out(p, 2),
                        sampler_name=g.out(p, 3), scheduler=g.out(p, 4), positive=g.out(pos), negative=g.out(neg),
                        latent_image=g.out(latent), denoise=1.0)
    decode = g.add("VAEDecode", samples=g.out(samples), vae=g.out(ckpt, 2))
    save = g.add("SaveImage", images=g.out(decode), filename_prefix=prefix)
    return g, {"preset": p, "save": save}


def test_object_info_offers_tcd_and_preset_combos_equal_ksamplers(client):
    info = client.object_info()
    ksampler = info["KSampler"]["input"]["required"]
    assert "tcd" in ksampler["sampler_name"][0]
    node = info["FewStepPreset"]
    assert node["output"][3] == ksampler["sampler_name"][0]
    assert node["output"][4] == ksampler["scheduler"][0]
    assert node["output_name"] == ["MODEL", "steps", "cfg", "sampler_name", "scheduler", "info", "sigmas", "guidance"]
    assert info["FewStepTCDSampler"]["output"] == ["SAMPLER"]


@pytest.mark.parametrize("preset", ["lcm-lora", "tcd-lora"])
def test_preset_outputs_drive_core_ksampler(client, preset):
    g, ids = preset_graph(preset, prefix=f"preset_{preset}")
    result = client.run(g.to_api())
    assert result.status == "success", result.error
    assert result.outputs[ids["save"]]["images"]


def test_custom_timestep_sigmas_drive_sampler_custom(client):
    g, ids = preset_graph("dmd2-sdxl-1step-unet", custom=True, prefix="preset_dmd2_1step")
    result = client.run(g.to_api())
    assert result.status == "success", result.error


def test_zero_steps_is_refused_at_validation_and_the_server_keeps_serving(client):
    g, _ = preset_graph("sdxl-lightning", steps=0, prefix="never")
    with pytest.raises(PromptRejected) as err:
        client.queue(g.to_api())
    text = str(err.value)
    assert "preset 'sdxl-lightning'" in text and "allowed step counts are 2, 4, 8" in text
    good, _ = preset_graph("sdxl-lightning", steps=2, seed=2, prefix="preset_after_error")
    assert client.run(good.to_api()).status == "success"


def test_the_badge_route_recommends_sigmas_for_dmd2_one_step(client, server):
    """GET /fewstep/lora_info (what the LoRA loader's badge shows): for a preset whose
    KSampler outputs would run the wrong timestep, the badge points at the sigmas path."""
    write_lora(server.base / "models" / "loras" / "dmd2_sdxl_1step_unet_lora.safetensors", sdxl_only_lora(seed=8))
    query = urllib.parse.urlencode({"lora_name": "dmd2_sdxl_1step_unet_lora.safetensors"})
    info = client.get_json(f"/fewstep/lora_info?{query}")
    assert (info["preset"], info["steps"], info["needs_sigmas"]) == ("dmd2-sdxl-1step-unet", 1, True)
    assert info["badge"].endswith("sigmas \u2192 SamplerCustom (lcm)")

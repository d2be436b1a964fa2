"""The pack inside an in-process ComfyUI: registration, schema conventions, and a node
running on the output of ComfyUI's own loader, sampler and VAE."""

import math

import pytest
import torch


def test_every_node_follows_the_packs_conventions(pack_nodes):
    assert pack_nodes, "comfy_entrypoint() returned no nodes"
    for node_id, cls in pack_nodes.items():
        schema = cls.GET_SCHEMA()
        assert node_id.startswith("FewStep"), node_id
        assert schema.category.startswith("FewStep/"), (node_id, schema.category)
        for inp in schema.inputs:
            assert inp.tooltip, f"{node_id}.{inp.id} has no tooltip"


def test_registered_node_info_is_what_the_frontend_receives(pack_nodes):
    info = pack_nodes["FewStepCompare"].GET_NODE_INFO_V1()
    assert info["category"] == "FewStep/analysis"
    assert list(info["input"]["required"]) == ["reference", "candidate"]
    # outputs are append-only (saved workflows link them by position): psnr, max_abs_error,
    # report, then ssim and the difference picture
    assert info["output"] == ["FLOAT", "FLOAT", "STRING", "FLOAT", "IMAGE"]


def test_compare_scores_real_sampler_outputs(pack_nodes, tiny_sd15):
    import nodes  # ComfyUI's own node module

    model, clip, vae = tiny_sd15
    pos = nodes.CLIPTextEncode().encode(clip, "seven")[0]
    neg = nodes.CLIPTextEncode().encode(clip, "")[0]
    latent = nodes.EmptyLatentImage().generate(64, 64, 1)[0]

    def image(steps):
        samples = nodes.common_ksampler(model, 7, steps, 5.0, "euler", "normal", pos, neg, latent)[0]
        return vae.decode(samples["samples"])

    ref, fast = image(12), image(3)
    compare = pack_nodes["FewStepCompare"]
    same = compare.execute(ref, ref.clone())
    assert math.isinf(same.args[0]) and same.args[1] == 0.0
    assert same.args[3] == 1.0 and same.args[4].abs().max() == 0  # SSIM 1, a black heat map
    out = compare.execute(ref, fast)
    psnr, max_abs, report, ssim, heat = out.args
    assert 0 < psnr < 60 and 0 < max_abs <= 1
    assert 0 < ssim < 1 and heat.shape == ref.shape[:3] + (3,) and heat.max() == 1.0
    assert report.startswith(f"PSNR {psnr:.2f} dB") and f"SSIM {ssim:.4f}" in report
    assert out.ui.as_dict() == {"text": (report,)}


def test_compare_refuses_images_of_different_sizes(pack_nodes):
    with pytest.raises(ValueError, match="same size"):
        pack_nodes["FewStepCompare"].execute(torch.zeros(1, 64, 64, 3), torch.zeros(1, 32, 32, 3))


def test_compare_refuses_images_too_small_for_ssim(pack_nodes):
    with pytest.raises(ValueError, match=r"at least 11x11 px.*these are 10x10 px"):
        pack_nodes["FewStepCompare"].execute(torch.zeros(1, 10, 10, 3), torch.ones(1, 10, 10, 3))

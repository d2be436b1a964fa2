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
    assert info["output"] == ["FLOAT", "FLOAT", "STRING"]


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
    out = compare.execute(ref, fast)
    psnr, max_abs, report = out.args
    assert 0 < psnr < 60 and 0 < max_abs <= 1
    assert f"{psnr:.2f} dB" in report
    assert out.ui.as_dict() == {"text": (report,)}


def test_compare_refuses_images_of_different_sizes(pack_nodes):
    with pytest.raises(ValueError, match="same size"):
        pack_nodes["FewStepCompare"].execute(torch.zeros(1, 64, 64, 3), torch.zeros(1, 32, 32, 3))

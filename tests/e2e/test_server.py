"""The pack in a real ComfyUI server, driven over HTTP and the websocket like an API user."""

import io

import numpy as np
import pytest
from PIL import Image

from comfyui_fewstep.tools.graphs import txt2img
from comfyui_fewstep.tools.server import PromptRejected


def test_server_lists_every_fewstep_node_and_logs_no_import_failure(server, client, pack_nodes):
    info = client.object_info()
    missing = sorted(set(pack_nodes) - set(info))
    assert not missing, f"FewStep nodes missing from /object_info: {missing}\n{server.log_text()[-3000:]}"
    assert {k for k in info if k.startswith("FewStep")} == set(pack_nodes)
    log = server.log_text()
    assert "custom_nodes/comfyui-fewstep" in log  # the import-times table names the pack
    for line in log.splitlines():
        if "comfyui-fewstep" in line:
            assert "IMPORT FAILED" not in line and "Cannot import" not in line, line


def test_compare_node_schema_reaches_the_frontend(client):
    node = client.object_info()["FewStepCompare"]
    assert node["category"] == "FewStep/analysis"
    assert node["output"] == ["FLOAT", "FLOAT", "STRING", "FLOAT", "IMAGE"]  # outputs only appended
    assert all(spec[1].get("tooltip") for spec in node["input"]["required"].values())


def _png_array(client, image_ref) -> np.ndarray:
    raw = client.view(image_ref["filename"], image_ref["subfolder"], image_ref["type"])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.float32) / 255


def test_txt2img_with_compare_runs_end_to_end(client):
    g, ids = txt2img("tiny-sd15.safetensors", prompt="seven", seed=11, steps=12, save_prefix="e2e_ref")
    fast = g.add("KSampler", model=g.out(ids["ckpt"]), seed=11, steps=3, cfg=5.0, sampler_name="euler",
                 scheduler="normal", positive=g.out(ids["positive"]), negative=g.out(ids["negative"]),
                 latent_image=g.out(ids["latent"]), denoise=1.0)
    fast_img = g.add("VAEDecode", samples=g.out(fast), vae=g.out(ids["ckpt"], 2))
    compare = g.add("FewStepCompare", reference=g.out(ids["decode"]), candidate=g.out(fast_img))

    result = client.run(g.to_api())
    assert result.status == "success", result.error
    assert result.events_of("progress"), "no progress events on the websocket"
    executed = [e for e in result.events_of("executed") if e["node"] == compare]
    assert executed and executed[0]["output"]["text"][0].startswith("PSNR ")

    report = result.outputs[compare]["text"][0]
    psnr = float(report.split()[1])
    assert 0 < psnr < 60, report

    image = _png_array(client, result.outputs[ids["save"]]["images"][0])
    assert image.shape == (64, 64, 3)
    assert image.std() > 0.02, "saved image is a uniform frame"


def test_node_error_is_reported_and_server_keeps_serving(client):
    g, ids = txt2img("tiny-sd15.safetensors", seed=3, steps=2, save_prefix=None)
    small = g.add("ImageScale", image=g.out(ids["decode"]), upscale_method="nearest-exact", width=32, height=32,
                  crop="disabled")
    g.add("FewStepCompare", reference=g.out(ids["decode"]), candidate=g.out(small))
    bad = client.run(g.to_api())
    assert bad.status == "error"
    assert bad.error["node_type"] == "FewStepCompare"
    assert "different shapes" in bad.error["exception_message"]
    assert "same size" in bad.error["exception_message"]

    good, _ = txt2img("tiny-sd15.safetensors", seed=4, steps=2, save_prefix="after_error")
    assert client.run(good.to_api()).status == "success"


def test_invalid_graph_is_rejected_at_validation(client):
    g, _ = txt2img("no-such-model.safetensors", save_prefix="never")
    with pytest.raises(PromptRejected) as err:
        client.queue(g.to_api())
    assert "no-such-model.safetensors" in str(err.value)


def test_demo_workflow_draws_the_prompted_digit(client):
    """`make demo`'s first workflow on the trained default model: FewStepABTest's A | B | heat-map
    pictures show sevens in both branches, its report shows TeaCache's calls saved, and the
    skipped calls reach the websocket."""
    import re

    import torch

    from comfyui_fewstep.tools.demo import STEPS, api_graph
    from comfyui_fewstep.tools.teacher import classify_images

    graph = api_graph(STEPS[0])
    result = client.run(graph)
    assert result.status == "success", result.error
    (refs,) = [out["images"] for n, out in result.outputs.items() if graph[n]["class_type"] == "SaveImage"]
    strips = np.stack([_png_array(client, ref) for ref in refs])  # A | B | heat map (1 px gaps), scaled 4x
    assert strips.shape == (4, 128, 4 * (3 * 32 + 2), 3)
    for panel in (0, 1):  # "seven seven seven seven": the trained teacher draws sevens, cached or not
        left = panel * 4 * 33
        images = torch.from_numpy(strips[:, ::4, left:left + 128:4].copy())
        assert images.std() > 0.05
        assert (np.asarray(classify_images(images)) == 7).mean() >= 0.75, panel
    (report,) = [out["text"][0] for n, out in result.outputs.items() if "text" in out]
    calls = [int(c) for c in re.findall(r"(\d+) model calls/image", report)]
    assert len(calls) == 2 and calls[1] < calls[0] == 60, report
    assert "latent PSNR" in report and "SSIM" in report
    stats = result.events_of("fewstep.cache_stats")
    assert stats and stats[-1]["skipped"] > 0, stats

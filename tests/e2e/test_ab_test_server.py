"""FewStepABTest in a real ComfyUI server, driven over HTTP and the websocket: on the tiny
random SD1.5 (shapes, report fields, identical branches) and on the trained digits teacher
(the bench's settings: 30 vs 8 euler steps at cfg 5), and bad input refused while the
server keeps serving."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
from PIL import Image

from comfyui_fewstep.tools.default_model import DEFAULT_CHECKPOINT
from comfyui_fewstep.tools.graphs import ab_test, txt2img
from comfyui_fewstep.tools.server import PromptRejected


def png(client, ref) -> np.ndarray:
    raw = client.view(ref["filename"], ref["subfolder"], ref["type"])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.float32) / 255


def numbers(report: str) -> dict:
    """The report's figures, read as a user reads them."""
    branch = re.findall(r"^([AB]): .*?: ([\d.]+) s, ([\d.]+) model calls/image, load/patch/prepare ([\d.]+) s$",
                        report, re.M)
    assert len(branch) == 2, report
    out = {f"{name}_{key}": float(v) for name, *vals in branch for key, v in zip(("s", "calls", "load"), vals)}
    out["speedup"], out["speedup_whole"] = map(float, re.search(r"speedup B vs A: ([\d.]+)x \(whole KSampler call: "
                                                                r"([\d.]+)x\)", report).groups())
    psnr = re.search(r"latent PSNR (identical \(inf dB\)|[\d.]+ dB)", report).group(1)
    out["latent_psnr"] = math.inf if psnr.startswith("identical") else float(psnr.split()[0])
    pixel = re.search(r"pixel PSNR (identical \(inf dB\)|[\d.]+ dB), SSIM ([\d.]+)", report)
    if pixel:
        out["pixel_psnr"] = math.inf if pixel.group(1).startswith("identical") else float(pixel.group(1).split()[0])
        out["ssim"] = float(pixel.group(2))
    return out


def test_schema_reaches_the_frontend(client):
    node = client.object_info()["FewStepABTest"]
    assert node["category"] == "FewStep/analysis"
    assert node["output"] == ["LATENT", "LATENT", "IMAGE", "IMAGE", "IMAGE", "STRING"]
    specs = {**node["input"]["required"], **node["input"]["optional"]}
    assert list(specs)[:6] == ["model_a", "model_b", "positive", "negative", "latent", "seed"]
    assert all(spec[1].get("tooltip") for spec in specs.values())
    assert specs["repeats"][1]["min"] == 1
    assert node["output_node"] is True
    compare = client.object_info()["FewStepCompare"]
    assert compare["output"] == ["FLOAT", "FLOAT", "STRING", "FLOAT", "IMAGE"]  # appended, never reordered


def test_ab_test_runs_end_to_end_with_its_report_and_pictures(client):
    g, ids = ab_test("tiny-sd15.safetensors", seed=31, batch=2)
    result = client.run(g.to_api())
    assert result.status == "success", result.error
    out = result.outputs[ids["ab"]]
    report = out["text"][0]
    executed = [e for e in result.events_of("executed") if e["node"] == ids["ab"]]
    assert executed and executed[0]["output"]["text"][0] == report  # what the node shows
    n = numbers(report)
    assert (n["A_calls"], n["B_calls"]) == (12, 6)  # euler, cfg 5: cond + uncond per step
    assert n["A_s"] > 0 and n["B_s"] > 0 and math.isfinite(n["speedup"]) and n["speedup"] > 0
    assert 0 < n["latent_psnr"] < 100 and 0 < n["ssim"] < 1
    assert "2 timed run(s)" in report
    # the picture on the node and the saved outputs: A | B | heat map, both branches decoded
    shown = [png(client, ref) for ref in out["images"]]
    assert len(shown) == 2 and shown[0].shape == (64, 64 * 3 + 2 * 2, 3)
    saved_cmp = [png(client, ref) for ref in result.outputs[ids["save_cmp"]]["images"]]
    assert np.array_equal(saved_cmp[0], shown[0])
    for key in ("save_a", "save_b"):
        images = [png(client, ref) for ref in result.outputs[ids[key]]["images"]]
        assert len(images) == 2 and images[0].shape == (64, 64, 3) and images[0].std() > 0.02, key


def test_identical_branches_are_identical(client):
    g, ids = ab_test("tiny-sd15.safetensors", seed=32, a=(4, 5.0), b=(4, 5.0), repeats=1)
    result = client.run(g.to_api())
    assert result.status == "success", result.error
    n = numbers(result.outputs[ids["ab"]]["text"][0])
    assert math.isinf(n["latent_psnr"]) and math.isinf(n["pixel_psnr"]) and n["ssim"] == 1.0
    assert n["A_calls"] == n["B_calls"] == 8 and math.isfinite(n["speedup"])
    heat = png(client, result.outputs[ids["ab"]]["images"][0])[:, -64:]
    assert heat.max() == 0, "identical branches must draw a black heat map"


def test_on_the_teacher_at_the_benchs_settings(client):
    """The bench's few-step row (30 vs 8 euler steps, cfg 5, digit 7, seed 7, batch 1): B
    reads as a 7 and keeps most of the detail; every evaluation counted."""
    import torch

    from comfyui_fewstep.tools.teacher import classify_images, prompt_for

    g, ids = ab_test(DEFAULT_CHECKPOINT, prompt=prompt_for(7), size=32, seed=7, a=(30, 5.0), b=(8, 5.0), repeats=3)
    result = client.run(g.to_api())
    assert result.status == "success", result.error
    report = result.outputs[ids["ab"]]["text"][0]
    n = numbers(report)
    assert (n["A_calls"], n["B_calls"]) == (60, 16), report
    assert 25 < n["latent_psnr"] < 80 and 0 < n["ssim"] < 1, report
    images = np.stack([png(client, result.outputs[ids[k]]["images"][0]) for k in ("save_a", "save_b")])
    assert list(classify_images(torch.from_numpy(images))) == [7, 7]
    print(report)  # kept in the test log: the README quotes a run of this


def test_bad_input_is_refused_and_the_server_keeps_serving(client):
    g, ids = ab_test("tiny-sd15.safetensors", seed=33, repeats=0)
    with pytest.raises(PromptRejected) as refused:
        client.queue(g.to_api())
    assert "repeats" in str(refused.value.payload), refused.value.payload

    g, ids = ab_test("tiny-sd15.safetensors", seed=34, repeats=1)
    latent = g.nodes[ids["ab"]]["inputs"]["latent"]  # shrunk to 1x1 latents: 8x8 px images, below SSIM's window
    small = g.add("LatentUpscaleBy", samples=latent, upscale_method="nearest-exact", scale_by=0.125)
    g.nodes[ids["ab"]]["inputs"]["latent"] = g.out(small)
    bad = client.run(g.to_api())
    assert bad.status == "error"
    assert bad.error["node_type"] == "FewStepABTest"
    assert "at least 11x11 px" in bad.error["exception_message"] and "8x8 px" in bad.error["exception_message"]

    good, _ = txt2img("tiny-sd15.safetensors", seed=35, steps=2, save_prefix="after_ab_error")
    assert client.run(good.to_api()).status == "success"

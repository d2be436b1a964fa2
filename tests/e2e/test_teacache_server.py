"""FewStep TeaCache in a real ComfyUI server: the shipped workflows against /object_info,
the SD1.5 workflow end to end on the trained digits teacher (stats over the websocket,
a readable digit, the Compare report), calibration stored in the server's user folder,
and bad input refused while the server keeps serving."""

from __future__ import annotations

import copy
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from comfyui_fewstep.tools.server import PromptRejected
from comfyui_fewstep.tools.workflows import WORKFLOWS, load, validate_api, validate_ui

NAMES = ("teacache_sd15", "teacache_sdxl", "teacache_flux", "teacache_qwen_image", "teacache_wan")
EVENT = "fewstep.cache_stats"
DIGIT = 7


@pytest.fixture(scope="module")
def object_info(server):
    return server.client().object_info()


@pytest.fixture(scope="module")
def teacher_name(server):
    from comfyui_fewstep.tools.teacher import TEACHER_VERSION, teacher_checkpoint
    from comfyui_fewstep.tools.tiny_models import install_checkpoint

    return install_checkpoint(teacher_checkpoint(), server.base / "models", f"{TEACHER_VERSION}.safetensors")


def installed_here(problem: str) -> bool:
    """Model files are the user's: a workflow may name files this test server lacks."""
    return ".safetensors' is not one of its options" in problem


@pytest.mark.parametrize("name", NAMES)
def test_workflow_matches_the_server_in_both_formats(name, object_info):
    api = load(WORKFLOWS / "api" / f"{name}.json")
    assert [p for p in validate_api(api, object_info) if not installed_here(p)] == []
    ui = load(WORKFLOWS / f"{name}.json")
    assert validate_ui(ui, object_info) == []
    assert sum(n["class_type"] == "FewStepTeaCache" for n in api.values()) == 1
    assert sum(n["type"] == "FewStepTeaCache" for n in ui["nodes"]) == 1


def test_node_schema_has_tooltips_and_category(object_info):
    node = object_info["FewStepTeaCache"]
    assert node["category"] == "FewStep/speed" and node["output"] == ["MODEL"]
    specs = node["input"]["required"]
    assert list(specs) == ["model", "threshold", "start_percent", "end_percent", "max_consecutive_skips",
                           "model_family", "cache_device", "calibration"]
    assert all(spec[1].get("tooltip") for spec in specs.values())


def teacher_graph(teacher_name: str, seed: int, calibration: str = "use stored", threshold: float | None = None):
    """The shipped SD1.5 workflow at the teacher's own settings (32 px, cfg 5, 30 euler steps)."""
    from comfyui_fewstep.tools.teacher import NEGATIVE_PROMPT, TEACHER_SETTINGS, prompt_for

    graph = copy.deepcopy(load(WORKFLOWS / "api" / "teacache_sd15.json"))
    ids = {}
    for node_id, node in graph.items():
        inputs, kind = node["inputs"], node["class_type"]
        ids.setdefault(kind, []).append(node_id)
        if kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = teacher_name
        elif kind == "EmptyLatentImage":
            inputs["width"], inputs["height"] = TEACHER_SETTINGS["width"], TEACHER_SETTINGS["height"]
        elif kind == "KSampler":
            inputs.update(seed=seed, steps=TEACHER_SETTINGS["steps"], cfg=TEACHER_SETTINGS["cfg"],
                          sampler_name=TEACHER_SETTINGS["sampler"], scheduler=TEACHER_SETTINGS["scheduler"])
        elif kind == "FewStepTeaCache":
            inputs["calibration"] = calibration
            if threshold is not None:
                inputs["threshold"] = threshold
        elif kind == "SaveImage":
            inputs["filename_prefix"] = f"teacache_e2e_{seed}"
    for node_id in ids["CLIPTextEncode"]:
        title = graph[node_id].get("_meta", {}).get("title", "")
        graph[node_id]["inputs"]["text"] = prompt_for(DIGIT) if title.startswith("Positive") else NEGATIVE_PROMPT
    return graph, ids


def stats_of(result, node_id):
    found = [e["data"] for e in result.events if e.get("type") == EVENT and e["data"].get("node") == node_id]
    assert found, f"no {EVENT} event for node {node_id}"
    return found[-1]


def png(client, ref) -> np.ndarray:
    raw = client.view(ref["filename"], ref["subfolder"], ref["type"])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.float32) / 255


def test_sd15_workflow_end_to_end_on_the_teacher(client, teacher_name):
    from comfyui_fewstep.tools.teacher import classify_images

    graph, ids = teacher_graph(teacher_name, seed=DIGIT)
    result = client.run(graph)
    assert result.status == "success", result.error
    tc = ids["FewStepTeaCache"][0]
    s = stats_of(result, tc)
    assert s["calls"] == 30 and 0 < s["skipped"] < 30 and s["completed"] is True
    assert s["architecture"] == "sd15" and s["family"] == "generic"
    assert s["speedup"] == pytest.approx(30 / (30 - s["skipped"]), rel=1e-3)
    report = result.outputs[ids["FewStepCompare"][0]]["text"][0]
    assert report.startswith("PSNR")
    image = png(client, result.outputs[ids["SaveImage"][0]]["images"][0])
    assert classify_images(image[None])[0] == DIGIT, "the cached run must still draw the prompted digit"
    json.dumps(s, allow_nan=False)  # the browser's JSON.parse rejects NaN/Infinity


def test_calibration_is_stored_in_the_user_folder_and_used(client, server, teacher_name):
    graph, ids = teacher_graph(teacher_name, seed=101, calibration="calibrate on next run")
    result = client.run(graph)
    assert result.status == "success", result.error
    s = stats_of(result, ids["FewStepTeaCache"][0])
    assert s["skipped"] == 0 and s["calibration"]["status"].startswith("calibrated and saved")
    files = list((server.base / "user" / "fewstep" / "teacache").glob("*.json"))
    assert len(files) == 1 and files[0].name.startswith(s["calibration"]["fingerprint"])
    doc = json.loads(files[0].read_text())
    assert doc["version"] == 1 and "30" in doc["fits"]

    graph, ids = teacher_graph(teacher_name, seed=102, calibration="use stored")
    result = client.run(graph)
    assert result.status == "success", result.error
    s = stats_of(result, ids["FewStepTeaCache"][0])
    assert s["calibration"]["status"] == "stored fit (30 steps)" and s["rescale"] == "stored fit (30 steps)"


@pytest.mark.parametrize("change, message", [
    ({"threshold": math.nan}, "threshold must be a finite number"),
    ({"threshold": -0.5}, "threshold must be a finite number"),
    ({"start_percent": 0.7, "end_percent": 0.3}, "must be smaller than end_percent"),
    ({"model_family": "sd9"}, "unknown model_family"),
])
def test_bad_input_is_refused_at_validation(client, teacher_name, change, message):
    graph, ids = teacher_graph(teacher_name, seed=5)
    graph[ids["FewStepTeaCache"][0]]["inputs"].update(change)
    with pytest.raises(PromptRejected) as rejected:
        client.queue(graph)
    assert message in json.dumps(rejected.value.payload)


def test_family_mismatch_is_a_clear_error_and_the_server_keeps_serving(client, teacher_name):
    graph, ids = teacher_graph(teacher_name, seed=6)
    graph[ids["FewStepTeaCache"][0]]["inputs"]["model_family"] = "flux"
    result = client.run(graph)
    assert result.status == "error"
    assert "needs a Flux diffusion model" in result.error["exception_message"]
    graph, _ = teacher_graph(teacher_name, seed=7)
    graph[ids["FewStepTeaCache"][0]]["inputs"]["threshold"] = 0.05
    assert client.run(graph).status == "success"

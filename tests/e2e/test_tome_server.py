"""FewStep Token Merge in a real ComfyUI server: its schema in /object_info, its workflows in
both formats, a graph with the node run over HTTP and the websocket on the tiny SD1.5 at
an odd size (72x56 px), and bad input refused or reported while the server keeps serving."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from comfyui_fewstep.tools.graphs import txt2img
from comfyui_fewstep.tools.server import PromptRejected
from comfyui_fewstep.tools.workflows import WORKFLOWS, load, validate_api, validate_ui

NAMES = ("tome_sd15", "todo_sdxl", "token_merge_teacache_lora_sd15")
INPUTS = ["model", "method", "ratio", "downsample", "max_depth", "start_percent", "end_percent", "seed"]


@pytest.fixture(scope="module")
def object_info(server):
    return server.client().object_info()


def test_node_schema_has_tooltips_and_category(object_info):
    node = object_info["FewStepTokenMerge"]
    assert node["category"] == "FewStep/speed" and node["output"] == ["MODEL"]
    specs = node["input"]["required"]
    assert list(specs) == INPUTS
    assert all(spec[1].get("tooltip") for spec in specs.values())
    method = specs["method"]
    assert (method[0] if isinstance(method[0], list) else method[1]["options"]) == ["todo", "tome"]


@pytest.mark.parametrize("name", NAMES)
def test_workflow_matches_the_server_in_both_formats(name, object_info):
    api = load(WORKFLOWS / "api" / f"{name}.json")
    assert [p for p in validate_api(api, object_info) if ".safetensors' is not one of its options" not in p] == []
    ui = load(WORKFLOWS / f"{name}.json")
    assert validate_ui(ui, object_info) == []
    assert sum(n["class_type"] == "FewStepTokenMerge" for n in api.values()) == 1
    ui_node = next(n for n in ui["nodes"] if n["type"] == "FewStepTokenMerge")
    api_node = next(n for n in api.values() if n["class_type"] == "FewStepTokenMerge")
    assert ui_node["widgets_values"] == [api_node["inputs"][k] for k in INPUTS[1:]]  # widgets in schema order


def graph(seed, merge: dict | None, steps=4, width=72, height=56):
    g, ids = txt2img("tiny-sd15.safetensors", prompt="seven", seed=seed, steps=steps, cfg=3.0, width=width,
                     height=height, batch=2, save_prefix="tome")
    if merge is not None:
        settings = {"method": "tome", "ratio": 0.5, "downsample": 2.0, "max_depth": 1, "start_percent": 0.0,
                    "end_percent": 1.0, "seed": 0, **merge}
        node = g.add("FewStepTokenMerge", model=g.out(ids["ckpt"]), **settings)
        g.nodes[ids["sampler"]]["inputs"]["model"] = g.out(node)
        ids["merge"] = node
    return g.to_api(), ids


def images(client, result, ids) -> list[np.ndarray]:
    assert result.status == "success", result.error
    return [np.asarray(Image.open(io.BytesIO(client.view(i["filename"], i["subfolder"], i["type"]))))
            for i in result.outputs[ids["save"]]["images"]]


def test_a_graph_with_the_node_runs_over_http_at_an_odd_size(client):
    plain = images(client, client.run(graph(11, None)[0]), graph(11, None)[1])
    assert len(plain) == 2 and plain[0].shape == (56, 72, 3)
    for merge in ({"ratio": 0.0}, {"method": "todo", "downsample": 1.0}):
        g, ids = graph(11, merge)
        same = images(client, client.run(g), ids)
        assert all(np.array_equal(a, b) for a, b in zip(same, plain)), f"{merge} is not the unpatched model"
    g, ids = graph(11, {"ratio": 0.5, "seed": 4})
    merged = images(client, client.run(g), ids)
    assert [m.shape for m in merged] == [p.shape for p in plain]
    assert any(not np.array_equal(a, b) for a, b in zip(merged, plain))
    client.run(graph(11, None)[0])  # another graph in between: ComfyUI drops the cached merged outputs
    result = client.run(g)
    cached = [n for e in result.events_of("execution_cached") for n in e.get("nodes", [])]
    assert ids["sampler"] not in cached, "the second run was served from ComfyUI's cache"
    again = images(client, result, ids)
    assert all(np.array_equal(a, b) for a, b in zip(again, merged)), "the same seed gave another image"


@pytest.mark.parametrize("change, message", [
    ({"ratio": 1.0}, "ratio must be at least 0 and below 1"),
    ({"ratio": -0.2}, "ratio must be at least 0 and below 1"),
    ({"downsample": 0.5}, "downsample must be at least 1"),
    ({"start_percent": 0.7, "end_percent": 0.3}, "must be smaller than end_percent"),
    ({"method": "hypertile"}, "method must be one of todo, tome"),
])
def test_bad_input_is_refused_at_validation(client, change, message):
    g, _ = graph(12, change)
    with pytest.raises(PromptRejected) as rejected:
        client.queue(g)
    assert message in json.dumps(rejected.value.payload)


def test_max_depth_beyond_the_model_fails_the_run_clearly_and_the_server_keeps_serving(client):
    g, ids = graph(13, {"max_depth": 3})
    result = client.run(g)
    assert result.status == "error" and result.error["node_id"] == ids["merge"]
    assert ("max_depth 3 is beyond SD1.5, which has attention at 1 UNet level(s) (0): set max_depth to 1..1"
            in result.error["exception_message"])
    g, ids = graph(13, {"max_depth": 1})
    assert client.run(g).status == "success"

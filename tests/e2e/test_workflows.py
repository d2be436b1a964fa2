"""Every shipped workflow (workflows/*.json UI format, workflows/api/*.json API format) is
checked against the real server's /object_info; UI ones list their model files for the
frontend's download dialog; the SD1.5 ones run end to end on the tiny checkpoint with
synthesised LoRA files saved under the workflows' own LoRA names (so recognition by name
is part of the run), never real weights.

The same checks run on workflows saved by earlier releases (saved_workflows/<release>/,
copied verbatim from that release): node ids and widget positions are a public contract,
so what users saved then must still validate and run. The workflows on the built-in digits
teacher (on every test server) run here as shipped, or in the test named in RUN_ELSEWHERE."""

import copy
import io
import json
import re
import urllib.parse
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfyui_fewstep.tools.default_model import DEFAULT_CHECKPOINT, DISTILLED_LORA, RANDOM_CHECKPOINT
from comfyui_fewstep.tools.server import PromptRejected
from comfyui_fewstep.tools.synth_loras import tiny_sd15_lora, write_lora
from comfyui_fewstep.tools.workflows import (api_workflows, errors_besides_missing_model_files, load, nodes_of,
                                              ui_workflows, validate_api, validate_ui, with_missing_model_files)

EXPECTED = {"lcm_lora_sd15", "dmd2_sdxl", "sdxl_lightning", "hyper_sd15", "tcd_sd15", "qwen_image_lightning",
            "distill_then_use", "use_distilled_lora", "tome_sd15", "todo_sdxl", "token_merge_teacache_lora_sd15",
            "ab_test_teacache"}
LOADERS = {"CheckpointLoaderSimple": "ckpt_name", "FewStepLoraLoader": "lora_name", "UNETLoader": "unet_name",
           "CLIPLoader": "clip_name", "VAELoader": "vae_name"}
SD15_CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"
# What each workflow's LoRA must be recognised as (checked through the server's route).
RECOGNISED = {"lcm_lora_sd15": ("lcm-lora", 4), "hyper_sd15": ("hyper-sd-nstep", 8), "tcd_sd15": ("tcd-lora", 4)}
# Teacher workflows with their own end-to-end test (they train first, or check the demo's digits).
RUN_ELSEWHERE = {"fewstep_demo": "tests/e2e/test_server.py", "distill_then_use": "tests/e2e/test_distill_workflows.py",
                 "use_distilled_lora": "tests/e2e/test_distill_workflows.py"}


SAVED = Path(__file__).parent / "saved_workflows"


def every_ui() -> list[Path]:
    return ui_workflows() + sorted(SAVED.glob("*/*.json"))


def every_api() -> list[Path]:
    return api_workflows() + sorted(SAVED.glob("*/api/*.json"))


def label(path: Path) -> str:
    if SAVED in path.parents:
        return "saved/" + str(path.relative_to(SAVED).with_suffix(""))
    return ("api/" if path.parent.name == "api" else "") + path.stem


@pytest.fixture(scope="module")
def object_info(server):
    return server.client().object_info()


def test_the_listed_workflows_ship_in_both_formats():
    assert {p.stem for p in api_workflows()} >= EXPECTED
    assert {p.stem for p in ui_workflows()} >= EXPECTED


def not_installed_here(problem: str) -> bool:
    """A model file the test server does not have. validate_api already ignores pure file lists;
    VAELoader's list also holds 'pixel_space', so its file names are judged: excuse only those."""
    return any(f"({loader}): '{name}' = " in problem and ".safetensors' is not one of its options" in problem
               for loader, name in LOADERS.items())


@pytest.mark.parametrize("path", every_api(), ids=label)
def test_api_workflow_matches_the_server(path, object_info):
    assert [p for p in validate_api(load(path), object_info) if not not_installed_here(p)] == []


@pytest.mark.parametrize("path", every_api(), ids=label)
def test_api_workflow_links_pass_the_servers_own_validation(path, client):
    """POST /prompt runs ComfyUI's own validation (link types included: from ComfyUI 0.8.0 a
    plain v3 combo output is typed "COMBO" and KSampler's list inputs refuse it). With its
    model files renamed away, the graph must be refused for those alone."""
    graph = with_missing_model_files(load(path))
    with pytest.raises(PromptRejected) as refused:
        client.queue(graph)
    assert refused.value.payload.get("node_errors"), refused.value.payload
    assert errors_besides_missing_model_files(graph, refused.value.payload) == []


@pytest.mark.parametrize("path", every_ui(), ids=label)
def test_ui_workflow_matches_the_server_and_lists_its_models(path, object_info):
    workflow = load(path)
    assert validate_ui(workflow, object_info) == []
    for node in workflow["nodes"]:
        if node["type"] not in LOADERS:
            continue
        file_name = node["widgets_values"][0]
        models = node.get("properties", {}).get("models", [])
        if file_name in (DEFAULT_CHECKPOINT, RANDOM_CHECKPOINT, DISTILLED_LORA):
            # Built here (`make models`/`make serve`, or trained by distill_then_use): a download
            # link would point nowhere.
            assert models == [], f"{path.name}: {file_name} is built locally and must not offer a download"
            continue
        assert [m["name"] for m in models] == [file_name], f"{path.name}: {node['type']} does not list {file_name}"
        assert models[0]["url"].startswith("https://huggingface.co/") and models[0]["url"].endswith(".safetensors")
        assert models[0]["directory"] in ("checkpoints", "loras", "diffusion_models", "text_encoders", "vae")


@pytest.mark.parametrize("path", [p for p in every_ui() if (p.parent / "api" / p.name).exists()], ids=label)
def test_ui_and_api_versions_are_the_same_graph(path):
    ui = load(path)
    api = load(path.parent / "api" / path.name)
    assert Counter(n["type"] for n in ui["nodes"]) == Counter(n["class_type"] for n in api.values())
    ui_files = sorted(n["widgets_values"][0] for n in ui["nodes"] if n["type"] in LOADERS)
    api_files = sorted(n["inputs"][LOADERS[n["class_type"]]] for n in api.values() if n["class_type"] in LOADERS)
    assert ui_files == api_files


def sd15_workflows(paths=None):
    return [p for p in (paths or every_api())
            if any(n["inputs"].get("ckpt_name") == SD15_CHECKPOINT for n in load(p).values())]


def test_the_sd15_workflows_that_run_include_every_recognised_one():
    assert {p.stem for p in sd15_workflows(api_workflows())} >= set(RECOGNISED)
    assert len(sd15_workflows()) > len(sd15_workflows(api_workflows()))  # saved ones run too


@pytest.mark.parametrize("path", sd15_workflows(), ids=label)
def test_sd15_workflow_runs_end_to_end_on_tiny_models(path, client, server):
    graph = copy.deepcopy(load(path))
    loras = server.base / "models" / "loras"
    lora_names = []
    for node in graph.values():
        inputs = node["inputs"]
        if node["class_type"] == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = "tiny-sd15.safetensors"
        elif node["class_type"] == "FewStepLoraLoader":
            lora_names.append(inputs["lora_name"])
            write_lora(loras / inputs["lora_name"], tiny_sd15_lora(seed=len(lora_names)))  # same name, synthesised
        elif node["class_type"] == "EmptyLatentImage":
            inputs["width"] = inputs["height"] = 64
        elif node["class_type"] == "SaveImage":
            inputs["filename_prefix"] = f"workflow_{path.stem}"
    if path.stem in RECOGNISED and SAVED not in path.parents:
        status, body = client._request("/fewstep/lora_info?" + urllib.parse.urlencode({"lora_name": lora_names[0]}))
        assert status == 200
        info = json.loads(body)
        assert (info["preset"], info["steps"]) == RECOGNISED[path.stem]
    result = client.run(graph)
    assert result.status == "success", result.error
    save = nodes_of(graph, "SaveImage")[0]
    assert result.outputs[save]["images"][0]["filename"].startswith(f"workflow_{path.stem}")


def teacher_workflows(paths=None) -> list[Path]:
    return [p for p in (paths or api_workflows())
            if any(n["inputs"].get("ckpt_name") == DEFAULT_CHECKPOINT for n in load(p).values())]


def test_every_teacher_workflow_runs_here_or_in_a_named_test():
    root = Path(__file__).parents[2]
    stems = {p.stem for p in teacher_workflows()}
    for name, test_file in RUN_ELSEWHERE.items():
        assert name in stems, f"{name} is no teacher workflow any more: drop it from RUN_ELSEWHERE"
        assert (root / test_file).is_file(), test_file
    assert "ab_test_teacache" in {p.stem for p in teacher_workflows() if p.stem not in RUN_ELSEWHERE}


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path", [p for p in teacher_workflows() if p.stem not in RUN_ELSEWHERE], ids=label)
def test_teacher_workflow_runs_end_to_end_as_shipped(path, client):
    """Unchanged: the built-in teacher is on every test server. Every saved picture shows
    something, and an A/B test's B (the sped-up branch) makes fewer model calls than A."""
    graph = load(path)
    result = client.run(graph, timeout=1500)
    assert result.status == "success", result.error
    saves = nodes_of(graph, "SaveImage")
    assert saves
    for node_id in saves:
        refs = result.outputs[node_id]["images"]
        assert refs, graph[node_id]["inputs"]["filename_prefix"]
        for ref in refs:
            image = np.asarray(Image.open(io.BytesIO(client.view(ref["filename"], ref["subfolder"], ref["type"]))))
            assert image.std() / 255 > 0.02, f"{ref['filename']} is a uniform frame"
    for node_id in nodes_of(graph, "FewStepABTest"):
        report = result.outputs[node_id]["text"][0]
        calls_a, calls_b = (float(c) for c in re.findall(r"([\d.]+) model calls/image", report))
        assert calls_b < calls_a, report
        assert "speedup B vs A" in report and "SSIM" in report, report

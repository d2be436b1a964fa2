"""The two shipped distillation workflows end to end through the real server on the
built-in digits teacher, as shipped: `distill_then_use` trains a LoRA and samples 4 steps
at cfg 1 with the trainer's MODEL in the same graph; `use_distilled_lora` (a second graph,
since a combo's file must exist when the prompt is validated) loads the saved file with
FewStepLoraLoader, which hands KSampler the steps/cfg/sampler/scheduler from its metadata.
(test_workflows.py checks both against /object_info like every shipped workflow.)"""

from __future__ import annotations

import io
import json
import re
import shutil
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from comfyui_fewstep.tools.default_model import DEFAULT_CHECKPOINT, DISTILLED_LORA
from comfyui_fewstep.tools.workflows import WORKFLOWS, load, nodes_of

TRAIN, USE = "distill_then_use", "use_distilled_lora"
# A real training run (teacher samples at 30 steps, then training): about a minute on 2 idle
# cores, far longer on a shared machine. This is a guard against a hang, not a speed check.
pytestmark = pytest.mark.timeout(3600)


def png(client, ref) -> np.ndarray:
    raw = client.view(ref["filename"], ref["subfolder"], ref["type"])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.float32) / 255


@pytest.fixture(scope="module")
def trained(server):
    """The training workflow's run, as shipped (its settings are sized to run in about a minute)."""
    graph = load(WORKFLOWS / "api" / f"{TRAIN}.json")
    result = server.client().run(graph, timeout=3000)
    assert result.status == "success", result.error
    return graph, result


def test_the_workflows_use_the_built_in_teacher_and_the_name_the_first_run_saves():
    train, use = load(WORKFLOWS / "api" / f"{TRAIN}.json"), load(WORKFLOWS / "api" / f"{USE}.json")
    for graph in (train, use):
        assert [graph[i]["inputs"]["ckpt_name"] for i in nodes_of(graph, "CheckpointLoaderSimple")] == [DEFAULT_CHECKPOINT]
    trainer = train[nodes_of(train, "FewStepDistillTrainer")[0]]["inputs"]
    assert f"{trainer['lora_name']}_00001.safetensors" == DISTILLED_LORA  # the trainer numbers its runs
    assert use[nodes_of(use, "FewStepLoraLoader")[0]]["inputs"]["lora_name"] == DISTILLED_LORA
    sampler = train[nodes_of(train, "KSampler")[0]]["inputs"]
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == (
        trainer["student_steps"], trainer["student_cfg"], trainer["student_sampler"], trainer["student_scheduler"]) == (
        4, 1.0, "euler", "sgm_uniform")


def test_distill_then_use_trains_saves_and_samples_with_the_student(trained, server, client):
    graph, result = trained
    trainer = nodes_of(graph, "FewStepDistillTrainer")[0]
    report = result.outputs[trainer]["text"][0]
    assert report.startswith(f"FewStep Distill: {DISTILLED_LORA} (sd15, lora rank 8 on attention+mlp)"), report
    assert (server.base / "models" / "loras" / DISTILLED_LORA).is_file()
    # the report is what the Preview as Text node shows
    assert result.outputs[nodes_of(graph, "PreviewAny")[0]]["text"] == [report]
    before, after = (float(v) for v in re.search(r"before (-?[\d.]+) dB, after (-?[\d.]+) dB", report).groups())
    assert after > before, f"the student must get closer to the teacher on held-out seeds: {report}"
    previews = [result.outputs[i]["images"] for i in nodes_of(graph, "PreviewImage")]
    assert [len(p) for p in previews] == [1, 1]  # loss curve, comparison grid
    curve, grid = (png(client, p[0]) for p in previews)
    assert curve.std() > 0.02 and grid.std() > 0.02
    held_out = len(graph[trainer]["inputs"]["prompts"].splitlines())  # one held-out seed per prompt
    # rows teacher / student before / student after, one 32 px column per held-out sample
    assert grid.shape[:2] == (3 * 32, held_out * 32)
    saved = result.outputs[nodes_of(graph, "SaveImage")[0]]["images"]
    images = np.stack([png(client, ref) for ref in saved])
    assert images.shape == (4, 32, 32, 3) and images.std() > 0.05
    events = result.events_of("fewstep.distill")
    assert [e["iteration"] for e in events if "loss" in e] == list(range(1, graph[trainer]["inputs"]["iterations"] + 1))
    assert events[-1]["done"] is True and events[-1]["node"] == trainer


def test_use_distilled_lora_loads_the_file_with_its_preset_and_draws_what_the_trainer_drew(trained, server, client):
    train_graph, train_result = trained
    trainer = nodes_of(train_graph, "FewStepDistillTrainer")[0]
    produced = re.match(r"FewStep Distill: (\S+) ", train_result.outputs[trainer]["text"][0]).group(1)
    loras = server.base / "models" / "loras"
    if produced != DISTILLED_LORA:  # a server that had run the workflow before numbers the file on
        shutil.copyfile(loras / produced, loras / DISTILLED_LORA)
    status, body = client._request("/fewstep/lora_info?" + urllib.parse.urlencode({"lora_name": DISTILLED_LORA}))
    assert status == 200
    info = json.loads(body)
    assert (info["steps"], info["cfg"], info["sampler_name"], info["scheduler"]) == (4, 1.0, "euler", "sgm_uniform")

    graph = load(WORKFLOWS / "api" / f"{USE}.json")
    result = client.run(graph)
    assert result.status == "success", result.error
    shown = result.outputs[nodes_of(graph, "PreviewAny")[0]]["text"][0]
    assert "FewStep Distill" in shown, shown
    loaded = np.stack([png(client, ref) for ref in result.outputs[nodes_of(graph, "SaveImage")[0]]["images"]])
    direct = np.stack([png(client, ref) for ref in train_result.outputs[nodes_of(train_graph, "SaveImage")[0]]["images"]])
    # Same seed, prompt and settings: the file is the student. The trainer applies fp32 adapters
    # as weight wrappers, the loader bakes them in: a few ulps, at most one 8-bit level.
    assert loaded.shape == direct.shape == (4, 32, 32, 3)
    assert np.abs(loaded - direct).max() <= 1 / 255 + 1e-6


def test_the_ui_trainer_holds_the_api_settings_in_widget_order(client):
    """The UI file stores widget values by position: they must be the API file's inputs."""
    info = client.object_info()["FewStepDistillTrainer"]
    api = load(WORKFLOWS / "api" / f"{TRAIN}.json")
    inputs = api[nodes_of(api, "FewStepDistillTrainer")[0]]["inputs"]
    ui = next(n for n in load(WORKFLOWS / f"{TRAIN}.json")["nodes"] if n["type"] == "FewStepDistillTrainer")
    widgets = [name for name in info["input_order"]["required"] if not isinstance(inputs[name], list)]
    assert ui["widgets_values"] == [inputs[name] for name in widgets]

"""FewStepDistillTrainer in a real ComfyUI server, over HTTP and the websocket: training
runs inside the server's inference_mode prompts (target "attention": the layers outside it
get identity wrappers, so backward must pass through them), the LoRA is listed by the
server afterwards, loss events reach the client, bad input fails with a message naming the
problem while the server keeps serving, and Cancel (POST /interrupt) ends the prompt as
interrupted with a resume file and no half-written file."""

from __future__ import annotations

import json
import time

import pytest
import torch
from safetensors import safe_open

from comfyui_fewstep.tools.default_model import DEFAULT_CHECKPOINT
from comfyui_fewstep.tools.graphs import Graph, txt2img
from comfyui_fewstep.tools.teacher import prompt_for

EVENT = "fewstep.distill"
SMALL = dict(prompts="\n".join(prompt_for(d) for d in (2, 5)), negative="", width=32, height=32, teacher_steps=6,
             teacher_cfg=5.0, teacher_sampler="euler", teacher_scheduler="normal", student_steps=2, student_cfg=1.0,
             student_sampler="euler", student_scheduler="sgm_uniform", samples_per_prompt=2, iterations=4,
             learning_rate=1e-3, lr_schedule="constant", adapter="lora", rank=2, alpha=2.0, target="attention",
             batch_size=2, seed=0, gradient_checkpointing=True, training_dtype="fp32", save_every=0, resume="")


def trainer_graph(name: str, **changes) -> tuple[dict, str]:
    g = Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name=DEFAULT_CHECKPOINT)
    trainer = g.add("FewStepDistillTrainer", model=g.out(ckpt), clip=g.out(ckpt, 1),
                    **{**SMALL, "lora_name": name, **changes})
    return g.to_api(), trainer


def loras_folder(server):
    return server.base / "models" / "loras"


def run_files(server, stem: str) -> list[str]:
    """Every file of this run name in the loras folder, hidden temporaries included."""
    folder = loras_folder(server)
    return sorted(p.name for p in folder.iterdir() if stem in p.name) if folder.is_dir() else []


@pytest.fixture(scope="module")
def attention_run(server):
    """One finished training run in the server (target "attention"): (result, trainer node id)."""
    graph, trainer = trainer_graph("server_attention")
    result = server.client().run(graph)
    assert result.status == "success", result.error
    return result, trainer


def test_training_runs_inside_the_server_and_the_lora_is_listed(server, client, attention_run):
    result, trainer = attention_run
    name = "server_attention_00001.safetensors"
    assert client.get_json("/models/loras").count(name) == 1
    assert name in client.object_info()["LoraLoader"]["input"]["required"]["lora_name"][0]
    assert run_files(server, "server_attention") == ["server_attention_00001.distill", "server_attention_00001.json",
                                                     name]
    # the headless config the node writes beside the LoRA, rebuilt from the graph (tools/distill_cli.py runs it)
    headless = json.loads((loras_folder(server) / "server_attention_00001.json").read_text())
    assert headless["checkpoint"] == DEFAULT_CHECKPOINT and headless["loras"] == []
    assert headless["prompts"] == SMALL["prompts"].splitlines()
    assert headless["distill"]["target"] == "attention" and headless["distill"]["lora_name"] == "server_attention"

    # Gradients flowed under the server's inference_mode: LoRA "down" weights start at zero
    # (ComfyUI's LoRAAdapter.create_train) and only an optimizer step moves them.
    with safe_open(str(loras_folder(server) / name), framework="pt") as f:
        downs = [f.get_tensor(k) for k in f.keys() if k.endswith(".lora_down.weight")]
        modules = {k.split(".")[0] for k in f.keys()}
        config = json.loads(f.metadata()["fewstep_distill.config"])
    assert downs and all(d.abs().max() > 0 for d in downs)
    assert config["target"] == "attention" and all("_attn" in m for m in modules), modules

    events = [e for e in result.events_of(EVENT)]
    assert events and {e["node"] for e in events} == {trainer}
    assert [e["iteration"] for e in events if "loss" in e] == [1, 2, 3, 4]
    assert all(e["iterations"] == 4 and e["loss"] > 0 for e in events if "loss" in e)
    assert events[-1]["done"] is True and isinstance(events[-1]["heldout_psnr"], float)
    assert any(e["node"] == trainer for e in result.events_of("progress"))


def test_the_config_the_node_wrote_reproduces_its_run_headless(server, attention_run, distill_cli, tmp_path):
    """The user's path from a graph to torchrun: run tools/distill_cli.py on the `<lora>.json`
    the node wrote. In the same ComfyUI install the checkpoint name and the user folder (its
    teacher cache) resolve as in the server; here they are the test server's, so the copy
    names them. Same settings, seeds and teacher samples, and the server's thread count:
    the weights come out bit-identical."""
    config = json.loads((loras_folder(server) / "server_attention_00001.json").read_text())
    config.update(checkpoint=str(server.base / "models" / "checkpoints" / config["checkpoint"]), output="loras",
                  user_directory=str(server.base / "user"))
    (tmp_path / "node.json").write_text(json.dumps(config))
    done = distill_cli.run(tmp_path / "node.json", threads=None)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reusing 6 of 6 teacher samples" in done.stdout, done.stdout[-2000:]
    from safetensors.torch import load_file

    node = load_file(str(loras_folder(server) / "server_attention_00001.safetensors"))
    headless = load_file(str(tmp_path / "loras" / "server_attention_00001.safetensors"))
    assert node.keys() == headless.keys()
    assert all(torch.equal(node[k], headless[k]) for k in node)


@pytest.mark.parametrize("change, message", [
    ({"prompts": "  \n\n"}, "the prompt list is empty"),
    ({"lora_name": "../evil"}, "lora_name '../evil' must be a plain file name"),
])
def test_bad_input_is_an_error_naming_it_and_the_server_keeps_serving(server, client, change, message):
    before = sorted(p.name for p in loras_folder(server).iterdir()) if loras_folder(server).is_dir() else []
    graph, _ = trainer_graph("server_bad", **change)
    result = client.run(graph)
    assert result.status == "error"
    assert result.error["node_type"] == "FewStepDistillTrainer"
    assert message in result.error["exception_message"], result.error["exception_message"]
    after = sorted(p.name for p in loras_folder(server).iterdir()) if loras_folder(server).is_dir() else []
    assert after == before, "a refused run writes nothing"
    assert not list(server.base.rglob("evil*"))
    # the next prompt runs
    good, ids = txt2img(DEFAULT_CHECKPOINT, prompt=prompt_for(4), steps=2, width=32, height=32, save_prefix=None)
    good.add("PreviewImage", images=good.out(ids["decode"]))
    assert client.run(good.to_api()).status == "success"


def test_interrupt_ends_the_prompt_as_interrupted_and_leaves_a_resume_file(server, client):
    """Cancel during training: the engine saves what was trained, then re-raises, so the
    prompt reports interrupted (a swallowed interrupt would report success)."""
    import websocket

    graph, trainer = trainer_graph("server_cut", iterations=100000)
    ws = websocket.create_connection(f"{client.url.replace('http', 'ws', 1)}/ws?clientId={client.client_id}",
                                     timeout=600)
    try:
        prompt_id = client.queue(graph)
        status, pressed, deadline = None, False, time.monotonic() + 600
        while status is None and time.monotonic() < deadline:
            raw = ws.recv()
            if not isinstance(raw, str):
                continue
            msg = json.loads(raw)
            data = msg.get("data") or {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            kind = msg.get("type")
            if kind == EVENT and data.get("iteration", 0) >= 1 and not pressed:
                status_code, _ = client._request("/interrupt", {})
                assert status_code == 200
                pressed = True
            elif kind in ("execution_success", "execution_error", "execution_interrupted"):
                status = kind
    finally:
        ws.close()
    assert pressed, "training never reported an iteration"
    assert status == "execution_interrupted"
    client.wait_for_history(prompt_id)
    files = run_files(server, "server_cut")
    assert "server_cut_00001.distill" in files
    checkpoints = [f for f in files if f.startswith("server_cut_00001_it") and f.endswith(".safetensors")]
    assert len(checkpoints) == 1, files
    assert not [f for f in files if f.endswith(".partial") or f.startswith(".")], files
    assert "server_cut_00001.safetensors" not in files  # the final name only for a finished run

    # The resume file continues the run: resumed to where it stopped, it finishes at once.
    stopped = int(checkpoints[0].split("_it")[1].split(".")[0])
    graph, _ = trainer_graph("server_cut", iterations=stopped, resume="server_cut_00001.distill")
    result = client.run(graph)
    assert result.status == "success", result.error
    assert "server_cut_00002.safetensors" in run_files(server, "server_cut")

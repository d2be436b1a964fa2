"""FewStepLoraLoader and GET /fewstep/lora_info in a real ComfyUI server, with synthesised
LoRA files in its models/loras: outputs drive core KSampler, a file changed on disk reruns
the node, and every kind of bad input fails clearly, changes no file, and leaves the
server serving."""

import json
import os
import urllib.parse

import pytest
import torch

from comfyui_fewstep.tools.graphs import Graph
from comfyui_fewstep.tools.server import PromptRejected
from comfyui_fewstep.tools.synth_loras import fewstep_metadata, sdxl_only_lora, tiny_sd15_lora, write_lora


@pytest.fixture(scope="module")
def loras(server):
    folder = server.base / "models" / "loras"
    write_lora(folder / "Hyper-SD15-8steps-lora.safetensors", tiny_sd15_lora(seed=1))
    write_lora(folder / "e2e_model.safetensors", tiny_sd15_lora(seed=2, text_encoder=True), fewstep_metadata("lcm-lora", steps=4))
    write_lora(folder / "e2e_changing.safetensors", tiny_sd15_lora(seed=3))
    write_lora(folder / "e2e_sdxl_only.safetensors", sdxl_only_lora())
    nan = tiny_sd15_lora(seed=4)
    nan[next(iter(nan))][0, 0] = float("nan")
    write_lora(folder / "e2e_nan.safetensors", nan)
    data = (folder / "e2e_changing.safetensors").read_bytes()
    (folder / "e2e_truncated.safetensors").write_bytes(data[: len(data) // 2])
    (folder / "e2e_corrupt.safetensors").write_bytes(data[:8] + b"\x00garbage" + data[16:])
    torch.save(tiny_sd15_lora(seed=5), folder / "e2e_pickle.pt")
    return folder


def lora_graph(lora_name, seed=1, steps=-1, preset="auto", prefix="lora"):
    g = Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name="tiny-sd15.safetensors")
    lora = g.add("FewStepLoraLoader", model=g.out(ckpt, 0), clip=g.out(ckpt, 1), lora_name=lora_name,
                 strength_model=1.0, strength_clip=1.0, preset=preset, steps=steps)
    pos = g.add("CLIPTextEncode", text="seven", clip=g.out(lora, 1))
    neg = g.add("CLIPTextEncode", text="", clip=g.out(lora, 1))
    latent = g.add("EmptyLatentImage", width=64, height=64, batch_size=1)
    samples = g.add("KSampler", model=g.out(lora, 0), seed=seed, steps=g.out(lora, 2), cfg=g.out(lora, 3),
                    sampler_name=g.out(lora, 4), scheduler=g.out(lora, 5), positive=g.out(pos), negative=g.out(neg),
                    latent_image=g.out(latent), denoise=1.0)
    decode = g.add("VAEDecode", samples=g.out(samples), vae=g.out(ckpt, 2))
    save = g.add("SaveImage", images=g.out(decode), filename_prefix=prefix)
    return g, {"lora": lora, "save": save, "sampler": samples}


def snapshot(base):
    """Every file under the server's base directory (but its log): name -> (size, mtime)."""
    out = {}
    for root, _, files in os.walk(base, followlinks=False):
        for f in files:
            p = os.path.join(root, f)
            if f != "server.log" and not os.path.islink(p):
                st = os.stat(p)
                out[os.path.relpath(p, base)] = (st.st_size, st.st_mtime_ns)
    return out


def cached_nodes(result):
    return {n for data in result.events_of("execution_cached") for n in data.get("nodes", [])}


def test_object_info_lists_the_node_with_ksampler_linkable_outputs(client, loras):
    info = client.object_info()
    node = info["FewStepLoraLoader"]
    ksampler = info["KSampler"]["input"]["required"]
    assert node["output_name"] == ["MODEL", "CLIP", "steps", "cfg", "sampler_name", "scheduler", "info", "sigmas", "guidance"]
    assert node["output"][4] == ksampler["sampler_name"][0] and node["output"][5] == ksampler["scheduler"][0]
    assert "e2e_model.safetensors" in node["input"]["required"]["lora_name"][1]["options"]
    assert node["category"] == "FewStep/loaders"


def test_loader_outputs_drive_core_ksampler(client, loras):
    g, ids = lora_graph("e2e_model.safetensors", prefix="lora_lcm")
    result = client.run(g.to_api())
    assert result.status == "success", result.error
    assert result.outputs[ids["save"]]["images"]


def test_a_file_changed_on_disk_under_the_same_name_reruns_the_node(client, loras):
    g, ids = lora_graph("e2e_changing.safetensors", seed=7, preset="hyper-sd-nstep", prefix="lora_changing")
    first = client.run(g.to_api())
    assert first.status == "success", first.error
    again = client.run(g.to_api())
    assert ids["lora"] in cached_nodes(again)  # unchanged file: cached
    path = loras / "e2e_changing.safetensors"
    write_lora(path, tiny_sd15_lora(seed=33))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = client.run(g.to_api())
    assert changed.status == "success", changed.error
    assert ids["lora"] not in cached_nodes(changed)


BAD_FILES = [
    ("e2e_truncated.safetensors", ["e2e_truncated.safetensors", "download it again"]),
    ("e2e_corrupt.safetensors", ["e2e_corrupt.safetensors", "download it again"]),
    ("e2e_pickle.pt", ["e2e_pickle.pt", "pickle", "convert the LoRA to .safetensors"]),
    ("e2e_sdxl_only.safetensors", ["e2e_sdxl_only.safetensors", "for sdxl", "SD15 (sd15)", "pick a LoRA made for"]),
    ("e2e_nan.safetensors", ["e2e_nan.safetensors", "NaN or Inf", "download or export it again"]),
]


@pytest.mark.parametrize("name, expected", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files_fail_clearly_change_nothing_and_the_server_keeps_serving(client, server, loras, name, expected):
    before = snapshot(server.base)
    g, ids = lora_graph(name, prefix="never")
    result = client.run(g.to_api())
    assert result.status == "error"
    assert result.error["node_type"] == "FewStepLoraLoader"
    for text in expected:
        assert text in result.error["exception_message"]
    assert snapshot(server.base) == before
    good, _ = lora_graph("Hyper-SD15-8steps-lora.safetensors", seed=100 + len(name), prefix="lora_after_error")
    assert client.run(good.to_api()).status == "success"


BAD_REQUESTS = [
    ({"lora_name": "../checkpoints/tiny-sd15.safetensors"}, ["is a path, not a LoRA name", "models/loras"]),
    ({"lora_name": "/etc/hostname"}, ["'/etc/hostname' is a path", "models/loras"]),
    ({"lora_name": "e2e_model.safetensors", "steps": 0}, ["e2e_model.safetensors: steps 0 cannot run", "Set steps to -1"]),
    ({"lora_name": "Hyper-SD15-8steps-lora.safetensors", "steps": 0, "preset": "hyper-sd-nstep"},
     ["Hyper-SD15-8steps-lora.safetensors: steps 0", "Set steps to -1"]),
]


@pytest.mark.parametrize("change, expected", BAD_REQUESTS, ids=["dotdot", "absolute", "steps0", "steps0-preset"])
def test_bad_requests_are_refused_at_validation(client, server, loras, change, expected):
    before = snapshot(server.base)
    g, ids = lora_graph("e2e_model.safetensors", prefix="never")
    g.nodes[ids["lora"]]["inputs"].update(change)
    with pytest.raises(PromptRejected) as err:
        client.queue(g.to_api())
    errors = err.value.payload["node_errors"][ids["lora"]]["errors"]
    text = " ".join(e["details"] for e in errors)
    for part in expected:
        assert part in text
    assert snapshot(server.base) == before
    good, _ = lora_graph("e2e_model.safetensors", seed=11, prefix="lora_after_reject")
    assert client.run(good.to_api()).status == "success"


def test_an_overridden_step_count_that_contradicts_the_file_fails_at_run(client, loras):
    g, _ = lora_graph("Hyper-SD15-8steps-lora.safetensors", steps=4, prefix="never")
    result = client.run(g.to_api())
    assert result.status == "error"
    assert "distilled for 8 steps" in result.error["exception_message"]


def route(client, path="/fewstep/lora_info", **params):
    status, body = client._request(f"{path}?{urllib.parse.urlencode(params)}")
    return status, json.loads(body)


def test_route_returns_the_recognition_for_a_lora_name(client, loras):
    status, body = route(client, lora_name="Hyper-SD15-8steps-lora.safetensors")
    assert status == 200
    assert (body["preset"], body["steps"], body["cfg"], body["sampler_name"], body["scheduler"]) == (
        "hyper-sd-nstep", 8, 1.0, "euler", "sgm_uniform")
    assert body["badge"].startswith("Hyper-SD N-step LoRA") and body["recognised_by"] == "name"
    status, body = route(client, "/api/fewstep/lora_info", lora_name="e2e_model.safetensors", steps=6)
    assert status == 200 and (body["recognised_by"], body["steps"], body["sampler_name"]) == ("metadata", 6, "lcm")


@pytest.mark.parametrize("params, status, text", [
    ({"lora_name": "../checkpoints/tiny-sd15.safetensors"}, 400, "is a path"),
    ({"lora_name": "/etc/passwd"}, 400, "is a path"),
    ({"lora_name": "..\\..\\secret.safetensors"}, 400, "is a path"),
    ({"lora_name": "missing.safetensors"}, 400, "not in ComfyUI's loras folders"),
    ({"lora_name": "e2e_truncated.safetensors"}, 422, "download it again"),
    ({"lora_name": "e2e_pickle.pt"}, 422, "pickle"),
    ({"lora_name": "e2e_model.safetensors", "steps": "x"}, 400, "steps must be an integer"),
])
def test_route_refuses_paths_and_bad_files(client, server, loras, params, status, text):
    before = snapshot(server.base)
    got, body = route(client, **params)
    assert got == status and text in body["error"]
    assert snapshot(server.base) == before

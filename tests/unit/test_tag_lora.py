"""tools/tag_lora.py as a user runs it: a plain script inside their ComfyUI install."""

import subprocess
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from comfyui_fewstep.tools import comfy_runtime as rt

SCRIPT = rt.REPO_ROOT / "tools" / "tag_lora.py"


def _lora(path):
    tensors = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.randn(4, 320),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.randn(320, 4)}
    save_file(tensors, str(path), metadata={"ss_network_dim": "4"})
    return tensors


def _run(*args):
    return subprocess.run([sys.executable, "-I", str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def test_tags_a_generic_file_keeping_tensors_and_other_metadata(tmp_path):
    path = tmp_path / "model.safetensors"
    tensors = _lora(path)
    proc = _run(path, "--preset", "dmd2-sdxl-4step", "--base", "sdxl", "--steps", "4")
    assert proc.returncode == 0, proc.stderr
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        assert meta["fewstep.preset"] == "dmd2-sdxl-4step" and meta["fewstep.steps"] == "4"
        assert meta["fewstep.schema"] == "1" and meta["ss_network_dim"] == "4"
        for key, value in tensors.items():
            assert torch.equal(f.get_tensor(key), value)
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left


def test_unknown_preset_is_refused_and_the_file_is_untouched(tmp_path):
    path = tmp_path / "model.safetensors"
    _lora(path)
    before = path.read_bytes()
    proc = _run(path, "--preset", "no-such-preset", "--base", "sdxl", "--steps", "4")
    assert proc.returncode == 2
    assert "no-such-preset" in proc.stderr
    assert path.read_bytes() == before

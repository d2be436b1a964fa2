"""Finding ComfyUI: a wrong COMFYUI_PATH gets a message saying where we looked and what to do."""

import os
import subprocess
import sys

import pytest

from comfyui_fewstep.tools import comfy_runtime as rt


def test_explicit_comfyui_path_that_is_not_comfyui_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYUI_PATH", str(tmp_path))
    with pytest.raises(rt.ComfyUINotFound) as err:
        rt.find_comfyui()
    message = str(err.value)
    assert str(tmp_path) in message and "COMFYUI_PATH" in message and "make setup" in message
    # an explicit but wrong choice must not silently fall back to the bundled runtime
    assert str(rt.BUNDLED_COMFYUI) not in message


def test_comfyui_path_is_honoured(tmp_path, monkeypatch):
    (tmp_path / "comfy").mkdir()
    (tmp_path / "main.py").write_text("")
    (tmp_path / "comfy" / "model_management.py").write_text("")
    monkeypatch.setenv("COMFYUI_PATH", str(tmp_path))
    assert rt.find_comfyui() == tmp_path.resolve()


@pytest.mark.parametrize("module", ["comfyui_fewstep.tools.serve", "comfyui_fewstep.tools.demo"])
def test_entry_points_explain_a_missing_comfyui(module, tmp_path):
    env = dict(os.environ, COMFYUI_PATH=str(tmp_path / "nowhere"))
    proc = subprocess.run([sys.executable, "-P", "-m", module], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "ComfyUI was not found" in proc.stderr and str(tmp_path / "nowhere") in proc.stderr
    assert "COMFYUI_PATH" in proc.stderr

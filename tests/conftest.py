"""Fixtures for the four test layers: unit (plain code), comfy (ComfyUI in-process),
e2e (a real ComfyUI server over HTTP/websocket) and browser (chromium on that server).

The pack is imported once, as the package `comfyui_fewstep` (a link that `make setup`
puts on the venv's path); the checkout itself is never on sys.path.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from comfyui_fewstep.tools import comfy_runtime as rt

# `python -m pytest` from the checkout puts the checkout on sys.path, where the pack's
# nodes/ would hide ComfyUI's `nodes` module. Tests see the pack only as comfyui_fewstep.
sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != rt.REPO_ROOT]

# Under pytest-xdist (`-n 2`) every worker, and every process it starts (servers, torchrun
# ranks), gets one torch thread: two workers with two threads each on 2 cores spin-wait
# on each other (a tiny SDXL forward took ~3.5 s instead of ~0.1 s).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

LAYERS = ("unit", "comfy", "e2e", "browser")
ARTIFACTS = rt.REPO_ROOT / "tests" / "artifacts"


def pytest_collection_modifyitems(items):
    needs_comfyui = False
    for item in items:
        parts = Path(str(item.fspath)).parts
        for layer in LAYERS[1:]:
            if layer in parts:
                item.add_marker(getattr(pytest.mark, layer))
                needs_comfyui = True
    if needs_comfyui:  # the unit layer runs without ComfyUI
        try:
            rt.find_comfyui()
        except rt.ComfyUINotFound as missing:
            pytest.exit(str(missing), returncode=2)


@pytest.fixture(scope="session")
def comfy():
    """ComfyUI imported as a library (CPU when there is no GPU)."""
    return rt.import_comfy_for_library_use()


@pytest.fixture(scope="session")
def pack_nodes(comfy) -> dict:
    """node id -> node class, exactly as ComfyUI gets them from comfy_entrypoint()."""
    import comfyui_fewstep

    extension = asyncio.run(comfyui_fewstep.comfy_entrypoint())
    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(extension.get_node_list())}


@pytest.fixture(scope="session")
def tiny_sd15_path(comfy) -> Path:
    from comfyui_fewstep.tools.tiny_models import tiny_sd15_checkpoint

    return tiny_sd15_checkpoint()


@pytest.fixture(scope="session")
def tiny_sd15(tiny_sd15_path):
    """(MODEL, CLIP, VAE) loaded by ComfyUI's own checkpoint loader."""
    import comfy.sd

    model, clip, vae = comfy.sd.load_checkpoint_guess_config(str(tiny_sd15_path), output_vae=True, output_clip=True)[:3]
    return model, clip, vae


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def server(tmp_path_factory, tiny_sd15_path):
    """A real ComfyUI main.py with this pack in custom_nodes/, the tiny random checkpoint
    (as tiny-sd15.safetensors) and the default models that `make demo` uses."""
    from comfyui_fewstep.tools.default_model import install_default_models
    from comfyui_fewstep.tools.server import ComfyServer, prepare_base_directory
    from comfyui_fewstep.tools.tiny_models import install_checkpoint

    base = prepare_base_directory(tmp_path_factory.mktemp("comfy_base"))
    install_checkpoint(tiny_sd15_path, base / "models", "tiny-sd15.safetensors")
    install_default_models(base / "models")
    srv = ComfyServer(base, extra_args=os.environ.get("FEWSTEP_SERVER_ARGS", "").split())
    srv.start()  # raises with the server log when startup fails
    try:
        yield srv
    finally:
        srv.stop()
        (ARTIFACTS).mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER")  # one server per worker under -n
        (ARTIFACTS / (f"server-{worker}.log" if worker else "server.log")).write_text(srv.log_text())


@pytest.fixture
def client(server):
    return server.client()

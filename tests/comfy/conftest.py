"""Fixtures for the trained digits teacher (tools/teacher.py).

The first session on a fresh machine trains it (~10 minutes on 2 idle cores, much longer
on a busy machine); later sessions load the cached file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyui_fewstep.tools import comfy_runtime as rt

# Test modules of this tier import the pack's hook modules, which import ComfyUI at the
# top: ComfyUI must be imported here first, with its CPU flag set when there is no GPU.
try:
    rt.import_comfy_for_library_use()
except rt.ComfyUINotFound as missing:
    pytest.exit(str(missing), returncode=2)

# Whichever test first asks for the teacher pays for training it: give those tests room
# beyond the suite's default timeout (pyproject.toml) instead of failing a cold cache.
TEACHER_TIMEOUT = 3600


def pytest_collection_modifyitems(items):
    for item in items:
        if "teacher_path" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(TEACHER_TIMEOUT))


@pytest.fixture(scope="session")
def teacher_path(comfy) -> Path:
    from comfyui_fewstep.tools.teacher import teacher_checkpoint

    return teacher_checkpoint()


@pytest.fixture(scope="session")
def teacher(teacher_path):
    """(MODEL, CLIP, VAE) of the teacher, loaded by ComfyUI's own checkpoint loader."""
    from comfyui_fewstep.tools.teacher import load_teacher

    return load_teacher(teacher_path)

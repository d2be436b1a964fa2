"""Fixtures of the in-process ComfyUI tier: the tiny models of every family
(tools/tiny_families.py), the tiny SD1.5's conditioning, and the trained digits teacher
(tools/teacher.py). The first session on a fresh machine trains the teacher (~10 minutes
on 2 idle cores, much longer on a busy machine); later sessions load the cached file.
"""

from __future__ import annotations

import functools
import gc
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


@pytest.fixture(scope="module")
def lora_dirs(tmp_path_factory, comfy):
    """A loras folder and a user directory of this module's own, first in ComfyUI's paths."""
    from types import SimpleNamespace

    import folder_paths

    loras = tmp_path_factory.mktemp("loras")
    user = tmp_path_factory.mktemp("user")
    paths = folder_paths.folder_names_and_paths["loras"][0]
    old_user = folder_paths.get_user_directory()
    paths.insert(0, str(loras))
    folder_paths.set_user_directory(str(user))
    yield SimpleNamespace(loras=loras, user=user)
    paths.remove(str(loras))
    folder_paths.set_user_directory(old_user)


@pytest.fixture(scope="module")
def tiny(comfy):
    """tiny(name, seed=0) -> tools.tiny_families.TinyFamily, built once per test module (tests
    only ever patch clones). While a module uses it, torch runs on one thread and ComfyUI's
    progress bars are off: on a busy 2-core machine two intra-op threads spin-wait on each
    other, and a tiny SDXL forward took ~3.5 s instead of ~0.1 s with one thread."""
    import torch
    import comfy.utils

    from comfyui_fewstep.tools import tiny_families as tf

    @functools.lru_cache(maxsize=None)
    def build(name: str, seed: int = 0):
        return tf.build(name, seed=seed)

    threads, bar = torch.get_num_threads(), comfy.utils.PROGRESS_BAR_ENABLED
    torch.set_num_threads(1)
    comfy.utils.PROGRESS_BAR_ENABLED = False
    yield build
    torch.set_num_threads(threads)
    comfy.utils.PROGRESS_BAR_ENABLED = bar
    build.cache_clear()
    gc.collect()  # ModelPatcher.__del__ fails noisily if it first runs at interpreter shutdown


@pytest.fixture(scope="module")
def conds(tiny_sd15):
    """(positive "seven", negative "") encoded by the tiny SD1.5's CLIP through CLIPTextEncode."""
    import nodes

    _, clip, _ = tiny_sd15
    return nodes.CLIPTextEncode().encode(clip, "seven")[0], nodes.CLIPTextEncode().encode(clip, "")[0]


@pytest.fixture(scope="module")
def sd15(tiny):
    """The tiny SD1.5 family (tools.tiny_families.TinyFamily), shared by a test module."""
    return tiny("sd15")


@pytest.fixture(scope="module")
def flux(tiny):
    """The tiny FLUX.1 family, shared by a test module."""
    return tiny("flux")


def _core_sample(family, model=None, steps=2, sampler="euler", cfg=2.0):
    import comfy.sample
    import torch

    model = model or family.model
    latent = family.latent["samples"]
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    return comfy.sample.sample(model, noise, steps, cfg, sampler, family.scheduler, family.positive, family.negative,
                               latent, seed=0, disable_pbar=True)


@pytest.fixture(scope="session")
def core_sample(comfy):
    """core_sample(family, model=None, steps=2, sampler="euler", cfg=2.0): a short run of
    core sampling on a tiny family (the code path every wrapper sees), its noise seeded 0."""
    return _core_sample

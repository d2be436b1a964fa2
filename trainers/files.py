"""Files a run writes: numbered LoRA names that never overwrite, atomic writes, and the
resume file (safetensors tensors + JSON state, never pickle).

Pure: standard library, torch and safetensors. A half-written file never carries a model
extension, so no loader lists it: `.name.safetensors.<pid>.<thread>.partial` until the final rename.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

LORA_EXT = ".safetensors"
RESUME_EXT = ".distill"  # safetensors content, an extension no ComfyUI loader lists
RESUME_KEY = "fewstep_distill.resume"


class DistillFileError(RuntimeError):
    """A file could not be written or read; the message names the file and the fix."""


def run_stem(folder: Path, base: str) -> str:
    """`base_00001`, the first number for which no file of this run name exists yet."""
    taken = set()
    pattern = re.compile(re.escape(base) + r"_(\d{5})(?:_it\d+)?(?:\.safetensors|\.distill|\.json)$")
    if folder.is_dir():
        for entry in folder.iterdir():
            if m := pattern.match(entry.name):
                taken.add(int(m.group(1)))
    n = 1
    while n in taken:
        n += 1
    return f"{base}_{n:05d}"


def checkpoint_name(stem: str, iteration: int) -> str:
    return f"{stem}_it{iteration:06d}{LORA_EXT}"


def write_atomic(path: Path, data: bytes) -> Path:
    """Write bytes under a temporary non-model name in the same folder, then rename. The
    name is per process: two runs writing the same cache file (two servers sharing a user
    folder, two test workers) each finish their own file and the last rename wins."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DistillFileError(f"cannot write {path}: {e.strerror or e}. Check that the folder exists, is writable "
                               "and has free space; nothing was left behind.") from e
    return path


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    return write_atomic(path, st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))


def save_resume(path: Path, tensors: dict[str, torch.Tensor], state: dict) -> Path:
    """`state` is JSON-able; tensors include adapter weights, optimizer moments and
    generator states (uint8)."""
    return save_tensors(path, tensors, {RESUME_KEY: json.dumps(state, sort_keys=True)})


def load_resume(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError as e:
        raise DistillFileError(f"resume file {path.name} does not exist; leave resume empty to start fresh, or give "
                               "the name of a .distill file in the loras folder") from e
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise DistillFileError(f"resume file {path.name} is not a FewStep resume file ({e}); pick the .distill "
                               "file written beside the LoRA") from e
    if RESUME_KEY not in meta:
        raise DistillFileError(f"{path.name} holds no FewStep Distill state; pick the .distill file written "
                               "beside the LoRA")
    return tensors, json.loads(meta[RESUME_KEY])


def resolve_in(folder: Path, name: str, ext: str) -> Path:
    """`name` (with or without `ext`) inside `folder`; refuses folders and '..'."""
    if not name or Path(name).name != name or name in (".", "..") or "\\" in name:
        raise DistillFileError(f"{name!r} must be a plain file name inside the loras folder (no folders or '..')")
    stem = name[: -len(LORA_EXT)] if name.endswith(LORA_EXT) else name
    return folder / (stem if stem.endswith(ext) else stem + ext)

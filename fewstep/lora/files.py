"""Reading LoRA files safely: the safetensors header (never a pickle), FewStep's own
metadata schema, and a helper that writes that metadata into a file.

Only the header is parsed here (names, dtypes, shapes, offsets, metadata); tensor data is
read solely by `nonfinite_tensors`, through the safetensors library. Pickle checkpoints
(.ckpt/.pt/.pth/.bin) are refused: unpickling can run arbitrary code.

FewStep metadata schema (string values in the safetensors `__metadata__`, schema 1):

    fewstep.schema     "1"
    fewstep.preset     a preset id from presets.json (optional when the fields below say it all)
    fewstep.family     e.g. "DMD2"
    fewstep.base       architecture id(s), comma-separated: sd15, sd21, sdxl, ssd1b, sd3, flux,
                       qwen_image, wan, wan22_5b
    fewstep.steps      step count the LoRA was made for, e.g. "4"
    fewstep.cfg        e.g. "1.0"
    fewstep.sampler    a ComfyUI sampler name, e.g. "lcm"
    fewstep.scheduler  a ComfyUI scheduler name, e.g. "sgm_uniform"
    fewstep.strength   LoRA strength, e.g. "1.0"
    fewstep.source     where the settings come from (text or URL)

Required: schema, base, steps, and either preset or family + cfg + sampler + scheduler.
FewStep's distillation trainer writes these; add them to any file with add_fewstep_metadata().
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .. import architectures
from ..presets.registry import preset_ids

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
FEWSTEP_PREFIX = "fewstep."
FEWSTEP_KEYS = ("schema", "preset", "family", "base", "steps", "cfg", "sampler", "scheduler", "strength", "source")


class LoraFileError(ValueError):
    """A LoRA file that cannot be used as it is; the message names the file and the fix."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class Header:
    path: Path
    size: int  # file size in bytes
    metadata: Mapping[str, str]
    tensors: Mapping[str, TensorInfo]
    data_start: int  # byte offset of the tensor buffer


def _refuse_pickle(path: Path, why: str) -> LoraFileError:
    return LoraFileError(
        f"{path.name}: {why}. FewStep does not load pickle checkpoints because unpickling can run code; "
        "convert the LoRA to .safetensors (or download the .safetensors release) and select that file"
    )


def read_header(path: str | os.PathLike) -> Header:
    """Parse and check a .safetensors header without loading tensors; LoraFileError if unusable."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise _refuse_pickle(path, f"'{path.suffix}' files are pickles")
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
                raise _refuse_pickle(path, "this file is a pickle (torch.save) checkpoint, not safetensors")
            if len(head) < 8:
                raise LoraFileError(f"{path.name}: {size} bytes is too short for a safetensors file; the download is truncated or the file is empty - download it again")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or n > size - 8:
                raise LoraFileError(f"{path.name}: the header claims {n} bytes but the file has {size}; the file is truncated or not safetensors - download it again")
            raw = f.read(n)
    except OSError as e:
        raise LoraFileError(f"{path.name}: cannot read the file ({e.strerror or e}); check that it exists and is readable") from e
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("not an object")
    except (UnicodeDecodeError, ValueError) as e:
        raise LoraFileError(f"{path.name}: the safetensors header is not valid JSON ({e}); the file is corrupt - download it again") from None

    metadata = header.pop("__metadata__", None) or {}
    if not (isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise LoraFileError(f"{path.name}: '__metadata__' must map strings to strings; the file is corrupt")
    data_start = 8 + n
    available = size - data_start
    tensors, end_max = {}, 0
    for name, t in header.items():
        try:
            dtype, shape, (begin, end) = t["dtype"], tuple(t["shape"]), t["data_offsets"]
            nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
            ok = all(isinstance(d, int) and d >= 0 for d in shape) and isinstance(begin, int) and end - begin == nbytes and begin >= 0
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise LoraFileError(f"{path.name}: tensor {name!r} has an invalid header entry; the file is corrupt - download it again")
        tensors[name] = TensorInfo(dtype, shape, nbytes)
        end_max = max(end_max, end)
    if end_max > available:
        raise LoraFileError(
            f"{path.name}: truncated - tensors need {end_max} bytes of data but only {available} are present; download it again"
        )
    if not tensors:
        raise LoraFileError(f"{path.name}: the file holds no tensors; it is not a LoRA")
    return Header(path, size, metadata, tensors, data_start)


@dataclass(frozen=True)
class FewStepMetadata:
    fields: Mapping[str, str]  # the fewstep.* values without the prefix

    @property
    def steps(self) -> int:
        return int(self.fields["steps"])

    @property
    def base(self) -> tuple[str, ...]:
        """Current architecture ids (ids older releases wrote, such as 'sd21', map forward)."""
        return tuple(architectures.canonical(b.strip()) for b in self.fields["base"].split(","))


def read_fewstep_metadata(metadata: Mapping[str, str], file_name: str = "file") -> FewStepMetadata | None:
    """The file's fewstep.* fields, validated; None when it has none."""
    fields = {k[len(FEWSTEP_PREFIX):]: v for k, v in metadata.items() if k.startswith(FEWSTEP_PREFIX)}
    if not fields:
        return None
    return FewStepMetadata(validate_fewstep_fields(fields, file_name))


def _known_architecture(arch_id: str) -> bool:
    try:
        architectures.canonical(arch_id.strip())
    except architectures.UnknownArchitecture:
        return False
    return True


def validate_fewstep_fields(fields: Mapping[str, object], file_name: str = "file") -> dict[str, str]:
    """Check fewstep.* fields (without the prefix); returns them as strings."""
    problems = []
    out = {k: str(v) for k, v in fields.items()}
    unknown = sorted(set(out) - set(FEWSTEP_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {', '.join(FEWSTEP_PREFIX + k for k in unknown)}")
    if out.get("schema") != "1":
        problems.append("fewstep.schema must be '1'")
    if not out.get("base") or not all(_known_architecture(b) for b in out["base"].split(",")):
        problems.append(f"fewstep.base must be one or more of {', '.join(architectures.ids())}")
    if not (out.get("steps", "").isdigit() and int(out["steps"]) >= 1):
        problems.append("fewstep.steps must be a positive integer")
    for key in ("cfg", "strength"):
        if key in out:
            try:
                if not (math.isfinite(float(out[key])) and float(out[key]) > 0):
                    raise ValueError
            except ValueError:
                problems.append(f"fewstep.{key} must be a positive number")
    if "preset" in out and out["preset"] not in preset_ids():
        problems.append(f"fewstep.preset '{out['preset']}' is not a FewStep preset id (see fewstep/presets.json)")
    if "preset" not in out and not all(out.get(k) for k in ("family", "cfg", "sampler", "scheduler")):
        problems.append("give fewstep.preset, or fewstep.family, cfg, sampler and scheduler")
    if problems:
        raise LoraFileError(f"{file_name}: invalid FewStep metadata: {'; '.join(problems)}")
    return out


def add_fewstep_metadata(path: str | os.PathLike, fields: Mapping[str, object], out_path: str | os.PathLike | None = None) -> Path:
    """Write `fields` (keys without 'fewstep.') into a safetensors file's metadata.

    The tensors are copied byte for byte; other metadata is kept. Writes `out_path` (or
    replaces `path`) atomically via a temporary file in the same folder. Example:
        add_fewstep_metadata("my_lora.safetensors", {"schema": 1, "preset": "dmd2-sdxl-4step",
                             "base": "sdxl", "steps": 4})
    """
    header = read_header(path)
    clean = validate_fewstep_fields({"schema": "1", **fields}, header.path.name)
    metadata = {k: v for k, v in header.metadata.items() if not k.startswith(FEWSTEP_PREFIX)}
    metadata.update({FEWSTEP_PREFIX + k: v for k, v in clean.items()})
    with header.path.open("rb") as f:
        f.seek(8)
        entries = json.loads(f.read(header.data_start - 8).decode("utf-8"))
    entries["__metadata__"] = metadata
    blob = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # keep the data 8-byte aligned, as safetensors does
    target = Path(out_path) if out_path is not None else header.path
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, header.path.open("rb") as src:
            out.write(struct.pack("<Q", len(blob)) + blob)
            src.seek(header.data_start)
            while chunk := src.read(16 * 1024 * 1024):
                out.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def nonfinite_tensors(path: str | os.PathLike, limit: int = 5) -> list[str]:
    """Names of (at most `limit`) floating-point tensors holding NaN or Inf."""
    import torch
    from safetensors import safe_open

    bad = []
    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():
            t = f.get_tensor(name)
            if t.is_floating_point() and not torch.isfinite(t).all():
                bad.append(name)
                if len(bad) >= limit:
                    break
    return bad

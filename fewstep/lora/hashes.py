"""Known published LoRA files by SHA-256 prefix, a user-extensible table, and a hash cache
so a file is hashed at most once per (path, size, mtime).

The built-in prefixes are the Hugging Face LFS object ids of the published files (each
model card's "Files" page lists them). Users add their own entries in a JSON file in
FewStep's user folder, <ComfyUI user dir>/fewstep/lora_hashes.json (USER_FILE_NAME; files in
the old place, <user dir>/default/fewstep_lora_hashes.json, are still read):

    {"entries": [{"sha256_prefix": "0123abcd", "preset": "dmd2-sdxl-4step", "steps": 4,
                  "name": "my merge"}]}

`steps` is optional (the preset's default); `name` is a label for `info`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..presets.registry import PresetError, get_preset

USER_FILE_NAME = "lora_hashes.json"
LEGACY_USER_FILE_NAME = "fewstep_lora_hashes.json"
_HEX = re.compile(r"^[0-9a-f]{8,64}$")


@dataclass(frozen=True)
class HashEntry:
    sha256_prefix: str
    preset: str
    steps: int | None
    name: str
    origin: str  # "built-in" or the user file's path


BUILTIN = (
    HashEntry("04fafc77", "sdxl-lightning", 2, "sdxl_lightning_2step_lora.safetensors", "built-in"),
    HashEntry("bf56cf26", "sdxl-lightning", 4, "sdxl_lightning_4step_lora.safetensors", "built-in"),
    HashEntry("5aa30d94", "sdxl-lightning", 8, "sdxl_lightning_8step_lora.safetensors", "built-in"),
    HashEntry("b3d91738", "dmd2-sdxl-4step", 4, "dmd2_sdxl_4step_lora_fp16.safetensors", "built-in"),
    HashEntry("a374289e", "dmd2-sdxl-4step", 4, "dmd2_sdxl_4step_lora.safetensors (fp32)", "built-in"),
    HashEntry("c912df18", "hyper-sd-1step-unified-tcd", None, "Hyper-SDXL-1step-lora.safetensors", "built-in"),
    HashEntry("69b25c01", "hyper-sd-nstep", 2, "Hyper-SDXL-2steps-lora.safetensors", "built-in"),
    HashEntry("12f81a27", "hyper-sd-nstep", 4, "Hyper-SDXL-4steps-lora.safetensors", "built-in"),
    HashEntry("ca689190", "hyper-sd-nstep", 8, "Hyper-SDXL-8steps-lora.safetensors", "built-in"),
)


def _entry(raw: object, origin: str, index: int) -> HashEntry:
    where = f"{origin}: entry #{index}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object")
    prefix = str(raw.get("sha256_prefix", "")).lower()
    if not _HEX.match(prefix):
        raise ValueError(f"{where}: 'sha256_prefix' must be 8-64 hex digits")
    try:
        preset = get_preset(str(raw.get("preset")))
    except PresetError as e:
        raise ValueError(f"{where}: {e}") from None
    steps = raw.get("steps")
    if steps is not None and (not isinstance(steps, int) or steps not in preset.steps):
        raise ValueError(f"{where}: steps {steps!r} is not one of {preset.id}'s counts ({preset.allowed_steps_text()})")
    return HashEntry(prefix, preset.id, steps, str(raw.get("name") or prefix), origin)


def load_hash_table(*user_files: str | os.PathLike | None) -> tuple[list[HashEntry], list[str]]:
    """Built-in entries plus the user's (earlier files first); problems in a user file become
    warnings, not errors, so one bad line never stops LoRA loading. User entries are listed
    (and matched) first."""
    entries, warnings = [], []
    for user_file in user_files:
        if user_file is None or not Path(user_file).exists():
            continue
        origin = str(user_file)
        try:
            data = json.loads(Path(user_file).read_text(encoding="utf-8"))
            raw_entries = data.get("entries") if isinstance(data, dict) else None
            if not isinstance(raw_entries, list):
                raise ValueError(f"{origin}: expected {{\"entries\": [...]}}")
        except (OSError, ValueError) as e:
            warnings.append(f"ignored the user hash list: {e}")
            raw_entries = []
        for i, raw in enumerate(raw_entries):
            try:
                entries.append(_entry(raw, origin, i))
            except ValueError as e:
                warnings.append(f"ignored a user hash entry: {e}")
    return entries + list(BUILTIN), warnings


def match_hash(digest: str, table: list[HashEntry]) -> HashEntry | None:
    digest = digest.lower()
    return next((e for e in table if digest.startswith(e.sha256_prefix)), None)


class HashCache:
    """SHA-256 of files, computed once per (resolved path, size, mtime_ns).

    In memory always; also persisted to `store` (JSON, written atomically) when given, so a
    restart does not rehash. `computed` counts actual hashing passes (for tests and bench).
    """

    def __init__(self, store: str | os.PathLike | None = None):
        self.store = Path(store) if store is not None else None
        self.computed = 0
        self._digests: dict[str, str] = {}
        if self.store is not None and self.store.exists():
            try:
                data = json.loads(self.store.read_text(encoding="utf-8"))
                self._digests = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
            except (OSError, ValueError, AttributeError):
                self._digests = {}  # a damaged cache is only a cache: start again

    @staticmethod
    def key(path: str | os.PathLike) -> str:
        p = Path(path).resolve()
        st = p.stat()
        return f"{p}|{st.st_size}|{st.st_mtime_ns}"

    def cached(self, path: str | os.PathLike) -> str | None:
        return self._digests.get(self.key(path))

    def sha256(self, path: str | os.PathLike) -> str:
        key = self.key(path)
        digest = self._digests.get(key)
        if digest is None:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(16 * 1024 * 1024):
                    h.update(chunk)
            digest = h.hexdigest()
            self.computed += 1
            self._digests[key] = digest
            self._save()
        return digest

    def _save(self) -> None:
        if self.store is None:
            return
        self.store.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.store.parent, prefix=f".{self.store.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self._digests, f)
        os.replace(tmp, self.store)

"""The LoRA files ComfyUI offers, looked up safely, and what FewStep recognises in them.

Only names listed in ComfyUI's `loras` folders resolve: a name with `..`, an absolute path
or a drive is refused before the file system is touched, so neither the node (API clients
can send any string to /prompt) nor the pack's HTTP route can read outside those folders.

Recognition results are cached per file version (path, size, mtime) and user hash list
version, and the SHA-256 behind them is cached on disk (HashCache), so a file is hashed
at most once however often the node runs or the badge asks.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path, PurePosixPath, PureWindowsPath

import folder_paths

from .. import comfy_compat
from .files import LoraFileError, read_fewstep_metadata, read_header
from .hashes import LEGACY_USER_FILE_NAME, USER_FILE_NAME, HashCache, load_hash_table
from .recognition import Recognition, recognise
from .structure import Structure, detect_structure

HASH_CACHE_NAME = "lora_sha256_cache.json"  # in FewStep's user folder


class LoraNameError(ValueError):
    """A lora_name that is not a file in ComfyUI's loras folders (or tries to leave them)."""


def is_plain_relative(name: str) -> bool:
    """True for 'x.safetensors' or 'sub/x.safetensors'; False for absolute paths, drives, '..'."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        return False
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.anchor or ".." in pure.parts:
            return False
    return not re.match(r"^[a-zA-Z]:", name)


def user_hash_file() -> Path:
    """The user's own SHA-256 list (see hashes.py for its format)."""
    return comfy_compat.user_data_dir(USER_FILE_NAME)


def resolve_lora(name: str) -> Path:
    """The file behind a lora_name from ComfyUI's list; LoraNameError (naming the fix) otherwise."""
    if not is_plain_relative(name):
        raise LoraNameError(
            f"lora_name {name!r} is a path, not a LoRA name: FewStep only loads files inside ComfyUI's loras "
            "folders. Put the file in models/loras and pick it from the list (names are relative to that folder)."
        )
    if name not in folder_paths.get_filename_list("loras"):
        folders = ", ".join(folder_paths.get_folder_paths("loras"))
        raise LoraNameError(
            f"LoRA {name!r} is not in ComfyUI's loras folders ({folders}). Put the file there and refresh the "
            "node list (press R in the browser), or pick another LoRA."
        )
    path = folder_paths.get_full_path("loras", name)
    if path is None:
        raise LoraNameError(f"LoRA {name!r} disappeared from the loras folders; refresh the list and pick it again.")
    return Path(path)


def file_version(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class LoraLibrary:
    """Recognition for the files of one ComfyUI install, with its hash table and caches.

    `data_dir` is FewStep's user folder (<user dir>/fewstep); `legacy_hash_file` the hash list
    of releases before it, still read. Thread-safe: the HTTP route recognises files in a
    worker thread while prompts run.
    """

    def __init__(self, data_dir: Path, legacy_hash_file: Path | None = None):
        self.data_dir = Path(data_dir)
        self.legacy_hash_file = legacy_hash_file
        self.hash_cache = HashCache(self.data_dir / HASH_CACHE_NAME)
        self._lock = threading.Lock()
        self._table: tuple[int | None, list, list[str]] | None = None
        self._recognised: dict[tuple, Recognition] = {}
        self._structures: dict[tuple, Structure] = {}

    @property
    def hash_file(self) -> Path:
        return self.data_dir / USER_FILE_NAME

    def _hash_files_version(self) -> tuple:
        return _mtime(self.hash_file), None if self.legacy_hash_file is None else _mtime(self.legacy_hash_file)

    def hash_table(self) -> tuple[list, list[str]]:
        """Built-in plus user entries, re-read only when a user file changes."""
        version = self._hash_files_version()
        if self._table is None or self._table[0] != version:
            entries, warnings = load_hash_table(self.hash_file, self.legacy_hash_file)
            self._table = (version, entries, warnings)
        return self._table[1], self._table[2]

    def fingerprint(self, path: Path) -> tuple:
        """Changes whenever recognition could change: the file or a user hash list."""
        return (*file_version(path), *self._hash_files_version())

    def structure(self, path: Path) -> Structure:
        """The checked header's architecture and rank (LoraFileError for pickles and damaged
        files), read once per file version."""
        key = file_version(path)
        with self._lock:
            found = self._structures.get(key)
            if found is None:
                found = detect_structure(read_header(path))
                self._structures = {k: v for k, v in self._structures.items() if k[0] != key[0]}
                self._structures[key] = found
            return found

    def recognise(self, path: Path) -> tuple[Recognition, list[str]]:
        """Recognition of `path` and warnings about the user hash list; raises LoraFileError."""
        with self._lock:
            table, warnings = self.hash_table()
            key = self.fingerprint(path)
            found = self._recognised.get(key)
            if found is None:
                try:
                    read_fewstep_metadata(read_header(path).metadata, path.name)
                except LoraFileError as e:
                    raise LoraFileError(
                        f"{e}. Fix the fewstep.* entries with tools/tag_lora.py (or add_fewstep_metadata()) or remove "
                        "them: the 'fewstep.' metadata prefix is reserved for FewStep's preset schema."
                    ) from None
                found = recognise(path, table, self.hash_cache)
                self._recognised = {k: v for k, v in self._recognised.items() if k[0] != key[0]}
                self._recognised[key] = found
            return found, list(warnings)


_library: LoraLibrary | None = None
_library_lock = threading.Lock()


def library() -> LoraLibrary:
    """The process-wide library for ComfyUI's user directory (created on first use)."""
    global _library
    data_dir = comfy_compat.user_data_dir()
    with _library_lock:
        if _library is None or _library.data_dir != data_dir:
            _library = LoraLibrary(data_dir, comfy_compat.legacy_user_file(LEGACY_USER_FILE_NAME))
        return _library


__all__ = ["LoraLibrary", "LoraNameError", "file_version", "is_plain_relative", "library", "resolve_lora",
           "user_hash_file"]

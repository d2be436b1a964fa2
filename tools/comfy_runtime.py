"""Find the ComfyUI tree that FewStep's tools, tests and benchmarks run against.

Stdlib only: `make setup` imports this before any dependency is installed.
Users bring their own ComfyUI (`COMFYUI_PATH`); without it we use the runtime that
`make setup` extracts into `.runtime/comfyui`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNTIME_DIR = REPO_ROOT / ".runtime"
BUNDLED_COMFYUI = RUNTIME_DIR / "comfyui"
# The pack is importable as this package name from RUNTIME_DIR / "pkgroot" (a symlink
# to the checkout); never put the checkout itself on sys.path (its nodes/ would hide
# ComfyUI's nodes module).
PACKAGE_NAME = "comfyui_fewstep"
PKG_ROOT = RUNTIME_DIR / "pkgroot"


class ComfyUINotFound(RuntimeError):
    pass


def is_comfyui_tree(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy" / "model_management.py").is_file()


def candidate_paths() -> list[tuple[str, Path]]:
    found = []
    env = os.environ.get("COMFYUI_PATH")
    if env:
        found.append(("COMFYUI_PATH", Path(env).expanduser().resolve()))
    if REPO_ROOT.parent.name == "custom_nodes":
        found.append(("the ComfyUI this pack is installed in", REPO_ROOT.parent.parent))
    found.append(("bundled runtime from `make setup`", BUNDLED_COMFYUI))
    return found


def find_comfyui() -> Path:
    """The ComfyUI root, or a ComfyUINotFound that says where we looked and what to do."""
    looked = []
    for origin, path in candidate_paths():
        if is_comfyui_tree(path):
            return path
        looked.append(f"  - {path} ({origin}): no main.py and comfy/model_management.py there")
        if origin == "COMFYUI_PATH":
            # An explicit choice that is wrong must not silently fall back to another tree.
            break
    raise ComfyUINotFound(
        "ComfyUI was not found. Looked in:\n" + "\n".join(looked) + "\n"
        "Fix: run `make setup` (extracts ComfyUI 0.3.75 into .runtime/comfyui), or point "
        "COMFYUI_PATH at your ComfyUI folder, e.g. `export COMFYUI_PATH=~/ComfyUI`."
    )


def ensure_importable() -> Path:
    """Put ComfyUI's root first on sys.path so `import comfy, nodes, folder_paths` works."""
    root = find_comfyui()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def import_comfy_for_library_use(pytorch_attention: bool = False):
    """Import ComfyUI as a library (no server), on the CPU when no GPU is present.

    ComfyUI reads its command-line flags at import; without a GPU the `cpu` flag must
    be set before anything imports comfy.model_management. `pytorch_attention` is
    `--use-pytorch-cross-attention` (SDPA; the CPU default is sub-quadratic attention);
    like every flag it only takes effect in a process that has not imported ComfyUI yet.
    """
    root = ensure_importable()
    import torch

    try:
        import comfy.cli_args

        if "comfy.model_management" not in sys.modules:
            comfy.cli_args.args.cpu = not torch.cuda.is_available()
            comfy.cli_args.args.use_pytorch_cross_attention = pytorch_attention
        import comfy.model_management  # noqa: F401
    except ImportError as e:
        raise ComfyUINotFound(
            f"ComfyUI at {root} was found but does not import ({e}). Fix: install its requirements "
            f"(`pip install -r {root / 'requirements.txt'}`, or `make setup`), or point COMFYUI_PATH at "
            "a working ComfyUI."
        ) from e
    return comfy

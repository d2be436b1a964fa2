"""`make serve`: ComfyUI on 127.0.0.1 with this pack loaded and the repo's models/ folder."""

from __future__ import annotations

import argparse
import subprocess
import sys

from . import comfy_runtime as rt
from .default_model import install_default_models
from .server import prepare_base_directory, server_command


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("extra", nargs="*", help="more ComfyUI flags, e.g. --use-pytorch-cross-attention")
    args = parser.parse_args(argv)
    try:
        root = rt.find_comfyui()
    except rt.ComfyUINotFound as e:
        print(e, file=sys.stderr)
        return 2
    base = prepare_base_directory(rt.RUNTIME_DIR / "serve", models=rt.REPO_ROOT / "models")
    names = install_default_models(base / "models")
    print(f"FewStep: ComfyUI {root} with this pack; models in {rt.REPO_ROOT / 'models'} ({', '.join(names)})")
    print(f"FewStep: open http://127.0.0.1:{args.port}  (Ctrl-C stops)", flush=True)
    try:
        return subprocess.call(server_command(args.port, base, args.extra), cwd=root)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())

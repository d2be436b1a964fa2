"""Run FewStep Distill headless from a FewStep folder inside ComfyUI's custom_nodes/.

    python custom_nodes/comfyui-fewstep/tools/distill_cli.py --config distill.toml
    torchrun --nproc_per_node 2 custom_nodes/comfyui-fewstep/tools/distill_cli.py --config distill.toml

ComfyUI is found through COMFYUI_PATH, else as the folder holding custom_nodes/. The pack
is imported under its package name from this file's location; its root is never put on
sys.path (its nodes/ would hide ComfyUI's nodes module). See trainers/cli.py.
"""

import importlib
import importlib.util
import sys
from pathlib import Path


def _pack():
    if __package__:
        return importlib.import_module(__package__.rsplit(".", 1)[0])
    root = Path(__file__).resolve().parent.parent
    if "comfyui_fewstep" not in sys.modules:
        spec = importlib.util.spec_from_file_location("comfyui_fewstep", root / "__init__.py",
                                                      submodule_search_locations=[str(root)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["comfyui_fewstep"]


if __name__ == "__main__":
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    package = _pack().__name__
    sys.exit(importlib.import_module(f"{package}.trainers.cli").main())

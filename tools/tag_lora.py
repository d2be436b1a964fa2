"""Write FewStep's preset metadata into a LoRA file, so FewStepLoraLoader recognises it
whatever the file is called.

Works inside any ComfyUI install, no setup needed:
    python custom_nodes/comfyui-fewstep/tools/tag_lora.py models/loras/my_lora.safetensors \
        --preset dmd2-sdxl-4step --base sdxl --steps 4
Tensors are copied byte for byte; the file is replaced atomically (or see --out).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path


def _lora_files():
    """fewstep.lora.files, whether run as a module of the pack or as a plain script."""
    if __package__:
        return importlib.import_module("..fewstep.lora.files", __package__)
    # A plain script: load the pack's stdlib-only fewstep/ package under a private name,
    # without putting the pack's root (and its nodes/) on sys.path.
    root = Path(__file__).resolve().parent.parent / "fewstep"
    spec = importlib.util.spec_from_file_location("_fewstep_tag_lora", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{spec.name}.lora.files")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lora", help="the .safetensors LoRA to tag")
    parser.add_argument("--out", help="write a tagged copy here instead of replacing the file")
    for field in ("preset", "family", "base", "steps", "cfg", "sampler", "scheduler", "strength", "source"):
        parser.add_argument(f"--{field}", help=f"fewstep.{field}")
    args = parser.parse_args(argv)
    lora_files = _lora_files()
    fields = {k: v for k, v in vars(args).items() if k not in ("lora", "out") and v is not None}
    try:
        written = lora_files.add_fewstep_metadata(args.lora, fields, args.out)
    except (ValueError, OSError) as e:
        print(f"tag_lora: {e}", file=sys.stderr)
        return 2
    print(f"tag_lora: wrote FewStep metadata {fields} to {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""FewStep Distill without a graph: the node's engine from a config file, in one process or
data-parallel under torchrun / accelerate launch.

    python custom_nodes/comfyui-fewstep/tools/distill_cli.py --config distill.toml
    torchrun --nproc_per_node 2 custom_nodes/comfyui-fewstep/tools/distill_cli.py --config distill.toml
    accelerate launch --multi_gpu --num_processes 2 custom_nodes/comfyui-fewstep/tools/distill_cli.py --config ...

The config (TOML, or the JSON the node writes beside its LoRA):

    checkpoint = "v1-5-pruned-emaonly.safetensors"   # a path, or a name in ComfyUI's checkpoints folder
    loras = [["style.safetensors", 1.0, 1.0]]        # optional: name, model strength, clip strength
    prompts_file = "prompts.txt"                      # one prompt per line (or: prompts = ["...", ...])
    output = "models/loras"                           # optional: default ComfyUI's loras folder
    user_directory = "user"                           # optional: ComfyUI user folder (teacher cache inside)
    [distill]                                         # any FewStepDistillTrainer setting
    student_steps = 4
    iterations = 300

Start-up order matters: ComfyUI reads its flags and the current device when
comfy.model_management is imported, so both are set before that import.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tomllib
from pathlib import Path

from .config import DistillConfig, DistillConfigError


class CliError(SystemExit):
    def __init__(self, message: str):
        super().__init__(f"FewStep Distill: {message}")


def read_config(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise CliError(f"cannot read the config {path}: {e.strerror or e}") from e
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise CliError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from e
    if "checkpoint" not in data:
        raise CliError(f"{path} names no checkpoint; add checkpoint = \"<file>\"")
    prompts = data.get("prompts")
    if "prompts_file" in data:
        pf = (path.parent / data["prompts_file"]).resolve()
        try:
            prompts = pf.read_text().splitlines()
        except OSError as e:
            raise CliError(f"cannot read prompts_file {pf}: {e.strerror or e}") from e
    data["distill"] = {**data.get("distill", {}), "prompts": tuple(prompts or ())}
    return data


def distill_config(data: dict) -> DistillConfig:
    known = {f for f in DistillConfig.__dataclass_fields__}
    unknown = sorted(set(data["distill"]) - known)
    if unknown:
        raise CliError(f"unknown [distill] setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return DistillConfig(**data["distill"]).check()
    except DistillConfigError as e:
        raise CliError(str(e)) from e


def start_comfy() -> None:
    """Pick this rank's device, set ComfyUI's flags, then import ComfyUI (in that order)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    from ..tools import comfy_runtime as rt

    rt.import_comfy_for_library_use()


def load_teacher(data: dict, config_dir: Path):
    import comfy.sd
    import comfy.utils
    import folder_paths

    def find(kind: str, name: str) -> str:
        p = (config_dir / name) if not Path(name).is_absolute() else Path(name)
        if p.is_file():
            return str(p)
        found = folder_paths.get_full_path(kind, name)
        if not found:
            raise CliError(f"{kind} {name!r} is neither a file nor in ComfyUI's {kind} folder")
        return found

    model, clip = comfy.sd.load_checkpoint_guess_config(find("checkpoints", data["checkpoint"]), output_vae=False,
                                                        output_clip=True)[:2]
    names = []
    for entry in data.get("loras", []):
        name, strength_model, strength_clip = (list(entry) + [1.0, 1.0])[:3]
        lora = comfy.utils.load_torch_file(find("loras", name), safe_load=True)
        model, clip = comfy.sd.load_lora_for_models(model, clip, lora, float(strength_model), float(strength_clip))
        names.append(name)
    return model, clip, tuple(names)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="distill_cli.py", description="FewStep Distill, headless (see module docs)")
    p.add_argument("--config", type=Path, required=True, help="TOML or JSON run config")
    args = p.parse_args(argv)
    data = read_config(args.config)
    config = distill_config(data)
    start_comfy()
    import folder_paths

    from .collective import from_environment
    from .distill import Callbacks, train

    collective = from_environment()
    stop = {"requested": False}

    def request_stop(signum, _frame):
        stop["requested"] = True
        print(f"FewStep Distill: {signal.Signals(signum).name} received; saving a checkpoint at the next iteration",
              file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    def check_interrupt():
        if collective.any(stop["requested"]):  # every rank stops at the same iteration
            raise KeyboardInterrupt

    def progress(phase, done, total):
        if collective.writer and (done == total or done % 10 == 0):
            print(f"[{phase}] {done}/{total}", flush=True)

    output = Path(data.get("output") or folder_paths.get_folder_paths("loras")[0])
    if not output.is_absolute():
        output = (args.config.parent / output).resolve()
    if data.get("user_directory"):
        folder_paths.set_user_directory(str((args.config.parent / data["user_directory"]).resolve()))
    try:
        model, clip, loras = load_teacher(data, args.config.parent.resolve())
        result = train(config, model, clip, output, Callbacks(progress=progress, check_interrupt=check_interrupt,
                                                              log=lambda m: print(m, flush=True)),
                       upstream_loras=loras, collective=collective)
        if collective.writer:
            print(result.report, flush=True)
        return 0
    except KeyboardInterrupt:
        return 130
    except (DistillConfigError, RuntimeError) as e:
        print(f"FewStep Distill: {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        collective.close()

"""Peak memory of FewStep Distill training in a process of its own:

    .venv/bin/python -P -m comfyui_fewstep.bench.distill_memory --steps 4 --checkpointing 1

Prints one JSON line: the resident set after loading the teacher (`baseline_mb`) and its
peak during training (`peak_mb`); their difference is what training added. Loading a
checkpoint peaks above what a small training run needs, so on Linux the kernel's peak
(VmHWM) is reset after loading (/proc/self/clear_refs); elsewhere the lifetime peak
(ru_maxrss) is all there is, and a run that adds less than loading took shows 0.
The teacher samples come from the bench's teacher cache (generated on first use); the run
trains on just enough seeds per prompt to fill one batch, since memory follows the batch,
not the size of the training set, and skips the held-out check (no-grad sampling).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
from pathlib import Path

import torch

_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _status_mb(field: str) -> float | None:
    """VmRSS / VmHWM of this process in MB (Linux), else None."""
    try:
        line = next(l for l in _STATUS.read_text().splitlines() if l.startswith(field + ":"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024


def _start_measuring() -> float:
    """Baseline in MB; on Linux also resets the peak to the current resident set."""
    try:
        _CLEAR_REFS.write_text("5")
        return _status_mb("VmRSS")
    except OSError:
        return _peak_mb()


def _peak_mb() -> float:
    return _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--checkpointing", type=int, choices=(0, 1), required=True)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--batch", type=int, default=24)
    args = p.parse_args(argv)

    from ..tools import comfy_runtime as rt

    rt.import_comfy_for_library_use()
    import folder_paths

    from ..tools import teacher as T
    from ..trainers.config import DistillConfig
    from ..trainers.distill import Callbacks, train
    from .distill_student import RECIPE, _user_dir

    folder_paths.set_user_directory(str(_user_dir()))
    model, clip, _ = T.load_teacher(T.teacher_checkpoint())
    s = T.TEACHER_SETTINGS
    settings = {**RECIPE, "iterations": args.iterations, "batch_size": args.batch,
                "samples_per_prompt": math.ceil(args.batch / len(T.PROMPTS)), "heldout_per_prompt": 0,
                "gradient_checkpointing": bool(args.checkpointing)}
    config = DistillConfig(prompts=T.PROMPTS, negative=T.NEGATIVE_PROMPT, width=s["width"], height=s["height"],
                           teacher_steps=s["steps"], teacher_cfg=s["cfg"], teacher_sampler=s["sampler"],
                           teacher_scheduler=s["scheduler"], student_steps=args.steps, **settings)
    with tempfile.TemporaryDirectory() as out, torch.inference_mode():
        baseline = _start_measuring()  # model loaded; the teacher samples come from the cache
        train(config, model, clip, Path(out), Callbacks())
    print(json.dumps({"steps": args.steps, "checkpointing": bool(args.checkpointing), "baseline_mb": baseline,
                      "peak_mb": _peak_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Recognising a few-step LoRA by its file name (case- and separator-insensitive).

Names are lower-cased and every run of separators (- _ . space) becomes one '_'; each
pattern allows an optional '_' between tokens, so 'SDXL-Lightning_4step', 'sdxl lightning
4step' and 'sdxllightning4step' all match. The first matching pattern wins (specific
before general). A captured number is the step count the file was made for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

# (regex on the normalised stem, preset id, regex that vetoes the match or None)
PATTERNS: tuple[tuple[str, str, str | None], ...] = (
    (r"sdxl_?lightning_?1_?steps?", "sdxl-lightning-1step", None),
    (r"sdxl_?lightning_?(\d+)_?steps?", "sdxl-lightning", None),
    (r"dmd_?2.*1_?steps?", "dmd2-sdxl-1step-unet", None),
    (r"dmd_?2.*hyper|hyper.*dmd_?2", "dmd2-hyper-sdxl-pixai-4step", None),
    (r"dmd_?2", "dmd2-sdxl-4step", None),
    (r"hyper_?sd_?3.*?(\d+)_?steps?", "hyper-sd3-cfg", None),
    (r"hyper_?flux.*?(\d+)_?steps?", "hyper-flux-dev", None),
    (r"hyper_?sd(?:xl|_?15)?_?(\d+)_?steps?_?cfg", "hyper-sd-cfg", None),
    (r"hyper_?sd(?:xl|_?15)?_?1_?steps?", "hyper-sd-1step-unified-tcd", None),
    (r"hyper_?sd(?:xl|_?15)?_?(\d+)_?steps?", "hyper-sd-nstep", None),
    (r"pcm.*small_?cfg.*?(\d+)_?steps?", "pcm-smallcfg", None),
    (r"pcm.*normal_?cfg.*?(\d+)_?steps?", "pcm-normalcfg", None),
    (r"(?:^|_)tcd(?:_|$)", "tcd-lora", None),
    (r"lcm_?lora", "lcm-lora", None),
    (r"flux_?1?_?turbo_?alpha", "flux-turbo-alpha", None),
    (r"qwen_?image.*lightning.*?(\d+)_?steps?", "qwen-image-lightning", None),
    (r"qwen_?image.*distill", "qwen-image-distill-lora", None),
    (r"wan_?2_?2.*lightning|lightning.*wan_?2_?2", "wan22-lightning-t2v-4step", None),
    # lightx2v's Wan2.1 step/CFG-distill LoRAs; its Wan2.2 LoRAs use another scheduler.
    (r"lightx2v", "wan21-lightx2v-4step", r"wan_?2_?2"),
    (r"sdxl_?turbo", "sdxl-turbo", None),
    (r"(?:^|_)sd_?(?:2_?1_?)?turbo", "sd-turbo", None),
    (r"flux.*schnell", "flux-schnell", None),
)
_COMPILED = tuple((re.compile(p), preset, re.compile(v) if v else None) for p, preset, v in PATTERNS)


@dataclass(frozen=True)
class NameMatch:
    preset: str
    steps: int | None  # from the name, when it gives one
    pattern: str


def normalise(name: str) -> str:
    stem = PurePath(name).name
    for suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")


def match_name(name: str) -> NameMatch | None:
    norm = normalise(name)
    for regex, preset, veto in _COMPILED:
        m = regex.search(norm)
        if m and not (veto and veto.search(norm)):
            steps = int(m.group(1)) if m.groups() and m.group(1) else None
            return NameMatch(preset, steps, regex.pattern)
    return None

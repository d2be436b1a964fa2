"""Print the preset registry (fewstep/presets/presets.json) as a markdown table for the README.

    .venv/bin/python -P -m comfyui_fewstep.tools.preset_table > presets_table.md

Reads the registry through fewstep.presets (validated), so the table can never list a
preset the pack would refuse. No ComfyUI needed.
"""

from __future__ import annotations

import sys

from ..fewstep.architectures import display_name
from ..fewstep.presets.registry import Preset, registry

HEADER = ("id", "family", "base", "steps", "cfg", "sampler / scheduler", "source")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _steps(p: Preset) -> str:
    text = p.allowed_steps_text()
    if len(p.steps) > 1:
        text += f" (default {p.default_steps})"
    return text + (", from the file name" if p.steps_in_file_name else "")


def _cfg(p: Preset) -> str:
    text = f"{p.cfg:g}"
    if p.cfg_by_steps:
        text = ", ".join(f"{c:g} at {n}" for n, c in sorted(p.cfg_by_steps.items())) + f"; else {p.cfg:g}"
    if p.cfg_range[0] != p.cfg_range[1]:
        text += f" (range {p.cfg_range[0]:g}-{p.cfg_range[1]:g})"
    if p.flux_guidance is not None:
        text += f"; FLUX guidance {p.flux_guidance:g}"
    return text


def _sampling(p: Preset) -> str:
    text = f"{p.sampler} / {p.scheduler}"
    extras = ["FewStep's choice: the source names none"] if p.sampler_chosen_by_pack else []
    if p.timesteps:
        label = "sigmas output"
        if p.sigmas_preferred_at:
            every = p.sigmas_preferred_at == p.steps
            label += ", recommended" + ("" if every else f" at {', '.join(map(str, p.sigmas_preferred_at))} steps")
        extras.append(f"{label}: timesteps " + "; ".join(",".join(map(str, ts)) for _, ts in sorted(p.timesteps.items())))
    if p.eta is not None:
        extras.append(f"eta {p.eta:g}")
    patches = p.model_patches
    if "model_sampling" in patches:
        extras.append(f"{patches['model_sampling']} model sampling")
    for key, label in (("aura_flow_shift", "AuraFlow shift"), ("sd3_shift", "SD3 shift")):
        if key in patches:
            extras.append(f"{label} {patches[key]:g}")
    if "shift_by_resolution" in patches:
        rule = patches["shift_by_resolution"]
        extras.append(f"shift by resolution: {rule.shift_for_image(1024, 1024):.2f} at 1024px, "
                      f"{rule.shift_for_image(1328, 1328):.2f} at 1328px")
    if p.lora_strength is not None and p.lora_strength != 1.0:
        extras.append(f"strength {p.lora_strength:g}")
    return text + (f" ({'; '.join(extras)})" if extras else "")


def _source(p: Preset) -> str:
    return "; ".join(f"[{s.title}]({s.url})" if s.url else s.title for s in p.source)


def rows() -> list[tuple[str, ...]]:
    return [(f"`{p.id}`", p.family + (" (checkpoint)" if p.kind == "checkpoint" else ""),
             ", ".join(display_name(b) for b in p.base), _steps(p), _cfg(p), _sampling(p), _source(p))
            for p in registry().values()]


def markdown() -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows()]
    return "\n".join(lines) + "\n"


def main() -> int:
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())

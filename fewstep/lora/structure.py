"""A LoRA's base architecture and rank, read from its tensor names and shapes (header only).

Names are normalised (lower case, '.' -> '_', kohya/ComfyUI prefixes dropped) so kohya
(`lora_unet_down_blocks_0_...`), diffusers/peft (`unet.down_blocks.0....lora_A.weight`)
and ComfyUI (`diffusion_model.input_blocks.1.1....`) spellings read alike. Evidence used:
  - block names (LAYOUTS below) pick a group of families;
  - one layer's input width picks the family within the group (the widths live in
    fewstep.architectures: e.g. a UNet's cross-attention width is its text width, 768
    SD1.5 / 1024 SD2.x / 2048 SDXL);
  - rank: the first dimension of the down (lora_A) matrices.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from .. import architectures
from .files import Header

_DOWN_SUFFIXES = ("_lora_down_weight", "_lora_a_weight", "_lora_down", "_lora_a")
_PREFIXES = ("lora_unet_", "lora_transformer_", "diffusion_model_", "base_model_model_")
_TEXT = re.compile(r"^(lora_te\d?_|text_encoder|te\d?_|clip_|t5|lora_te_)")


@dataclass(frozen=True)
class Structure:
    architecture: str | None  # an id from fewstep.architectures, None when undecided
    rank: int | None  # most common rank
    ranks: tuple[int, ...]  # all ranks seen, ascending
    modules: int  # LoRA'd modules in the diffusion model
    text_encoder_modules: int
    evidence: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        arch = self.architecture or "unknown architecture"
        rank = "no rank" if self.rank is None else f"rank {self.rank}" + (" (mixed)" if len(self.ranks) > 1 else "")
        return f"{arch}, {rank}, {self.modules} modules" + (f" (+{self.text_encoder_modules} text-encoder)" if self.text_encoder_modules else "")


def _module_name(key: str) -> str | None:
    """Normalised module name of a LoRA down/A tensor key, None for other tensors."""
    k = re.sub(r"[^a-z0-9]+", "_", key.lower())
    for suffix in _DOWN_SUFFIXES:
        if k.endswith(suffix):
            return k[: -len(suffix)]
    return None


def _strip(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if name.startswith(p):
                name, changed = name[len(p):], True
    return name


def detect_structure(header: Header) -> Structure:
    downs = {}
    text = 0
    for key, info in header.tensors.items():
        name = _module_name(key)
        if name is None:
            continue
        if _TEXT.match(name):
            text += 1
            continue
        downs[_strip(name)] = info.shape
    ranks = Counter(shape[0] for shape in downs.values() if shape)
    rank = ranks.most_common(1)[0][0] if ranks else None
    arch, evidence = _architecture(downs)
    return Structure(arch, rank, tuple(sorted(ranks)), len(downs), text, tuple(evidence))


@dataclass(frozen=True)
class Layout:
    """Key names that identify a group of families (`LoraSignature.layout`), and the
    layer whose input width tells the group's members apart."""

    evidence: str
    patterns: tuple[str, ...]  # any match on a normalised module name
    signatures: tuple[str, ...]  # LoraSignature.layout values this layout can be
    width_probe: str | None = None


# First match wins: FLUX's and SD3's diffusers layouts share names, so the specific
# native layouts come first and the width settles the shared one.
LAYOUTS = (
    Layout("FLUX double/single blocks", (r"(^|_)(double|single)_blocks_\d", r"single_transformer_blocks_\d"), ("flux",)),
    Layout("SD3 joint blocks", (r"joint_blocks_\d", r"context_block"), ("mmdit",)),
    Layout("Qwen-Image img/txt mlp or modulation layers", (r"transformer_blocks_\d+_(img|txt)_(mlp|mod)",), ("qwen_image",)),
    Layout("MMDiT transformer blocks with a context stream (diffusers layout)",
           (r"transformer_blocks_\d+_ff_context", r"transformer_blocks_\d+_attn_add_[qkv]_proj"), ("mmdit", "flux"),
           r"transformer_blocks_\d+_attn_(to|add)_[qkv](_proj)?$"),
    Layout("Wan blocks (self_attn/cross_attn/ffn)", (r"(^|_)blocks_\d+_(self_attn|cross_attn|ffn)_",), ("wan",),
           r"blocks_\d+_self_attn_q$"),
    Layout("SD UNet blocks", (r"(down|up|input|output)_blocks_\d", r"mid(dle)?_block"), ("unet",), r"attn2_to_[kv]$"),
)


def _by_width(downs: dict, probe: str, candidates) -> tuple[str | None, str | None]:
    widths = Counter(shape[1] for name, shape in downs.items() if len(shape) >= 2 and re.search(probe, name))
    for width, _ in widths.most_common():
        for arch in candidates:
            if width in arch.lora.widths:
                return arch.id, f"{sum(widths.values())} layer(s) matching /{probe}/ take width {width}"
    return None, None


def _architecture(downs: dict) -> tuple[str | None, list[str]]:
    names = list(downs)
    if not names:
        return None, ["no LoRA down/A matrices for the diffusion model"]
    has = lambda pattern: any(re.search(pattern, n) for n in names)  # noqa: E731
    for layout in LAYOUTS:
        if not any(has(p) for p in layout.patterns):
            continue
        candidates = [a for a in architectures.ARCHITECTURES.values()
                      if a.lora is not None and a.lora.layout in layout.signatures]
        if len(candidates) == 1:
            return candidates[0].id, [layout.evidence]
        arch, why = _by_width(downs, layout.width_probe, candidates) if layout.width_probe else (None, None)
        if arch:
            return arch, [layout.evidence, why]
        for a in candidates:
            if a.lora.fallback is not None and has(a.lora.fallback):
                return a.id, [layout.evidence, f"no probed width decides; key names fit {a.display_name}"]
        return None, [f"{layout.evidence}, but no layer width tells {' from '.join(a.display_name for a in candidates)}"]
    return None, ["no known block layout in the tensor names"]

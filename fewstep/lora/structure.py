"""A LoRA's base architecture and rank, read from its tensor names and shapes (header only).

Names are normalised (lower case, '.' -> '_', kohya/ComfyUI prefixes dropped) so kohya
(`lora_unet_down_blocks_0_...`), diffusers/peft (`unet.down_blocks.0....lora_A.weight`)
and ComfyUI (`diffusion_model.input_blocks.1.1....`) spellings read alike. Evidence used:
  - block names: double/single blocks -> FLUX; joint blocks or ff_context -> SD3;
    img_mlp/txt_mlp/img_mod -> Qwen-Image; blocks_N_self_attn/cross_attn/ffn -> Wan;
    down/input/up/output/mid(dle) blocks -> an SD UNet;
  - shapes: a UNet's cross-attention input width (attn2 to_k/to_v) is the text width:
    768 SD1.5, 1024 SD2.x, 2048 SDXL; a Wan LoRA's width 5120/1536 (14B/1.3B) or 3072 (TI2V-5B);
  - rank: the first dimension of the down (lora_A) matrices.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from .files import Header

_DOWN_SUFFIXES = ("_lora_down_weight", "_lora_a_weight", "_lora_down", "_lora_a")
_PREFIXES = ("lora_unet_", "lora_transformer_", "diffusion_model_", "base_model_model_")
_TEXT = re.compile(r"^(lora_te\d?_|text_encoder|te\d?_|clip_|t5|lora_te_)")
CONTEXT_WIDTH = {768: "sd15", 1024: "sd21", 2048: "sdxl"}
WAN_WIDTH = {5120: "wan", 1536: "wan", 3072: "wan22_5b"}
MMDIT_WIDTH = {3072: "flux", 1536: "sd3", 2432: "sd3"}


@dataclass(frozen=True)
class Structure:
    architecture: str | None  # an id from presets.ARCHITECTURES, None when undecided
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


def _width_votes(downs: dict, pattern: str, table: dict) -> tuple[str | None, str | None]:
    widths = Counter(shape[1] for name, shape in downs.items() if len(shape) >= 2 and re.search(pattern, name))
    for width, _ in widths.most_common():
        if width in table:
            return table[width], f"{sum(widths.values())} layer(s) matching /{pattern}/ take width {width}"
    return None, None


def _architecture(downs: dict) -> tuple[str | None, list[str]]:
    names = list(downs)
    has = lambda pattern: any(re.search(pattern, n) for n in names)  # noqa: E731
    if not names:
        return None, ["no LoRA down/A matrices for the diffusion model"]
    if has(r"(^|_)(double|single)_blocks_\d") or has(r"single_transformer_blocks_\d"):
        return "flux", ["FLUX double/single blocks"]
    if has(r"joint_blocks_\d") or has(r"context_block"):
        return "sd3", ["SD3 joint blocks"]
    if has(r"transformer_blocks_\d+_(img|txt)_(mlp|mod)"):
        return "qwen_image", ["Qwen-Image img/txt mlp or modulation layers"]
    if has(r"transformer_blocks_\d+_ff_context") or has(r"transformer_blocks_\d+_attn_add_[qkv]_proj"):
        # diffusers names FLUX's double blocks like SD3's: the width tells them apart.
        arch, why = _width_votes(downs, r"transformer_blocks_\d+_attn_(to|add)_[qkv](_proj)?$", MMDIT_WIDTH)
        return arch or "sd3", ["MMDiT transformer blocks with a context stream (diffusers layout)"] + ([why] if why else [])
    if has(r"(^|_)blocks_\d+_(self_attn|cross_attn|ffn)_"):
        arch, why = _width_votes(downs, r"blocks_\d+_self_attn_q$", WAN_WIDTH)
        return arch or "wan", ["Wan blocks (self_attn/cross_attn/ffn)"] + ([why] if why else [])
    if has(r"(down|up|input|output)_blocks_\d") or has(r"mid(dle)?_block"):
        arch, why = _width_votes(downs, r"attn2_to_[kv]$", CONTEXT_WIDTH)
        if arch:
            return arch, ["SD UNet blocks", why]
        if has(r"transformer_blocks_[1-9]"):
            return "sdxl", ["SD UNet blocks with several transformer blocks per attention (SDXL layout)"]
        return None, ["SD UNet blocks, but no cross-attention layer tells SD1.5 from SD2/SDXL"]
    return None, ["no known block layout in the tensor names"]

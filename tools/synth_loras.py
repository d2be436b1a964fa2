"""Synthesised LoRA files for tests, demos and benchmarks: never real weights.

`tiny_sd15_lora` targets the attention layers of tools/tiny_models.py's SD1.5-shaped UNet
(one level: input_blocks.1, middle_block, output_blocks.0/1) in kohya naming, which is
also what recognition's structure check reads (cross-attention width 768 -> SD1.5).
`context` 2048 gives the same layer names with SDXL's widths (a LoRA for another
architecture whose names still match), `sdxl_only_lora` names layers the tiny model lacks.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_BLOCKS = ("input_blocks_1_1", "middle_block_1", "output_blocks_0_1", "output_blocks_1_1")
WIDTH = 320


def _pair(out: dict, name: str, fan_in: int, fan_out: int, rank: int, gen: torch.Generator, scale: float) -> None:
    out[f"{name}.lora_down.weight"] = torch.randn(rank, fan_in, generator=gen) * scale
    out[f"{name}.lora_up.weight"] = torch.randn(fan_out, rank, generator=gen) * scale
    out[f"{name}.alpha"] = torch.tensor(float(rank))


def tiny_sd15_lora(rank: int = 4, context: int = 768, seed: int = 0, scale: float = 0.05,
                   text_encoder: bool = False, blocks=TINY_BLOCKS) -> dict[str, torch.Tensor]:
    """Kohya-named tensors for the tiny SD1.5 UNet's attention (and optionally CLIP-L layer 0)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for block in blocks:
        prefix = f"lora_unet_{block}_transformer_blocks_0_"
        for attn in ("attn1", "attn2"):
            for proj in ("to_q", "to_k", "to_v", "to_out_0"):
                fan_in = context if attn == "attn2" and proj in ("to_k", "to_v") else WIDTH
                _pair(out, prefix + f"{attn}_{proj}", fan_in, WIDTH, rank, gen, scale)
    if text_encoder:
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            _pair(out, f"lora_te_text_model_encoder_layers_0_self_attn_{proj}", 768, 768, rank, gen, scale)
    return out


def sdxl_only_lora(rank: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """SDXL-shaped modules in blocks the tiny SD1.5 UNet does not have (deep input/output blocks)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for block in ("input_blocks_4_1", "input_blocks_7_1", "output_blocks_2_1"):
        for t in range(2):
            prefix = f"lora_unet_{block}_transformer_blocks_{t}_attn2_"
            _pair(out, prefix + "to_k", 2048, 640, rank, gen, 0.05)
            _pair(out, prefix + "to_v", 2048, 640, rank, gen, 0.05)
    return out


def qwen_image_lora(rank: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """peft-named Qwen-Image transformer modules (width 3072)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name in ("transformer_blocks.0.img_mlp.net.0.proj", "transformer_blocks.0.attn.to_q"):
        out[f"transformer.{name}.lora_A.weight"] = torch.randn(rank, 3072, generator=gen) * 0.01
        out[f"transformer.{name}.lora_B.weight"] = torch.randn(3072, rank, generator=gen) * 0.01
    return out


def write_lora(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def fewstep_metadata(preset: str, base: str = "sd15", steps: int = 4, **extra) -> dict[str, str]:
    """The FewStep metadata schema (fewstep/lora/files.py) as safetensors header strings."""
    fields = {"schema": "1", "preset": preset, "base": base, "steps": str(steps), **{k: str(v) for k, v in extra.items()}}
    return {f"fewstep.{k}": v for k, v in fields.items()}

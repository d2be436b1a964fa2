"""Batch ComfyUI conditioning: one entry whose tensors hold a row per sample.

A CONDITIONING is a list of [cross_attn (1, tokens, dim), {extras}] pairs. A batch of
different prompts becomes one pair with cross_attn (B, tokens, dim), so ComfyUI runs
the batch as one model call per step (several conds in one list would instead be
averaged over the whole batch). Prompts of different lengths (77 vs 154 tokens) are
padded by repetition to a common multiple, the way ComfyUI's CONDCrossAttn.concat does.
"""

from __future__ import annotations

import math

import torch


def _lcm_tokens(lengths: list[int]) -> int:
    out = 1
    for n in lengths:
        out = out * n // math.gcd(out, n)
    return out


def first_pair(conditioning) -> tuple[torch.Tensor, dict]:
    """(cross_attn (1, T, D), extras) of a one-prompt CONDITIONING; refuses area/mask
    compositions, which have no meaning for a per-sample distillation target."""
    if not conditioning or len(conditioning) != 1:
        raise ValueError(f"expected the conditioning of one prompt, got {len(conditioning or [])} entries; "
                         "give plain prompts (no area or combine nodes)")
    cross, extras = conditioning[0][0], conditioning[0][1]
    if cross.shape[0] != 1:
        raise ValueError(f"expected one row of conditioning, got {cross.shape[0]}")
    return cross, extras


def stack(pairs: list[tuple[torch.Tensor, dict]]) -> list:
    """One CONDITIONING for a batch: cross_attn rows (B, T, D) and every tensor extra with
    one row per sample stacked along dim 0 (e.g. SDXL's pooled_output (B, 1280));
    non-tensor extras are taken from the first sample. Tensors are cloned, so the batch
    can enter autograd even when the inputs are inference tensors."""
    tokens = _lcm_tokens([c.shape[1] for c, _ in pairs])
    cross = torch.cat([c.repeat(1, tokens // c.shape[1], 1) for c, _ in pairs]).clone()
    extras = {}
    for key, value in pairs[0][1].items():
        if isinstance(value, torch.Tensor) and value.shape[:1] == (1,):
            extras[key] = torch.cat([e[key] for _, e in pairs]).clone()
        elif isinstance(value, torch.Tensor):
            extras[key] = value.clone()
        else:
            extras[key] = value
    return [[cross, extras]]

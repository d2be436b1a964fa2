"""FewStep Token Merge on Flux: ToDo (key/value downsampling of the image tokens) through
the attention override slot, transformer_options["optimized_attention_override"].

Flux runs attention on one joint sequence [text, image, reference images]; RoPE is applied
to q and k before optimized_attention, so every key the override receives already carries
its position, and a downsampled key keeps the position of the grid token it was taken
from. The override cuts only the image grid's keys and values (nearest-exact, as the UNet
ToDo) and the matching key columns of an attention mask (regional prompts); queries, text
and reference-image tokens stay whole, so the output keeps every token.

A DIFFUSION_MODEL wrapper reads the call's token layout (text length, image grid) from the
network's inputs, puts the override in the slot for that call only (wrapping whatever
override was there, which it calls with the shorter keys and values), and restores the slot
in `finally`. ToMe has no DiT route: hooks.apply_token_merge passes those models through.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import comfy_compat
from .merge import downsample_key_mask, downsample_span
from .settings import Settings


@dataclass(frozen=True)
class CallTokens:
    """The joint sequence of one network call: `text` tokens, then the image's h x w grid,
    then reference-image tokens, `total` in all."""

    text: int
    grid: tuple[int, int]
    total: int


def todo_override(settings: Settings, groups: tuple[str, ...], tokens: CallTokens, previous, in_window):
    """An attention override: in the selected block groups, calls whose keys are this call's
    whole joint sequence get the image grid's keys/values downsampled; then the previous
    override (or ComfyUI's own attention function) runs."""

    def override(func, *args, **kwargs):
        call = comfy_compat.attention_call(args, kwargs)
        if call is not None:
            _q, k, v, mask, options = call
            block, _index = comfy_compat.dit_block(options)
            if (block in groups and k.shape[2] == v.shape[2] == tokens.total
                    and (mask is None or mask.shape[-1] == tokens.total) and in_window(settings, options)):
                cut = (tokens.text, *tokens.grid, settings.downsample)
                args = comfy_compat.with_attention_kv(args, downsample_span(k, *cut), downsample_span(v, *cut))
                if mask is not None:
                    args, kwargs = comfy_compat.with_attention_mask(args, kwargs, downsample_key_mask(mask, *cut))
        return previous(func, *args, **kwargs) if previous is not None else func(*args, **kwargs)

    return override


def diffusion_model_wrapper(settings: Settings, groups: tuple[str, ...], patch_size: int, in_window):
    """The DIFFUSION_MODEL wrapper that installs `todo_override` for one network call."""

    def wrapper(executor, *args, **kwargs):
        _x, _t, options = comfy_compat.diffusion_model_args(args, kwargs)
        text, grid, total = comfy_compat.flux_call_tokens(args, kwargs, patch_size)
        previous = comfy_compat.attention_override(options)
        comfy_compat.set_attention_override(
            options, todo_override(settings, groups, CallTokens(text, grid, total), previous, in_window))
        try:
            return executor(*args, **kwargs)
        finally:
            comfy_compat.set_attention_override(options, previous)

    return wrapper

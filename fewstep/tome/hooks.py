"""FewStep Token Merge on a ModelPatcher: patches on a `clone()`, never a copied forward.

- ToDo (UNets): an attn1 patch (`set_model_attn1_patch`) returns a downsampled context and
  value for self-attention at the selected levels, so attention *and* the K/V projections
  see fewer tokens; queries, and so the output, keep every token.
- ToMe (UNets): no ModelPatcher hook wraps a whole BasicTransformerBlock (its feed-forward
  is called directly), so each selected block's `forward` gets an object patch
  (`add_object_patch("diffusion_model.<path>.forward", ...)`) that merges the block's
  input tokens, calls the forward that was there before (the class's own, bound to the
  block, or an earlier object patch), and adds the unmerged residual update to the
  unmerged input: x + unmerge(block(merge(x)) - merge(x)). Attention, cross-attention and
  feed-forward all run on the merged tokens; every token keeps its own residual stream.
- An OUTER_SAMPLE wrapper gives each sampling run its state (the model's sigma schedule,
  for start_percent/end_percent, and the counts logged at the end), dropped in `finally`.
- Flux (ToDo only): a DIFFUSION_MODEL wrapper from dit.py, on the block groups
  comfy_compat.flux_layout reads from the network.

Levels come from the model's structure (comfy_compat.unet_layout), not token counts.
ToMe on a DiT, and DiTs other than Flux, have no route: the node logs a warning and passes
the model through unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import comfy.patcher_extension as pe
import torch

from .. import architectures, comfy_compat
from .dit import diffusion_model_wrapper
from .merge import bipartite_soft_matching, downsample_tokens, partition_seed
from .settings import Settings, active, selected_groups, selected_levels

KEY = "fewstep_token_merge"  # wrapper key
RUN_KEY = "fewstep_token_merge_run"  # transformer_options key of the current run's state
log = logging.getLogger("FewStep.TokenMerge")


@dataclass
class RunState:
    """One sampling run: the model's sampling object (percent -> sigma) and what was patched."""

    model_sampling: object
    windows: dict = field(default_factory=dict)
    calls: int = 0  # patched attention/block calls inside the window
    skipped: int = 0  # ... outside it

    def in_window(self, settings: Settings, sigma: float | None) -> bool:
        if sigma is None:
            return True
        key = (settings.start_percent, settings.end_percent)
        if key not in self.windows:
            ms = self.model_sampling
            self.windows[key] = (float(ms.percent_to_sigma(key[0])), float(ms.percent_to_sigma(key[1])))
        inside = active(sigma, *self.windows[key])
        if inside:
            self.calls += 1
        else:
            self.skipped += 1
        return inside


def _in_window(settings: Settings, options: dict) -> bool:
    """Outside a sampling run (no RunState, e.g. a direct apply_model call) every call is patched."""
    run: RunState | None = options.get(RUN_KEY)
    return True if run is None else run.in_window(settings, comfy_compat.call_sigma(options))


def outer_sample_wrapper(executor, *args, **kwargs):
    guider = executor.class_obj
    original = guider.model_options
    guider.model_options = comfy_compat.clone_model_options(original)
    run = RunState(guider.model_patcher.get_model_object("model_sampling"))
    guider.model_options.setdefault("transformer_options", {})[RUN_KEY] = run
    try:
        return executor(*args, **kwargs)
    finally:
        guider.model_options = original
        if run.calls or run.skipped:
            log.info("FewStep Token Merge: %d block/attention calls reduced, %d left whole (outside start/end_percent)",
                     run.calls, run.skipped)


def todo_patch(settings: Settings, levels: tuple[int, ...], level_of: dict):
    """The attn1 patch: (q, k, v, extra) with k/v downsampled at the selected levels."""

    def patch(n, context, value, extra):
        if level_of.get(comfy_compat.attention_block_key(extra)) not in levels:
            return n, context, value
        grid = comfy_compat.attention_grid(extra)
        if grid is None or context.shape[1] != grid[0] * grid[1] or not _in_window(settings, extra):
            return n, context, value  # cross-attention-like attn1, or tokens someone else merged
        small = downsample_tokens(context, *grid, settings.downsample)
        return n, small, small if value is context else downsample_tokens(value, *grid, settings.downsample)

    return patch


def tome_forward(previous, level: int, settings: Settings):
    """The object patch of one transformer block's `forward` (see the module docstring)."""

    def forward(x, *args, **kwargs):
        options = comfy_compat.block_forward_options(args, kwargs)
        grid = comfy_compat.attention_grid(options)
        if settings.ratio <= 0 or grid is None or x.shape[1] != grid[0] * grid[1] or not _in_window(settings, options):
            return previous(x, *args, **kwargs)
        sigma = comfy_compat.call_sigma(options)
        generator = torch.Generator().manual_seed(partition_seed(settings.seed, level, sigma or 0.0))
        merge = bipartite_soft_matching(x, *grid, settings.ratio, generator)
        merged = merge.merge(x)
        return x + merge.unmerge(previous(merged, *args, **kwargs) - merged)

    return forward


def _with_run_state(model):
    m = model.clone()
    m.remove_wrappers_with_key(pe.WrappersMP.OUTER_SAMPLE, KEY)  # one run state for any number of nodes
    m.add_wrapper_with_key(pe.WrappersMP.OUTER_SAMPLE, KEY, outer_sample_wrapper)
    return m


def _flux_todo(model, settings: Settings, name: str, flux):
    groups = selected_groups(flux.groups, settings.max_depth, name)
    m = _with_run_state(model)
    m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, KEY,
                           diffusion_model_wrapper(settings, groups, flux.patch_size, _in_window))
    log.info("FewStep Token Merge: todo on %s, %s blocks", name, " and ".join(groups))
    return m


def apply_token_merge(model, settings: Settings):
    """A clone of `model` with token merging, or `model` itself (with a warning) when it has
    no route. Raises settings.DepthError when max_depth is beyond the model."""
    family = architectures.family_of(model)
    name = architectures.display_name(family.id) if family.id else family.config
    layout = comfy_compat.unet_layout(model)
    if layout is None or not layout.attention_levels:
        flux = comfy_compat.flux_layout(model)
        if flux is not None and settings.method == "todo":
            return _flux_todo(model, settings, name, flux)
        if flux is not None:
            log.warning("FewStep Token Merge: method tome has no route on DiTs such as %s (use method todo there). "
                        "The model passes through unchanged.", name)
        else:
            log.warning("FewStep Token Merge: %s is neither an SD-style UNet with attention nor a Flux DiT; token "
                        "merging supports SD1.5, SD2 and SDXL UNets, and Flux with method todo. The model passes "
                        "through unchanged.", name)
        return model
    levels = selected_levels(layout.attention_levels, settings.max_depth, name)
    m = _with_run_state(model)
    if settings.method == "todo":
        m.set_model_attn1_patch(todo_patch(settings, levels, dict(layout.levels)))
    else:
        for path, _block, level in layout.blocks:
            if level in levels:
                key = comfy_compat.block_forward_key(path)
                m.add_object_patch(key, tome_forward(m.get_model_object(key), level, settings))
    log.info("FewStep Token Merge: %s on %s, level(s) %s", settings.method, name, ", ".join(map(str, levels)))
    return m

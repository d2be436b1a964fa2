"""Putting a LoRA on a MODEL (and CLIP) the way core LoraLoader does, but refusing to do
nothing silently.

Core `comfy.sd.load_lora_for_models` maps the file's keys with `comfy.lora.model_lora_keys_*`,
builds patches with `comfy.lora.load_lora` and adds them to clones; keys that match nothing
are only logged, and a key that matches a weight of another shape fails later, at sampling,
as a logged "ERROR". Here the same core functions build the patches, then:
  - a LoRA whose diffusion-model modules all miss the model (by name or by shape) is an
    error naming both architectures;
  - modules that miss are left out and counted for `info`; the rest is applied with
    `clone()` + `add_patches`, exactly as core applies it.
NaN/Inf are looked for once per file version; the last files read stay in memory (as core's
LoraLoader keeps its last file).
"""

from __future__ import annotations

import math
import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import comfy_compat
from ..architectures import describe, family_of
from .files import LoraFileError
from .structure import _TEXT

_LOADED_MAX = 2  # like core LoraLoader, keep the last file(s) in memory between runs
_loaded: "OrderedDict[tuple, dict]" = OrderedDict()
_loaded_lock = threading.Lock()
_finite: set[tuple] = set()  # file versions already scanned for NaN/Inf
_MODULE_SUFFIX = re.compile(
    r"([._]lora[._].*|\.(alpha|dora_scale|diff|diff_b|set_weight|reshape_weight|w_norm|b_norm)"
    r"|\.(hada|lokr|oft|boft)_.*|\.lora_[ab](\.default)?(\.weight)?)$", re.IGNORECASE)


class LoraArchitectureError(LoraFileError):
    """No module of the LoRA fits the model: it was made for another architecture."""


def module_name(key: str) -> str:
    """The LoRA'd module a tensor belongs to ('x.lora_up.weight', 'x.alpha' -> 'x')."""
    return _MODULE_SUFFIX.sub("", key)


def is_text_encoder_key(key: str) -> bool:
    return bool(_TEXT.match(re.sub(r"[^a-z0-9]+", "_", key.lower()))) or key.startswith("text_encoders.")


def load_lora_tensors(path: Path, version: tuple) -> dict:
    """The file's tensors (ComfyUI's safe loader); LoraFileError on NaN/Inf. The NaN/Inf scan
    runs once per file `version`; the tensors stay in memory for the last few versions."""
    with _loaded_lock:
        if version in _loaded:
            _loaded.move_to_end(version)
            return _loaded[version]
    try:
        tensors = comfy_compat.load_safetensors(path)
    except Exception as e:  # safetensors' own errors for damage read_header could not see
        raise LoraFileError(f"{path.name}: cannot read the tensors ({e}); the file is damaged - download it again") from e
    if version not in _finite:
        bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise LoraFileError(
                f"{path.name}: {len(bad)} tensor(s) hold NaN or Inf (e.g. {bad[0]!r}); applying it would turn every "
                "image black or grey. The file is broken (a failed training run or conversion): download or export it again."
            )
        _finite.add(version)
    with _loaded_lock:
        _loaded[version] = tensors
        while len(_loaded) > _LOADED_MAX:
            _loaded.popitem(last=False)
    return tensors


def forget_loaded_loras() -> None:
    """Drop the in-memory tensors (the next load reads the file again, like a fresh core
    LoraLoader); the NaN/Inf verdicts per file version are kept."""
    with _loaded_lock:
        _loaded.clear()


_shapes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _weight_shapes(root) -> dict[str, tuple[int, ...]]:
    """name -> shape of every parameter and buffer of a model, listed once per model object."""
    found = _shapes.get(root)
    if found is None:
        found = {k: tuple(v.shape) for k, v in root.named_parameters()}
        found.update((k, tuple(v.shape)) for k, v in root.named_buffers())
        _shapes[root] = found
    return found


def _fits(patch, shape) -> bool:
    """Would this patch land on a weight of `shape`? (Core would log an ERROR at sampling.)
    Patches whose result shape is not plain to read (LoCon mid, reshape, LoHa...) pass."""
    if shape is None:
        return True
    matrices = comfy_compat.lora_adapter_matrices(patch)
    if matrices is not None:
        up, down = matrices
        return up.shape[0] == shape[0] and up.shape[0] * math.prod(down.shape[1:]) == math.prod(shape)
    diff = comfy_compat.diff_patch_tensor(patch)
    return diff is None or tuple(diff.shape) == shape


@dataclass
class _Mapped:
    patches: dict  # the patches that fit, in core's format
    misfit: list[str]  # target weights whose shape differs
    used: set[str]  # LoRA module names that produced a patch


def _map(lora: dict, modules: set[str], key_map: dict, root) -> _Mapped:
    patches = comfy_compat.lora_patches(lora, key_map)
    shapes = _weight_shapes(root)
    fit, misfit = {}, []
    for key, patch in patches.items():
        name = key if isinstance(key, str) else None  # (key, (dim, offset, size)): part of a fused weight
        if _fits(patch, shapes.get(name)):
            fit[key] = patch
        else:
            misfit.append(key if isinstance(key, str) else key[0])
    used = {m for m in modules if m in key_map and key_map[m] in patches}
    return _Mapped(fit, misfit, used)


@dataclass
class LoraApplied:
    model: object
    clip: object | None
    model_modules: int  # LoRA modules applied to the MODEL
    clip_modules: int
    lines: list[str] = field(default_factory=list)


def apply_lora(model, clip, lora: dict, strength_model: float, strength_clip: float, file_name: str,
               lora_arch: str | None) -> LoraApplied:
    """Clones of `model`/`clip` with the LoRA's fitting modules patched in (core's patch format).
    `lora_arch`: the family the LoRA's keys and shapes point to, if known (for the messages)."""
    model_arch, model_arch_ids = describe(model), family_of(model).ids
    lora = comfy_compat.convert_lora(lora)
    modules = {module_name(k) for k in lora}
    text_modules = {m for m in modules if is_text_encoder_key(m)}
    unet_modules = modules - text_modules

    mapped = _map(lora, modules, comfy_compat.unet_lora_key_map(model), model.model)
    used = set(mapped.used)
    if unet_modules and not mapped.patches:
        what = f"for {lora_arch} (from its keys and shapes)" if lora_arch else "for another architecture"
        how = (f"{len(mapped.misfit)} match layer names but not their shapes" if mapped.misfit
               else "none match a layer name")
        raise LoraArchitectureError(
            f"{file_name}: this LoRA is {what}, but the model is {model_arch}: none of its {len(unet_modules)} "
            f"diffusion-model modules fit ({how}). Load a {lora_arch or 'matching'} checkpoint for this LoRA, "
            f"or pick a LoRA made for {model_arch}."
        )
    new_model = model.clone()
    new_model.add_patches(mapped.patches, strength_model)
    lines = []

    new_clip, clip_count = None, 0
    if clip is not None:
        clip_mapped = _map(lora, modules, comfy_compat.clip_lora_key_map(clip),
                           clip.cond_stage_model)
        used |= clip_mapped.used
        new_clip = clip.clone()
        new_clip.add_patches(clip_mapped.patches, strength_clip)
        clip_count = len(clip_mapped.patches)
        if clip_mapped.misfit:
            lines.append(f"{len(clip_mapped.misfit)} text-encoder module(s) skipped: their shapes differ from this CLIP's.")

    unet_missed = sorted(unet_modules - used)
    text_missed = sorted(text_modules - used)
    on_clip = f", {clip_count} on the CLIP (strength {strength_clip:g})" if clip is not None else ""
    lines.insert(0, f"LoRA applied: {len(mapped.patches)} module(s) on the MODEL ({model_arch}, strength "
                    f"{strength_model:g}){on_clip}.")
    if mapped.misfit or unet_missed:
        lines.append(
            f"Partly loaded: {len(mapped.misfit) + len(unet_missed)} of {len(unet_modules)} diffusion-model module(s) did "
            f"not fit this {model_arch} model and were skipped ({len(unet_missed)} by name, {len(mapped.misfit)} by shape; "
            f"e.g. {(unet_missed or mapped.misfit)[0]}). The LoRA may be for another variant of the architecture."
        )
    if lora_arch and model_arch_ids and lora_arch not in model_arch_ids:
        lines.append(f"Warning: the LoRA's keys and shapes say {lora_arch}, the model is {model_arch}; only the "
                     "modules that fit were applied. Check that LoRA and checkpoint belong together.")
    if text_missed:
        why = "no CLIP is connected" if clip is None else "they match no layer of this CLIP"
        lines.append(f"{len(text_missed)} text-encoder module(s) not applied: {why}.")
    return LoraApplied(new_model, new_clip, len(mapped.patches), clip_count, lines)

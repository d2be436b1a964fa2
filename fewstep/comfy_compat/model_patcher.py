"""ModelPatcher internals: its state key, model_options cloning, replace patches, the
arguments of each wrapper type FewStep installs, and the model fingerprint calibrations are
stored under (read from the weights, their backups and the patch list).

One small function per reach-in, each with the ComfyUI version it was checked against.
"""

from __future__ import annotations

import hashlib

import comfy.model_patcher
import torch


# ---- ModelPatcher internals ---------------------------------------------------------------

def patcher_state_key(model_patcher) -> tuple:
    """Changes when the weights or weight patches change. 0.3.75: ModelPatcher.patches_uuid
    is renewed by add_patches/set patches; .model is shared by clones."""
    return id(model_patcher.model), model_patcher.patches_uuid


def clone_model_options(model_options: dict) -> dict:
    """0.3.75: comfy.model_patcher.create_model_options_clone (what CFGGuider uses)."""
    return comfy.model_patcher.create_model_options_clone(model_options)


def dit_replace_patch(model_patcher, name: str, index: int):
    """The current ("dit", (name, index)) replace patch, or None. 0.3.75:
    model_options["transformer_options"]["patches_replace"]["dit"][(name, index)]."""
    to = model_patcher.model_options.get("transformer_options", {})
    return to.get("patches_replace", {}).get("dit", {}).get((name, index))


def outer_sample_args(args) -> tuple:
    """(noise, latent_image, sampler, sigmas) of an OUTER_SAMPLE wrapper call. 0.3.75:
    CFGGuider.outer_sample(noise, latent_image, sampler, sigmas, denoise_mask, ...)."""
    return args[0], args[1], args[2], args[3]


def outer_sample_latent_shape(args, kwargs) -> tuple:
    """Shape of the (first) latent an OUTER_SAMPLE wrapper call samples. 0.3.75:
    CFGGuider.sample passes latent_shapes=[one shape per packed latent] as a keyword;
    without it, latent_image (args[1]) is the latent."""
    shapes = kwargs.get("latent_shapes")
    return tuple(shapes[0]) if shapes else tuple(args[1].shape)


def with_outer_sample_sigmas(args, sigmas) -> tuple:
    """The positional arguments of an OUTER_SAMPLE wrapper call with `sigmas` in place of
    the run's schedule. 0.3.75: outer_sample(noise, latent_image, sampler, sigmas, ...)."""
    return (*args[:3], sigmas, *args[4:])


def calc_cond_batch_model_options(args) -> dict | None:
    """model_options of a CALC_COND_BATCH wrapper call. 0.3.75: _calc_cond_batch(model,
    conds, x_in, timestep, model_options) - the last positional argument."""
    return args[-1] if args and isinstance(args[-1], dict) else None


def apply_model_args(args, kwargs) -> tuple:
    """(x, t, transformer_options) of an APPLY_MODEL wrapper call. 0.3.75:
    BaseModel._apply_model(x, t, c_concat, c_crossattn, control, transformer_options, **kw)."""
    to = args[5] if len(args) > 5 else kwargs.get("transformer_options", {})
    return args[0], args[1], to


def diffusion_model_args(args, kwargs) -> tuple:
    """(x, timestep, transformer_options) of a DIFFUSION_MODEL wrapper call. 0.3.75: each
    network's forward(x, timestep, context, ..., transformer_options=..., **kw); where it
    is passed positionally, it is the dict carrying 'uuids'."""
    to = kwargs.get("transformer_options")
    if not isinstance(to, dict):
        to = next((a for a in reversed(args) if isinstance(a, dict) and "uuids" in a), {})
    return args[0], args[1], to


def uses_context_windows(model_options: dict) -> bool:
    """0.3.75: context windows install model_options["context_handler"]."""
    return model_options.get("context_handler") is not None


def _sample_values(t: torch.Tensor, count: int = 8) -> torch.Tensor:
    """`count` values at evenly spaced flat positions: enough to tell weights apart."""
    flat = t.detach().reshape(-1)
    n = flat.numel()
    if n == 0:
        return torch.zeros(0)
    idx = torch.linspace(0, n - 1, min(count, n), device=flat.device).round().long()
    return flat[idx].float().cpu()


def _tensors_in(obj, depth: int = 0):
    """Tensors inside a weight patch (tuples, lists, adapter objects with .weights)."""
    if depth > 4:
        return
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors_in(o, depth + 1)
    elif hasattr(obj, "weights"):
        yield from _tensors_in(obj.weights, depth + 1)


def _patches(model_patcher) -> dict:
    """0.3.75: ModelPatcher.patches[key] is a list of (strength_patch, patch, strength_model,
    offset, function)."""
    return getattr(model_patcher, "patches", {}) or {}


def _weights_before_patches(model_patcher):
    """(key, tensor) of the diffusion model's state dict, sorted by key, with the pre-patch
    value where ComfyUI holds a backup. 0.3.75: ModelPatcher.backup[key].weight."""
    backup = getattr(model_patcher, "backup", {}) or {}
    sd = model_patcher.model.diffusion_model.state_dict(keep_vars=True)
    for key in sorted(sd):
        full = "diffusion_model." + key
        yield key, (backup[full].weight if full in backup else sd[key])


def _describe(t: torch.Tensor) -> bytes:
    try:
        values = _sample_values(t).numpy().tobytes()
    except Exception:  # noqa: BLE001 - a tensor type we cannot index: shape only
        values = b"unreadable"
    return f"{tuple(t.shape)}|{t.dtype}|".encode() + values


def model_fingerprint(model_patcher, tag: bytes) -> str:
    """SHA-256 of the diffusion model's weights and weight patches, stable whether or not
    the model is loaded and across ComfyUI versions (see fewstep/caching/calibration.py).
    Only tensors of 2+ dimensions count, described by shape, dtype and sampled values and
    hashed in sorted order, never by module name: ComfyUI renames modules and drops unused
    1-D parameters between versions (Lumina 2's norm_final.weight is gone from 0.4.x on),
    which must not orphan a stored calibration. Patches (LoRAs) count with their
    strengths and all their tensors, also without the module names."""
    h = hashlib.sha256(tag + b"\0")
    config = getattr(model_patcher.model, "model_config", None)
    h.update(type(config).__name__.encode() + b"\0")
    weights = sorted(_describe(t) for _key, t in _weights_before_patches(model_patcher) if t.dim() >= 2)
    patches = sorted(
        f"patch|{patch[0]!r}|{patch[2] if len(patch) > 2 else ''!r}|".encode()
        + b"".join(_describe(t) for t in _tensors_in(patch[1]))
        for key in _patches(model_patcher) for patch in _patches(model_patcher)[key])
    for part in (*weights, b"patches", *patches):
        h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()


def legacy_model_fingerprint(model_patcher, tag: bytes) -> str:
    """The fingerprint FewStep 0.1.x stored calibrations under (every tensor, by module
    name): still computed so those files stay readable where module names did not change."""
    h = hashlib.sha256(tag + b"\0")
    config = getattr(model_patcher.model, "model_config", None)
    h.update(type(config).__name__.encode() + b"\0")
    samples = []
    for key, t in _weights_before_patches(model_patcher):
        h.update(f"{key}|{tuple(t.shape)}|{t.dtype}\0".encode())
        try:
            samples.append(_sample_values(t))
        except Exception:  # noqa: BLE001 - a tensor type we cannot index: shape only
            h.update(b"unreadable\0")
    patches = _patches(model_patcher)
    for key in sorted(patches):
        for patch in patches[key]:
            h.update(f"patch|{key}|{patch[0]!r}|{patch[2] if len(patch) > 2 else ''!r}\0".encode())
            for t in _tensors_in(patch[1]):
                try:
                    samples.append(_sample_values(t))
                except Exception:  # noqa: BLE001
                    h.update(b"unreadable\0")
    if samples:
        h.update(torch.cat(samples).numpy().tobytes())
    return h.hexdigest()

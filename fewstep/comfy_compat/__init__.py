"""Every place FewStep reaches into ComfyUI beyond its public extension API.

The public API FewStep uses freely elsewhere: `comfy_api.latest` (nodes), ModelPatcher's
patch/wrapper methods (clone, add_wrapper_with_key, add_object_patch, add_patches,
set_model_patch_replace, get_model_object, model_options), `comfy.patcher_extension`
wrapper types, and the sampling entry points (`comfy.samplers.calculate_sigmas`,
`KSAMPLER`, `CFGGuider`, `KSampler.SAMPLERS/SCHEDULERS`, `folder_paths`).

Everything else is here, one small function per reach-in, each with the ComfyUI version
it was checked against ("0.3.75" = the runtime the tests use) and a test in
tests/comfy/test_comfy_compat.py that fails with a clear message when ComfyUI changes
it. Where versions differ, a capability probe picks the route (never a version string).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

import comfy.k_diffusion.sampling as k_sampling
import comfy.ldm.common_dit
import comfy.ldm.flux.layers
import comfy.ldm.flux.model
import comfy.ldm.modules.attention as attention
import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
import comfy.ldm.wan.model
import comfy.lora
import comfy.lora_convert
import comfy.model_management
import comfy.model_patcher
import comfy.model_sampling
import comfy.samplers
import comfy.utils
import comfy.weight_adapter
import folder_paths
import torch

log = logging.getLogger("FewStep")
USER_FOLDER = "fewstep"  # <ComfyUI user directory>/fewstep holds all of the pack's user data


class ComfyCompatError(RuntimeError):
    """This ComfyUI lacks something FewStep relies on; the message names the fix."""


def comfyui_version() -> str:
    """0.3.75: `comfyui_version.__version__` at the ComfyUI root."""
    try:
        import comfyui_version

        return str(comfyui_version.__version__)
    except ImportError:
        return "unknown"


# The newest ComfyUI `make compat` ran every tier on (README "Compatibility").
NEWEST_TESTED = "0.9.2"


def _version_tuple(version: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in version.split("+")[0].split("-")[0].split("."))
    except ValueError:
        return None


def note_untested_version() -> str | None:
    """Log one line when ComfyUI is newer than the newest version FewStep was tested on
    (never refuses to load: capability probes decide what works, not version strings)."""
    running, tested = _version_tuple(comfyui_version()), _version_tuple(NEWEST_TESTED)
    if running is None or running <= tested:
        return None
    line = (f"FewStep was tested on ComfyUI up to {NEWEST_TESTED}; this is {comfyui_version()}. "
            "If something fails, update FewStep or report it.")
    log.info(line)
    return line


def incompatible(what: str) -> ComfyCompatError:
    return ComfyCompatError(
        f"FewStep cannot use {what} in this ComfyUI ({comfyui_version()}). Update ComfyUI and FewStep to their "
        "latest releases; if it persists, report it with this message.")


# ---- user data ----------------------------------------------------------------------------

def user_data_dir(*parts: str) -> Path:
    """<user dir>/fewstep/...; 0.3.75: folder_paths.get_user_directory()."""
    return Path(folder_paths.get_user_directory(), USER_FOLDER, *parts)


def legacy_user_file(name: str) -> Path:
    """Where releases before the user folder kept files: <user dir>/default/<name>."""
    return Path(folder_paths.get_user_directory(), "default", name)


# ---- server -------------------------------------------------------------------------------

def prompt_server():
    """The running PromptServer, or None in-process (tests, bench, CLI). 0.3.75."""
    try:
        from server import PromptServer
    except ImportError:
        return None
    return getattr(PromptServer, "instance", None)


def send_event(event: str, data: dict) -> None:
    """Send a websocket event to the client that queued the prompt; no-op without a server.
    0.3.75: PromptServer.instance.send_sync(event, data, sid) and .client_id."""
    server = prompt_server()
    if server is not None:
        server.send_sync(event, data, getattr(server, "client_id", None))


def add_get_route(path: str, handler) -> bool:
    """Add GET `path` once (also under /api); False without a server. 0.3.75:
    PromptServer.instance.routes is the aiohttp RouteTableDef added to the app at start."""
    server = prompt_server()
    if server is None:
        return False
    if not any(getattr(r, "path", None) == path for r in server.routes):
        server.routes.get(path)(handler)
    return True


# ---- node outputs -------------------------------------------------------------------------

def _option_list_combo_output_class():
    """io.Combo.Output whose link type is its option list (what V1 list inputs such as
    KSampler's sampler_name accept)."""
    from comfy_api.latest import io

    class OptionListComboOutput(io.Combo.Output):
        @property
        def io_type(self):
            return self.options

        def get_io_type(self):
            return self.options

    return OptionListComboOutput


def combo_output(options: list, display_name: str, tooltip: str):
    """A combo output that links into V1 nodes' list-typed inputs (KSampler's
    sampler_name/scheduler). 0.3.75: io.Combo.Output's type is its option list; from
    0.8.0 (upstream #11345) it is "COMBO", which V1 list inputs reject ("Return type
    mismatch between linked nodes"). Capability probe: when io.Combo.Output does not
    already type itself by its options, a subclass that does is used (execution's
    validate_node_input compares the lists, and accepts a list against a v3 "COMBO" input)."""
    from comfy_api.latest import io

    plain = io.Combo.Output(display_name=display_name, options=options, tooltip=tooltip)
    if plain.get_io_type() is options:
        return plain
    out = _option_list_combo_output_class()(display_name=display_name, options=options, tooltip=tooltip)
    if out.get_io_type() is not options:
        raise incompatible("combo outputs typed by their option list (io.Combo.Output.io_type)")
    return out


# ---- samplers -----------------------------------------------------------------------------

def register_k_diffusion_sampler(name: str, function, after: str = "lcm") -> bool:
    """Offer `name` in KSampler's list, resolved like core samplers. 0.3.75: KSampler
    looks up `comfy.k_diffusion.sampling.sample_<name>`; the names live in
    KSAMPLER_NAMES and SAMPLER_NAMES (KSampler.SAMPLERS is SAMPLER_NAMES). Returns True
    when this call added it; never replaces another extension's sampler of that name."""
    existing = getattr(k_sampling, f"sample_{name}", None)
    if existing is None:
        setattr(k_sampling, f"sample_{name}", function)
    elif existing is not function:
        log.warning("FewStep: another extension already provides sampler %r; leaving it in place", name)
    added, seen = False, set()
    for names in (comfy.samplers.KSAMPLER_NAMES, comfy.samplers.SAMPLER_NAMES, comfy.samplers.KSampler.SAMPLERS):
        if id(names) in seen:
            continue
        seen.add(id(names))
        if name not in names:
            names.insert(names.index(after) + 1 if after in names else len(names), name)
            added = True
    return added


def k_model_sampling(k_model):
    """The model_sampling of the denoiser a k-diffusion sampler receives. 0.3.75:
    KSamplerX0Inpaint -> CFGGuider -> BaseModel (as core sample_lcm reads it)."""
    try:
        return k_model.inner_model.inner_model.model_sampling
    except AttributeError as e:
        raise incompatible("the sampler's model (inner_model.inner_model.model_sampling)") from e


def default_noise_sampler(x: torch.Tensor, seed):
    """0.3.75: comfy.k_diffusion.sampling.default_noise_sampler(x, seed=...)."""
    return k_sampling.default_noise_sampler(x, seed=seed)


def is_flow_sampling(model_sampling) -> bool:
    """x = (1 - sigma) x0 + sigma eps. 0.3.75: comfy.model_sampling.CONST."""
    return isinstance(model_sampling, comfy.model_sampling.CONST)


def is_discrete_sampling(model_sampling) -> bool:
    """An SD-style 1000-step schedule. 0.3.75: comfy.model_sampling.ModelSamplingDiscrete."""
    return isinstance(model_sampling, comfy.model_sampling.ModelSamplingDiscrete)


def is_discrete_flow_sampling(model_sampling) -> bool:
    """A shiftable flow schedule. 0.3.75: comfy.model_sampling.ModelSamplingDiscreteFlow."""
    return isinstance(model_sampling, comfy.model_sampling.ModelSamplingDiscreteFlow)


# ---- core model-sampling nodes ------------------------------------------------------------

def _run_core_node(module: str, name: str, v1_method: str, **inputs):
    """Call a core node as a library function: V1 classes through their FUNCTION, v3
    classes through `execute` (capability probe; 0.3.75 has these nodes as V1)."""
    cls = getattr(importlib.import_module(module), name, None)
    if cls is None:
        raise incompatible(f"core node {name} ({module})")
    method = getattr(cls, "execute", None)
    if method is not None and not hasattr(cls, "FUNCTION"):
        out = method(**inputs)
        return out.result[0] if hasattr(out, "result") else out[0]
    return getattr(cls(), getattr(cls, "FUNCTION", v1_method))(**inputs)[0]


def core_model_sampling_discrete(model, sampling: str):
    """Core ModelSamplingDiscrete(sampling, zsnr=False) on a clone. 0.3.75: V1 `patch`."""
    return _run_core_node("comfy_extras.nodes_model_advanced", "ModelSamplingDiscrete", "patch",
                          model=model, sampling=sampling, zsnr=False)


def core_model_sampling_sd3(model, shift: float):
    """Core ModelSamplingSD3 (multiplier 1000). 0.3.75: V1 `patch`."""
    return _run_core_node("comfy_extras.nodes_model_advanced", "ModelSamplingSD3", "patch", model=model, shift=shift)


def core_model_sampling_aura_flow(model, shift: float):
    """Core ModelSamplingAuraFlow (multiplier 1). 0.3.75: V1 `patch_aura`."""
    return _run_core_node("comfy_extras.nodes_model_advanced", "ModelSamplingAuraFlow", "patch_aura",
                          model=model, shift=shift)


class _UnscaledInitialNoise:
    """Start from unit-variance noise whatever the first sigma (DMD2's one-step UNet was
    trained on pure noise at t=399). 0.3.75: model_sampling.noise_scaling(sigma, noise,
    latent_image, max_denoise) scales by sigma unless max_denoise."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return super().noise_scaling(sigma, noise, latent_image, max_denoise=True)


def with_unscaled_initial_noise(sampling):
    """A copy of a model_sampling object whose first step takes unscaled noise."""
    if "max_denoise" not in inspect.signature(type(sampling).noise_scaling).parameters:
        raise incompatible("model_sampling.noise_scaling(max_denoise=...)")
    cls = type(f"UnscaledInitialNoise{type(sampling).__name__}", (_UnscaledInitialNoise, type(sampling)), {})
    patched = copy.copy(sampling)  # shares the (read-only) schedule buffers
    patched.__class__ = cls
    return patched


# ---- core sampling and decoding nodes (FewStepABTest) ------------------------------------

def core_ksampler(model, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str, positive, negative,
                  latent: dict) -> dict:
    """Core KSampler (denoise 1): noise from `seed` and the latent's shape alone, so two
    calls with the same seed and latent start from identical noise. 0.3.75: V1 `sample`."""
    return _run_core_node("nodes", "KSampler", "sample", model=model, seed=seed, steps=steps, cfg=cfg,
                          sampler_name=sampler_name, scheduler=scheduler, positive=positive, negative=negative,
                          latent_image=latent, denoise=1.0)


def core_vae_decode(vae, latent: dict) -> torch.Tensor:
    """Core VAEDecode: an IMAGE [B, H, W, C] (video frames folded into the batch). 0.3.75: V1 `decode`."""
    return _run_core_node("nodes", "VAEDecode", "decode", vae=vae, samples=latent)


def load_device(model_patcher):
    """The device the model samples on. 0.3.75: ModelPatcher.load_device."""
    device = getattr(model_patcher, "load_device", None)
    if device is None:
        raise incompatible("ModelPatcher.load_device")
    return device


def synchronize(device) -> None:
    """Wait for queued GPU work before a clock is read (CUDA and MPS run asynchronously);
    nothing on the CPU. 0.3.75: comfy.model_management.is_device_cuda / is_device_mps."""
    if comfy.model_management.is_device_cuda(device):
        torch.cuda.synchronize(device)
    elif comfy.model_management.is_device_mps(device):
        torch.mps.synchronize()


def sampler_sample_noise(args) -> torch.Tensor:
    """The noise of a SAMPLER_SAMPLE wrapper call. 0.3.75: Sampler.sample(model_wrap,
    sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)."""
    return args[4]


# ---- LoRA files and patches ---------------------------------------------------------------

def load_safetensors(path) -> dict:
    """0.3.75: comfy.utils.load_torch_file(path, safe_load=True), as core LoraLoader."""
    return comfy.utils.load_torch_file(str(path), safe_load=True)


def lora_patches(lora: dict, key_map: dict) -> dict:
    """Core's patches for a LoRA state dict. 0.3.75: comfy.lora_convert.convert_lora then
    comfy.lora.load_lora(lora, key_map, log_missing=False)."""
    return comfy.lora.load_lora(lora, key_map, log_missing=False)


def convert_lora(lora: dict) -> dict:
    """0.3.75: comfy.lora_convert.convert_lora (e.g. 'lora_unet_' Flux/SD3 spellings)."""
    return comfy.lora_convert.convert_lora(lora)


def unet_lora_key_map(model_patcher) -> dict:
    """LoRA key -> model weight key. 0.3.75: comfy.lora.model_lora_keys_unet(model, {})."""
    return comfy.lora.model_lora_keys_unet(model_patcher.model, {})


def clip_lora_key_map(clip) -> dict:
    """0.3.75: comfy.lora.model_lora_keys_clip(clip.cond_stage_model, {})."""
    return comfy.lora.model_lora_keys_clip(clip.cond_stage_model, {})


def lora_adapter_matrices(patch):
    """(up, down) of a plain LoRA patch, None for anything else (LoCon mid, reshape,
    LoHa, ...). 0.3.75: comfy.weight_adapter.LoRAAdapter.weights = (up, down, alpha,
    mid, dora_scale, reshape), as comfy/weight_adapter/lora.py unpacks it."""
    if not isinstance(patch, comfy.weight_adapter.LoRAAdapter):
        return None
    up, down, _alpha, mid, _dora, reshape = patch.weights
    if mid is not None or reshape is not None:
        return None
    return up, down


def diff_patch_tensor(patch):
    """The tensor of a ("diff", (tensor,)) patch, None for other patches. 0.3.75."""
    if isinstance(patch, tuple) and len(patch) > 1 and patch[0] == "diff":
        return patch[1][0]
    return None


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


# ---- model internals TeaCache reads -------------------------------------------------------

def first_block_modulated_input(architecture: str, dm, args: dict) -> torch.Tensor:
    """The first block's timestep-modulated input, from the ("double_block", 0) replace
    patch's args. 0.3.75: Flux/HunyuanVideo double_blocks[0].img_mod/img_norm1 and
    comfy.ldm.flux.layers.apply_mod; LTXV transformer_blocks[0].scale_shift_table and
    comfy.ldm.common_dit.rms_norm; Wan retention mode: the block input `vec` (e0)."""
    img = args["img"]
    if architecture in ("flux", "hunyuan_video"):
        block = dm.double_blocks[0]
        vec = args["vec"]
        if getattr(block, "modulation", True):
            mod1, _ = block.img_mod(vec)
        else:  # global modulation (vec carries the block's modulation already)
            (mod1, _), _ = vec
        return comfy.ldm.flux.layers.apply_mod(block.img_norm1(img), 1 + mod1.scale, mod1.shift, args.get("modulation_dims_img"))
    if architecture == "ltxv":
        table = dm.transformer_blocks[0].scale_shift_table
        t = args["vec"]
        ada = table[None, None].to(device=img.device, dtype=img.dtype) + t.reshape(img.shape[0], t.shape[1], table.shape[0], -1)
        shift, scale = ada[:, :, 0], ada[:, :, 1]
        return comfy.ldm.common_dit.rms_norm(img) * (1 + scale) + shift
    if architecture == "wan21":
        return args["vec"]
    raise ValueError(f"no first-block indicator for {architecture}")


def timestep_embedding(architecture: str, dm, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """The timestep embedding TeaCache reads, from the model's own embedder. 0.3.75: Wan
    time_embedding(sinusoidal_embedding_1d(freq_dim, t)); Lumina 2 t_embedder((1 - t) *
    time_scale)."""
    if architecture == "wan21":
        return dm.time_embedding(comfy.ldm.wan.model.sinusoidal_embedding_1d(dm.freq_dim, timestep.flatten()).to(dtype=x.dtype))
    if architecture == "lumina2":
        return dm.t_embedder((1.0 - timestep) * getattr(dm, "time_scale", 1.0), dtype=x.dtype)
    raise ValueError(f"no timestep-embedding indicator for {architecture}")


# ---- UNet structure and attention patches (token merging) -------------------------------

@dataclass(frozen=True)
class UNetLayout:
    """Where a UNet's transformer blocks sit. `levels` maps the block keys ComfyUI puts in
    transformer_options["block"] (("input", i), ("middle", 0), ("output", i)) to their
    level (downsamplings above them, 0 = full resolution); `blocks` lists every
    BasicTransformerBlock as (path under diffusion_model, block key, level)."""

    levels: dict
    blocks: tuple

    @property
    def attention_levels(self) -> tuple[int, ...]:
        return tuple(sorted({level for _path, _key, level in self.blocks}))


def unet_layout(model_patcher) -> UNetLayout | None:
    """The layout of an SD-style UNet read from its modules, or None for other networks.
    0.3.75: comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel keeps input_blocks,
    middle_block, output_blocks (TimestepEmbedSequential); a Downsample module in an input
    block lowers the level of the blocks after it, an Upsample in an output block (its
    last module) lowers the level of the blocks after it; attention lives in
    SpatialTransformer.transformer_blocks (comfy.ldm.modules.attention.BasicTransformerBlock)."""
    dm = getattr(model_patcher.model, "diffusion_model", None)
    if not isinstance(dm, openaimodel.UNetModel):
        return None
    levels, level = {}, 0
    for i, block in enumerate(dm.input_blocks):
        levels[("input", i)] = level
        level += any(isinstance(m, openaimodel.Downsample) for m in block)
    levels[("middle", 0)] = level
    for i, block in enumerate(dm.output_blocks):
        levels[("output", i)] = level
        level -= any(isinstance(m, openaimodel.Upsample) for m in block)
    blocks = []
    groups = [("input_blocks", "input", dm.input_blocks), ("output_blocks", "output", dm.output_blocks)]
    if dm.middle_block is not None:
        groups.insert(1, ("middle_block", "middle", [dm.middle_block]))
    for attr, kind, container in groups:
        for i, block in enumerate(container):
            key = (kind, i)
            prefix = attr if kind == "middle" else f"{attr}.{i}"
            for name, module in block.named_modules():
                if type(module) is attention.BasicTransformerBlock:
                    blocks.append((f"{prefix}.{name}", key, levels[key]))
    return UNetLayout(levels, tuple(blocks))


def attention_block_key(options: dict):
    """The UNet block a patch runs in: ("input", i), ("middle", 0) or ("output", i).
    0.3.75: UNetModel.forward sets transformer_options["block"]; attn patches get it in
    extra_options."""
    return options.get("block")


def attention_grid(options: dict) -> tuple[int, int] | None:
    """(h, w) of the feature map whose tokens a transformer block sees. 0.3.75:
    SpatialTransformer.forward sets transformer_options["activations_shape"] = [b, c, h, w]
    before its blocks run; attn patches get it in extra_options."""
    shape = options.get("activations_shape")
    return (int(shape[-2]), int(shape[-1])) if shape is not None and len(shape) == 4 else None


def call_sigma(options: dict) -> float | None:
    """The sigma of the current model call. 0.3.75: _calc_cond_batch puts the batch's
    sigmas (one per row, all equal) in transformer_options["sigmas"]."""
    sigmas = options.get("sigmas")
    if isinstance(sigmas, torch.Tensor) and sigmas.numel():
        return float(sigmas.flatten()[0])
    return None


def block_forward_options(args: tuple, kwargs: dict) -> dict:
    """transformer_options of a call to BasicTransformerBlock.forward(x, context=None,
    transformer_options={}). 0.3.75: SpatialTransformer passes it as a keyword."""
    if "transformer_options" in kwargs:
        return kwargs["transformer_options"] or {}
    return args[1] if len(args) > 1 and isinstance(args[1], dict) else {}


def block_forward_key(path: str) -> str:
    """The object-patch key of the `forward` of the module at `path` under the diffusion
    model. 0.3.75: ModelPatcher object patches are set with comfy.utils.set_attr on
    BaseModel, whose network is the attribute `diffusion_model`; an instance attribute
    `forward` is what torch.nn.Module.__call__ runs."""
    return f"diffusion_model.{path}.forward"


# ---- DiT attention (token merging) ----------------------------------------------------------

@dataclass(frozen=True)
class FluxLayout:
    """A Flux network: latent pixels per token side, and its block groups as (name, count)
    in the order they run, named as transformer_options["block_type"] names them."""

    patch_size: int
    groups: tuple


def flux_layout(model_patcher) -> FluxLayout | None:
    """The layout of a Flux network (FLUX.1, Kontext, FLUX.2), or None for other networks.
    0.3.75: model_base.Flux/Flux2 run comfy.ldm.flux.model.Flux, whose forward_orig runs
    double_blocks then single_blocks, with the joint sequence [text, image, reference
    images] in both (DoubleStreamBlock cats (txt, img) unless flipped_img_txt, which Flux
    never sets; the single blocks get cat((txt, img))), RoPE applied to q and k in
    comfy.ldm.flux.math.attention before optimized_attention."""
    dm = getattr(model_patcher.model, "diffusion_model", None)
    if type(dm) is not comfy.ldm.flux.model.Flux or any(b.flipped_img_txt for b in dm.double_blocks):
        return None
    groups = tuple((name, len(blocks)) for name, blocks in (("double", dm.double_blocks), ("single", dm.single_blocks))
                   if len(blocks))
    return FluxLayout(int(dm.patch_size), groups)


def flux_call_tokens(args: tuple, kwargs: dict, patch_size: int) -> tuple[int, tuple[int, int], int]:
    """(text tokens, (h, w) of the image's token grid, all tokens) of a Flux DIFFUSION_MODEL
    wrapper call. 0.3.75: Flux.forward passes (x, timestep, context, y, guidance,
    ref_latents, control, transformer_options) on positionally; _forward pads x to the patch
    size, so the grid is ((h + p // 2) // p, (w + p // 2) // p), and every reference latent
    adds its own grid after the image's."""
    context = args[2] if len(args) > 2 else kwargs["context"]
    refs = args[5] if len(args) > 5 else kwargs.get("ref_latents")

    def grid(t: torch.Tensor) -> tuple[int, int]:
        return (t.shape[-2] + patch_size // 2) // patch_size, (t.shape[-1] + patch_size // 2) // patch_size

    h, w = grid(args[0])
    total = context.shape[1] + h * w + sum(gh * gw for gh, gw in map(grid, refs or ()))
    return int(context.shape[1]), (h, w), int(total)


def dit_block(options: dict) -> tuple[str | None, int | None]:
    """(block type, index) of the DiT block running. 0.3.75: Flux.forward_orig sets
    transformer_options["block_type"] ("double"/"single") and ["block_index"]."""
    return options.get("block_type"), options.get("block_index")


ATTENTION_OVERRIDE = "optimized_attention_override"


def attention_override(options: dict):
    """The override in the single slot every optimized_attention call goes through, or
    None. 0.3.75: comfy.ldm.modules.attention.wrap_attn calls
    transformer_options["optimized_attention_override"](func, *args, **kwargs) with `func`
    the undecorated attention function."""
    return options.get(ATTENTION_OVERRIDE)


def set_attention_override(options: dict, override) -> None:
    """Put `override` in the slot (None empties it). 0.3.75: see attention_override."""
    if override is None:
        options.pop(ATTENTION_OVERRIDE, None)
    else:
        options[ATTENTION_OVERRIDE] = override


def attention_call(args: tuple, kwargs: dict):
    """(q, k, v, mask, transformer_options) of an optimized_attention call as an override
    receives it (without `func`), q/k/v as [B, heads, tokens, dim]; None when they come
    unsplit. 0.3.75: optimized_attention(q, k, v, heads, mask=None, attn_precision=None,
    skip_reshape=False, ..., transformer_options=...); Flux passes skip_reshape=True, mask
    and transformer_options as keywords."""
    if not kwargs.get("skip_reshape") or len(args) < 4:
        return None
    mask = kwargs.get("mask", args[4] if len(args) > 4 else None)
    return args[0], args[1], args[2], mask, kwargs.get("transformer_options") or {}


def with_attention_kv(args: tuple, k: torch.Tensor, v: torch.Tensor) -> tuple:
    """The arguments of an optimized_attention call with other keys and values. 0.3.75:
    (q, k, v, heads, ...)."""
    return (args[0], k, v, *args[3:])


def with_attention_mask(args: tuple, kwargs: dict, mask: torch.Tensor) -> tuple[tuple, dict]:
    """(args, kwargs) of an optimized_attention call with another mask. 0.3.75: `mask` is
    the fifth parameter; Flux passes it as a keyword."""
    if "mask" in kwargs or len(args) <= 4:
        return args, {**kwargs, "mask": mask}
    return (*args[:4], mask, *args[5:]), kwargs


# ---- training -----------------------------------------------------------------------------

def trainable_adapter_types() -> dict:
    """Adapter name (lower case) -> class with create_train(weight, rank, alpha). 0.3.75:
    comfy.weight_adapter.adapter_maps = {"LoRA", "LoHa", "LoKr", "OFT"} (core TrainLoraNode's list)."""
    return {name.lower(): cls for name, cls in comfy.weight_adapter.adapter_maps.items()
            if hasattr(cls, "create_train")}


def weight_wrapped_modules(model_patcher):
    """(module name, module) of every layer whose weights pass through weight wrappers.
    0.3.75: comfy.ops layers carry `weight_function` / `bias_function` lists, and
    ModelPatcher.add_weight_wrapper("<module>.weight", fn) appends to them at load."""
    for name, module in model_patcher.model.named_modules():
        if hasattr(module, "weight_function") and getattr(module, "weight", None) is not None:
            yield name, module


def load_for_training(model_patcher) -> None:
    """Load the whole model on its device, as core TrainLoraNode does: a partially loaded
    (low-VRAM) model moves weights per call, which training does not support. 0.3.75:
    comfy.model_management.load_models_gpu([mp], memory_required=1e20, force_full_load=True)."""
    comfy.model_management.load_models_gpu([model_patcher], memory_required=1e20, force_full_load=True)


def throw_if_interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException when the user pressed Cancel. 0.3.75:
    comfy.model_management.throw_exception_if_processing_interrupted (clears the flag)."""
    comfy.model_management.throw_exception_if_processing_interrupted()


def interrupt_exception_type() -> type:
    """0.3.75: comfy.model_management.InterruptProcessingException."""
    return comfy.model_management.InterruptProcessingException

"""Every place FewStep reaches into ComfyUI beyond its public extension API.

The public API FewStep uses freely elsewhere: `comfy_api.latest` (nodes), ModelPatcher's
patch/wrapper methods (clone, add_wrapper_with_key, add_object_patch, add_patches,
set_model_patch_replace, get_model_object, model_options), `comfy.patcher_extension`
wrapper types, and the sampling entry points (`comfy.samplers.calculate_sigmas`,
`KSAMPLER`, `CFGGuider`, `KSampler.SAMPLERS/SCHEDULERS`, `folder_paths`).

Everything else is in this package, one small function per reach-in, each with the
ComfyUI version it was checked against ("0.3.75" = the runtime the tests use) and a test
in tests/comfy/test_comfy_compat_<submodule>.py that fails with a clear message when
ComfyUI changes it. Where versions differ, a capability probe picks the route (never a
version string). Callers use the names below as `comfy_compat.<name>`; the submodules
group them by what they reach:

    runtime.py        version, user folder, PromptServer, node outputs; ComfyCompatError
    samplers.py       KSampler's sampler list, model_sampling kinds, core sampling nodes
    lora.py           LoRA files, key maps and weight patches
    model_patcher.py  ModelPatcher state, wrapper arguments, the model fingerprint
    networks.py       inside the networks: TeaCache's indicators, UNet/DiT attention (ToMe)
    training.py       trainable adapters, weight wrappers, full load, Cancel
"""

from .lora import (clip_lora_key_map, convert_lora, diff_patch_tensor, load_safetensors, lora_adapter_matrices,
                   lora_patches, unet_lora_key_map)
from .model_patcher import (apply_model_args, calc_cond_batch_model_options, clone_model_options,
                            diffusion_model_args, dit_replace_patch, legacy_model_fingerprint, model_fingerprint,
                            outer_sample_args, outer_sample_latent_shape, patcher_state_key, uses_context_windows,
                            with_outer_sample_sigmas)
from .networks import (ATTENTION_OVERRIDE, FluxLayout, UNetLayout, attention_block_key, attention_call,
                       attention_grid, attention_override, block_forward_key, block_forward_options, call_sigma,
                       dit_block, first_block_modulated_input, flux_call_tokens, flux_layout, set_attention_override,
                       timestep_embedding, unet_layout, with_attention_kv, with_attention_mask)
from .runtime import (NEWEST_TESTED, USER_FOLDER, ComfyCompatError, add_get_route, combo_output, comfyui_version,
                      incompatible, legacy_user_file, log, note_untested_version, prompt_server, send_event,
                      user_data_dir)
from .samplers import (core_ksampler, core_model_sampling_aura_flow, core_model_sampling_discrete,
                       core_model_sampling_sd3, core_vae_decode, default_noise_sampler, is_discrete_flow_sampling,
                       is_discrete_sampling, is_flow_sampling, k_model_sampling, load_device,
                       register_k_diffusion_sampler, sampler_sample_noise, synchronize, with_unscaled_initial_noise)
from .training import (interrupt_exception_type, load_for_training, throw_if_interrupted, trainable_adapter_types,
                       weight_wrapped_modules)

__all__ = [
    # runtime
    "log", "USER_FOLDER", "ComfyCompatError", "incompatible", "comfyui_version", "NEWEST_TESTED",
    "note_untested_version", "user_data_dir", "legacy_user_file", "prompt_server", "send_event", "add_get_route",
    "combo_output",
    # samplers
    "register_k_diffusion_sampler", "k_model_sampling", "default_noise_sampler", "is_flow_sampling",
    "is_discrete_sampling", "is_discrete_flow_sampling", "core_model_sampling_discrete", "core_model_sampling_sd3",
    "core_model_sampling_aura_flow", "with_unscaled_initial_noise", "core_ksampler", "core_vae_decode",
    "load_device", "synchronize", "sampler_sample_noise",
    # lora
    "load_safetensors", "lora_patches", "convert_lora", "unet_lora_key_map", "clip_lora_key_map",
    "lora_adapter_matrices", "diff_patch_tensor",
    # model_patcher
    "patcher_state_key", "clone_model_options", "dit_replace_patch", "outer_sample_args",
    "outer_sample_latent_shape", "with_outer_sample_sigmas", "calc_cond_batch_model_options", "apply_model_args",
    "diffusion_model_args", "uses_context_windows", "model_fingerprint", "legacy_model_fingerprint",
    # networks
    "first_block_modulated_input", "timestep_embedding", "UNetLayout", "unet_layout", "attention_block_key",
    "attention_grid", "call_sigma", "block_forward_options", "block_forward_key", "FluxLayout", "flux_layout",
    "flux_call_tokens", "dit_block", "ATTENTION_OVERRIDE", "attention_override", "set_attention_override",
    "attention_call", "with_attention_kv", "with_attention_mask",
    # training
    "trainable_adapter_types", "weight_wrapped_modules", "load_for_training", "throw_if_interrupted",
    "interrupt_exception_type",
]

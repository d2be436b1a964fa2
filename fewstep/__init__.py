"""Plain code behind FewStep's nodes, one folder per feature, each with the same roles:
pure modules first (torch and the standard library only, testable without ComfyUI),
then the ComfyUI hook modules, then a small __init__ that says what the folder offers.

    architectures.py   the one vocabulary of model families (pure)
    comfy_compat/      every reach into ComfyUI internals (hooks): runtime, samplers, lora,
                       model_patcher, networks, training | __init__ (the public names)
    metrics.py         PSNR, SSIM and friends for Compare, ABTest and the bench (pure)
    presets/           published few-step settings: registry.py, shift.py + presets.json | patches.py, apply.py
    lora/              LoRA files: files, names, hashes, structure, recognition, settings | library, apply, load
    caching/           TeaCache: profiles, state, calibration | hooks
    sampling/          the TCD sampler: tcd | hooks
    analysis/          A/B test and difference pictures: pictures, report | hooks, ab_test
    tome/              token merging (ToDo, ToMe): merge, settings | hooks

HOOK_MODULES lists the modules allowed to import ComfyUI (a hook package is listed with
each of its submodules); a unit test enforces it.
"""

HOOK_MODULES = (
    "comfy_compat",
    "comfy_compat.runtime",
    "comfy_compat.samplers",
    "comfy_compat.lora",
    "comfy_compat.model_patcher",
    "comfy_compat.networks",
    "comfy_compat.training",
    "presets.apply",
    "presets.patches",
    "lora.apply",
    "lora.library",
    "lora.load",
    "caching.hooks",
    "sampling.hooks",
    "analysis.hooks",
    "analysis.ab_test",
    "tome.hooks",
    "tome.dit",
)

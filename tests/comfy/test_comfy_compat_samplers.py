"""One test per reach-in of fewstep/comfy_compat/samplers.py (the sampler list,
model_sampling kinds, core sampling nodes), against the real ComfyUI: when a ComfyUI update
moves or changes something FewStep relies on, the failing test names it. Callers reach these
as `comfy_compat.<name>`, so the tests do too."""

from __future__ import annotations

import torch

from comfyui_fewstep.fewstep import comfy_compat as cc


def test_tcd_is_registered_where_ksampler_resolves_samplers(pack_nodes):
    import comfy.k_diffusion.sampling
    import comfy.samplers

    from comfyui_fewstep.fewstep.sampling.hooks import register_tcd_sampler, sample_tcd

    assert "tcd" in comfy.samplers.KSampler.SAMPLERS and "tcd" in comfy.samplers.KSAMPLER_NAMES
    assert comfy.k_diffusion.sampling.sample_tcd is sample_tcd
    assert comfy.samplers.sampler_object("tcd").sampler_function is sample_tcd
    assert register_tcd_sampler() is False  # once only
    assert comfy.samplers.KSampler.SAMPLERS.count("tcd") == 1


def test_a_k_diffusion_sampler_finds_the_models_sampling_and_noise(sd15):
    import comfy.samplers

    seen = {}

    def probe(model, x, sigmas, extra_args=None, callback=None, disable=None):
        seen["ms"] = cc.k_model_sampling(model)
        noise = cc.default_noise_sampler(x, 7)
        seen["noise"] = (noise(sigmas[0], sigmas[1]), cc.default_noise_sampler(x, 7)(sigmas[0], sigmas[1]))
        return model(x, sigmas[0] * x.new_ones([x.shape[0]]), **(extra_args or {}))

    import comfy.sample

    latent = sd15.latent["samples"]
    comfy.sample.sample_custom(sd15.model, torch.zeros_like(latent), 1.0, comfy.samplers.KSAMPLER(probe),
                               torch.tensor([1.0, 0.0]), sd15.positive, sd15.positive, latent, seed=0,
                               disable_pbar=True)
    assert seen["ms"] is sd15.model.get_model_object("model_sampling")
    a, b = seen["noise"]
    assert a.shape == latent.shape and torch.equal(a, b)  # seeded


def test_sampling_kinds_are_told_apart(sd15, flux):
    discrete = sd15.model.get_model_object("model_sampling")
    flow = flux.model.get_model_object("model_sampling")
    assert cc.is_discrete_sampling(discrete) and not cc.is_flow_sampling(discrete)
    assert cc.is_flow_sampling(flow) and not cc.is_discrete_sampling(flow) and not cc.is_discrete_flow_sampling(flow)
    shifted = cc.core_model_sampling_sd3(flux.model, 3.0).get_model_object("model_sampling")
    assert cc.is_discrete_flow_sampling(shifted) and cc.is_flow_sampling(shifted)


def test_a_const_subclass_that_noises_otherwise_is_not_flow_sampling():
    """A CONST subclass whose noise_scaling returns the latent image (ComfyUI 0.33.0's
    IMG_TO_IMG_FLOW, used where it exists; on older versions a subclass written the same
    way) is not x = (1 - sigma) x0 + sigma eps, whatever its base class."""
    import comfy.model_sampling

    class OwnImageToImageFlow(comfy.model_sampling.CONST):
        def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
            return latent_image

    ImageToImageFlow = getattr(comfy.model_sampling, "IMG_TO_IMG_FLOW", OwnImageToImageFlow)

    class Sampling(comfy.model_sampling.ModelSamplingDiscreteFlow, ImageToImageFlow):
        pass

    class Plain(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    assert not cc.is_flow_sampling(Sampling()) and cc.is_flow_sampling(Plain())


def test_core_model_sampling_nodes_are_callable_as_functions(sd15, flux):
    from comfy_extras.nodes_model_advanced import LCM

    lcm = cc.core_model_sampling_discrete(sd15.model, "lcm")
    assert lcm is not sd15.model and isinstance(lcm.get_model_object("model_sampling"), LCM)
    assert not isinstance(sd15.model.get_model_object("model_sampling"), LCM)  # input untouched
    sd3 = cc.core_model_sampling_sd3(flux.model, 3.0).get_model_object("model_sampling")
    aura = cc.core_model_sampling_aura_flow(flux.model, 3.0).get_model_object("model_sampling")
    assert (sd3.shift, sd3.multiplier, aura.shift, aura.multiplier) == (3.0, 1000, 3.0, 1.0)


def test_unscaled_initial_noise_starts_from_unit_noise(sd15):
    ms = sd15.model.get_model_object("model_sampling")
    patched = cc.with_unscaled_initial_noise(ms)
    sigma, noise, latent = torch.tensor([3.0]), torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)
    expected = ms.noise_scaling(sigma, noise, latent, max_denoise=True)
    assert torch.equal(patched.noise_scaling(sigma, noise, latent), expected)
    assert not torch.equal(ms.noise_scaling(sigma, noise, latent), expected)  # the patch changes something


def test_core_ksampler_gives_the_same_noise_for_the_same_seed_and_latent(sd15):
    import nodes

    args = dict(seed=5, steps=2, cfg=2.0, sampler_name="euler", scheduler=sd15.scheduler, positive=sd15.positive,
                negative=sd15.negative, latent=sd15.latent)
    first, second = cc.core_ksampler(sd15.model, **args), cc.core_ksampler(sd15.model, **args)
    assert torch.equal(first["samples"], second["samples"])
    expected = nodes.common_ksampler(sd15.model, 5, 2, 2.0, "euler", sd15.scheduler, sd15.positive, sd15.negative,
                                     sd15.latent)[0]
    assert torch.equal(first["samples"], expected["samples"])


def test_core_vae_decode_returns_an_image_batch(tiny_sd15):
    _, _, vae = tiny_sd15
    image = cc.core_vae_decode(vae, {"samples": torch.zeros(2, 4, 2, 3)})
    assert image.shape == (2, 16, 24, 3) and 0 <= float(image.min()) <= float(image.max()) <= 1


def test_the_sampler_sample_wrapper_runs_loaded_and_receives_the_noise(core_sample, sd15):
    import comfy.model_management as mm
    import comfy.patcher_extension as pe

    seen = {}

    def timer(executor, *args, **kwargs):
        seen["noise"] = cc.sampler_sample_noise(args)
        seen["loaded"] = any(p.is_clone(m) for p in mm.loaded_models())
        return executor(*args, **kwargs)

    m = sd15.model.clone()
    m.add_wrapper_with_key(pe.WrappersMP.SAMPLER_SAMPLE, "compat-test", timer)
    core_sample(sd15, m, steps=2)
    latent = sd15.latent["samples"]
    expected = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))  # what core_sample passes
    assert torch.equal(seen["noise"].cpu(), expected), "SAMPLER_SAMPLE's fifth argument is no longer the noise"
    assert seen["loaded"], "SAMPLER_SAMPLE must run after the model is loaded (the A/B test times only sampling)"


def test_load_device_and_the_clock_synchronisation(sd15):
    import comfy.model_management as mm

    assert cc.load_device(sd15.model) == mm.get_torch_device()
    assert cc.synchronize(torch.device("cpu")) is None  # nothing to wait for
    assert mm.is_device_cuda(torch.device("cuda")) and not mm.is_device_cuda(torch.device("cpu"))
    assert mm.is_device_mps(torch.device("mps")) and not mm.is_device_mps(torch.device("cpu"))

"""The TCD sampler: its update rule against diffusers' TCDScheduler written out in VP
space, determinism and stochasticity on the tiny SD1.5 model through ComfyUI's own
KSampler and SamplerCustom, and the "tcd" registration."""

from types import SimpleNamespace

import pytest
import torch

from comfyui_fewstep.fewstep.sampling.tcd import ETA_OPTION


@pytest.fixture(scope="module")
def tcd(pack_nodes):
    # pack_nodes has loaded the pack the way ComfyUI does, which registered "tcd".
    from comfyui_fewstep.fewstep.sampling import hooks

    return hooks


def latent():
    import nodes

    return nodes.EmptyLatentImage().generate(64, 64, 1)[0]


def ksample(model, conds, sampler_name, seed=3, steps=4, scheduler="simple", cfg=1.0):
    import nodes

    return nodes.common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, *conds, latent())[0]["samples"]


def custom_sample(model, conds, sampler, seed=3, steps=4, scheduler="simple", cfg=1.0):
    from comfy_extras.nodes_custom_sampler import BasicScheduler, SamplerCustom

    sigmas = BasicScheduler.execute(model, scheduler, steps, 1.0).args[0]
    return SamplerCustom.execute(model, True, seed, cfg, *conds, sampler, sigmas, latent()).args[0]["samples"]


# --- the update rule, on a toy denoiser with ComfyUI's real SD schedule -----------------


class ToyEpsModel:
    """An eps-predicting 'network' eps(x_vp, t) = 0.3 x_vp + 0.01 t/1000, wrapped the way
    k-diffusion samplers see a ComfyUI model (x in sigma space, returns the denoised x0)."""

    def __init__(self, model_sampling):
        self.ms = model_sampling
        self.inner_model = SimpleNamespace(inner_model=SimpleNamespace(model_sampling=model_sampling))

    def eps(self, x_vp, t):
        return 0.3 * x_vp + 0.01 * t / 1000

    def __call__(self, x, sigma, **kwargs):
        s = sigma.reshape(-1, 1, 1, 1)
        return x - s * self.eps(x / (s**2 + 1).sqrt(), self.ms.timestep(sigma).float().reshape(-1, 1, 1, 1))


def reference_tcd_vp(model, alphas_cumprod, timesteps, x_T, noises, gamma):
    """diffusers TCDScheduler.step for eps prediction, ending on the x0 estimate (as every
    k-diffusion sampler ends at sigma 0)."""
    x = x_T
    for i, t in enumerate(timesteps):
        eps = model.eps(x, torch.tensor(float(t)))
        a_t = alphas_cumprod[t]
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        if i == len(timesteps) - 1:
            return x0
        t_prev = timesteps[i + 1]
        s = int((1 - gamma) * t_prev)
        a_s, a_prev = alphas_cumprod[s], alphas_cumprod[t_prev]
        x = a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps
        if gamma > 0:
            x = (a_prev / a_s).sqrt() * x + (1 - a_prev / a_s).sqrt() * noises[i]


@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0])
def test_tcd_step_matches_the_tcd_scheduler_update_rule(comfy, tcd, gamma):
    import comfy.model_sampling

    ms = comfy.model_sampling.ModelSamplingDiscrete()  # SD's scaled-linear schedule
    model = ToyEpsModel(ms)
    alphas_cumprod = 1 / (1 + ms.sigmas.double() ** 2)
    timesteps = [999, 759, 499, 259]  # TCDScheduler's 4-step schedule (original_steps 50)
    sigmas = torch.cat([ms.sigma(torch.tensor(timesteps)), torch.zeros(1)])
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn(1, 4, 8, 8, generator=gen, dtype=torch.float64)
    noises = [torch.randn(1, 4, 8, 8, generator=gen, dtype=torch.float64) for _ in timesteps]
    it = iter(noises)

    ours = tcd.sample_tcd(
        model, (x_T * (1 + sigmas[0] ** 2).sqrt()).float(), sigmas, disable=True,
        noise_sampler=lambda s, sn: next(it).float(), eta=gamma,
    )
    ref = reference_tcd_vp(model, alphas_cumprod, timesteps, x_T, noises, gamma)
    # Ours runs in float32, the reference in float64; the toy model is float32 CPU math on any
    # machine. Float32 rounding over 4 steps on values up to ~21 gives ~5e-6 (measured 4.5e-6):
    # the tolerance is 40x that.
    torch.testing.assert_close(ours.double(), ref, rtol=2e-4, atol=2e-4)
    if gamma > 0:  # the noise was actually used
        assert not torch.allclose(ours.double(), reference_tcd_vp(model, alphas_cumprod, timesteps, x_T, noises, 0.0), atol=1e-3)


def test_tcd_with_eta_0_is_euler_on_a_flow_model_too(comfy, tcd):
    import comfy.model_sampling
    from comfy.k_diffusion.sampling import sample_euler

    class Flow(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    ms = Flow()
    ms.set_parameters(shift=3.0, multiplier=1.0)
    inner = SimpleNamespace(inner_model=SimpleNamespace(model_sampling=ms))

    def model(x, sigma, **kwargs):  # a velocity-ish toy: x0 estimate shrinks x
        return 0.7 * x * (1 - sigma.reshape(-1, 1, 1, 1))

    model.inner_model = inner
    sigmas = torch.cat([ms.sigma(torch.tensor([1.0, 0.75, 0.5, 0.25])), torch.zeros(1)])
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(tcd.sample_tcd(model, x, sigmas, disable=True, eta=0.0), sample_euler(model, x, sigmas, disable=True))


def test_eta_outside_0_1_is_refused(comfy, tcd):
    with pytest.raises(ValueError, match="between 0 and 1"):
        tcd.sample_tcd(None, torch.zeros(1, 4, 2, 2), torch.tensor([1.0, 0.0]), eta=1.5)


# --- on the tiny SD1.5 model through ComfyUI's samplers ---------------------------------


def test_eta_0_is_deterministic_and_equals_euler(pack_nodes, tiny_sd15, conds):
    model = tiny_sd15[0]
    sampler = pack_nodes["FewStepTCDSampler"].execute(0.0).args[0]
    a = custom_sample(model, conds, sampler, seed=3)
    b = custom_sample(model, conds, sampler, seed=4)  # eta 0 uses no noise after the start...
    assert torch.equal(a, custom_sample(model, conds, sampler, seed=3))
    assert not torch.equal(a, b)  # ...but the initial noise still follows the seed
    torch.testing.assert_close(a, ksample(model, conds, "euler", seed=3), rtol=1e-4, atol=1e-4)


def test_eta_above_0_adds_seeded_noise(pack_nodes, tiny_sd15, conds):
    model = tiny_sd15[0]
    node = pack_nodes["FewStepTCDSampler"]
    det = custom_sample(model, conds, node.execute(0.0).args[0])
    sto = custom_sample(model, conds, node.execute(0.3).args[0])
    assert (sto - det).abs().mean() > 1e-3 * det.abs().mean()
    assert torch.equal(sto, custom_sample(model, conds, node.execute(0.3).args[0]))  # same seed, same noise


def test_ksampler_tcd_is_the_same_sampler_with_eta_0_3(pack_nodes, tiny_sd15, conds):
    model = tiny_sd15[0]
    via_ksampler = ksample(model, conds, "tcd")
    via_custom = custom_sample(model, conds, pack_nodes["FewStepTCDSampler"].execute(0.3).args[0])
    torch.testing.assert_close(via_ksampler, via_custom, rtol=0, atol=0)


def test_ksampler_tcd_takes_eta_from_the_model_options(tcd, tiny_sd15, conds):
    model = tiny_sd15[0].clone()
    model.model_options.setdefault("transformer_options", {})[ETA_OPTION] = 0.0
    torch.testing.assert_close(ksample(model, conds, "tcd"), ksample(tiny_sd15[0], conds, "euler"), rtol=1e-4, atol=1e-4)


def test_tcd_is_offered_once_next_to_lcm(tcd):
    import comfy.samplers

    for names in (comfy.samplers.KSampler.SAMPLERS, comfy.samplers.KSAMPLER_NAMES, comfy.samplers.SAMPLER_NAMES):
        assert names.count("tcd") == 1
        assert names.index("tcd") == names.index("lcm") + 1
    assert tcd.register_tcd_sampler() is False  # a second registration adds nothing
    assert tcd.register_tcd_sampler() is False
    assert comfy.samplers.KSampler.SAMPLERS.count("tcd") == 1
    import comfy.k_diffusion.sampling

    assert comfy.k_diffusion.sampling.sample_tcd is tcd.sample_tcd
    assert comfy.samplers.sampler_object("tcd").sampler_function is tcd.sample_tcd


def test_registered_node_info(pack_nodes):
    info = pack_nodes["FewStepTCDSampler"].GET_NODE_INFO_V1()
    assert info["category"] == "FewStep/sampling"
    assert info["output"] == ["SAMPLER"]
    assert info["input"]["required"]["eta"][1]["default"] == 0.3

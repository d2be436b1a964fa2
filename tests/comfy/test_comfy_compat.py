"""One test per reach-in of fewstep/comfy_compat.py, against the real ComfyUI: when a
ComfyUI update moves or changes something FewStep relies on, the failing test names it."""

from __future__ import annotations

import re

import pytest
import torch

from comfyui_fewstep.fewstep import comfy_compat as cc
from comfyui_fewstep.tools import tiny_families as tf


@pytest.fixture(scope="module")
def sd15():
    return tf.build("sd15")


@pytest.fixture(scope="module")
def flux():
    return tf.build("flux")


def sample(family, model=None, steps=2, sampler="euler", cfg=2.0):
    """A short run of core sampling on a tiny family (the code path every wrapper sees)."""
    import comfy.sample

    model = model or family.model
    latent = family.latent["samples"]
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    return comfy.sample.sample(model, noise, steps, cfg, sampler, family.scheduler, family.positive, family.negative,
                               latent, seed=0, disable_pbar=True)


def test_comfyui_version_is_read(comfy):
    assert re.match(r"^\d+\.\d+\.\d+", cc.comfyui_version()), "comfyui_version.__version__ moved or changed format"


def test_a_newer_comfyui_than_tested_gets_one_log_line_and_still_loads(comfy, monkeypatch, caplog):
    assert cc._version_tuple(cc.NEWEST_TESTED) is not None
    monkeypatch.setattr(cc, "comfyui_version", lambda: "99.0.0")
    with caplog.at_level("INFO", logger="FewStep"):
        line = cc.note_untested_version()
    assert line and "tested on ComfyUI up to " + cc.NEWEST_TESTED in line and "99.0.0" in line
    assert [r.message for r in caplog.records] == [line]
    monkeypatch.setattr(cc, "comfyui_version", lambda: cc.NEWEST_TESTED)
    assert cc.note_untested_version() is None


def test_user_data_lives_under_comfyuis_user_directory(comfy):
    import folder_paths

    assert cc.user_data_dir("teacache") == cc.user_data_dir() / "teacache"
    assert cc.user_data_dir().parent.resolve() == __import__("pathlib").Path(folder_paths.get_user_directory()).resolve()
    assert cc.legacy_user_file("x.json").parent.name == "default"


def test_without_a_server_events_and_routes_are_no_ops(comfy):
    assert cc.prompt_server() is None
    cc.send_event("fewstep.test", {"a": 1})  # must not raise in-process (bench, CLI)
    assert cc.add_get_route("/fewstep/never", lambda request: None) is False


def test_a_combo_output_is_typed_by_its_option_list(comfy):
    options = ["a", "b"]
    out = cc.combo_output(options=options, display_name="choice", tooltip="t")
    assert out.get_io_type() is options and out.io_type is options
    assert out.as_dict()["display_name"] == "choice" and out.options is options


@pytest.mark.parametrize("node_id", ["FewStepPreset", "FewStepLoraLoader"])
def test_sampler_and_scheduler_outputs_link_into_ksampler(pack_nodes, node_id):
    """ComfyUI's own link check (what POST /prompt runs) accepts them into KSampler's inputs."""
    import nodes
    from comfy_execution.validation import validate_node_input

    names = list(pack_nodes[node_id].RETURN_NAMES)
    types = pack_nodes[node_id].RETURN_TYPES
    ksampler = nodes.NODE_CLASS_MAPPINGS["KSampler"].INPUT_TYPES()["required"]
    for name in ("sampler_name", "scheduler"):
        received = types[names.index(name)]
        assert validate_node_input(received, ksampler[name][0]), f"{node_id}.{name} ({received!r}) is refused by KSampler"


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


def test_lora_files_map_to_core_patches(tmp_path, tiny_sd15):
    from comfyui_fewstep.tools.synth_loras import tiny_sd15_lora, write_lora

    model, clip, _ = tiny_sd15
    path = write_lora(tmp_path / "l.safetensors", tiny_sd15_lora(seed=1))
    lora = cc.convert_lora(cc.load_safetensors(path))
    patches = cc.lora_patches(lora, cc.unet_lora_key_map(model))
    assert patches, "comfy.lora.load_lora mapped none of a kohya SD1.5 LoRA's keys"
    key, patch = next(iter(patches.items()))
    up, down = cc.lora_adapter_matrices(patch)
    weight = model.model.state_dict()[key]
    assert up.shape[0] == weight.shape[0] and down.shape[1] == weight.reshape(weight.shape[0], -1).shape[1]
    assert cc.lora_adapter_matrices(("diff", (torch.zeros(1),))) is None
    assert cc.diff_patch_tensor(("diff", (torch.zeros(3),))).shape == (3,) and cc.diff_patch_tensor(patch) is None
    assert isinstance(cc.clip_lora_key_map(clip), dict) and cc.clip_lora_key_map(clip)


def test_patcher_state_key_follows_weight_patches(sd15):
    m = sd15.model.clone()
    before = cc.patcher_state_key(m)
    assert cc.patcher_state_key(m.clone()) == before  # clones share weights and patches
    key = next(iter(m.model.state_dict()))
    m.add_patches({key: (torch.zeros_like(m.model.state_dict()[key]),)}, 1.0)
    assert cc.patcher_state_key(m) != before


def test_model_options_clone_is_deep_where_core_clones(sd15):
    options = {"transformer_options": {"patches": {"x": [1]}}}
    copied = cc.clone_model_options(options)
    copied["transformer_options"]["patches"]["x"].append(2)
    assert options["transformer_options"]["patches"]["x"] == [1]


def test_dit_replace_patch_is_found(flux):
    m = flux.model.clone()
    assert cc.dit_replace_patch(m, "double_block", 0) is None

    def patch(args, extra):
        return extra["original_block"](args)

    m.set_model_patch_replace(patch, "dit", "double_block", 0)
    assert cc.dit_replace_patch(m, "double_block", 0) is patch


def test_wrapper_arguments_are_where_fewstep_reads_them(sd15):
    import comfy.patcher_extension as pe

    seen = {}

    def outer(executor, *args, **kwargs):
        seen["outer"] = cc.outer_sample_args(args)
        return executor(*args, **kwargs)

    def calc(executor, *args, **kwargs):
        seen["calc"] = cc.calc_cond_batch_model_options(args)
        return executor(*args, **kwargs)

    def apply(executor, *args, **kwargs):
        seen["apply"] = cc.apply_model_args(args, kwargs)
        return executor(*args, **kwargs)

    def dm(executor, *args, **kwargs):
        seen["dm"] = cc.diffusion_model_args(args, kwargs)
        return executor(*args, **kwargs)

    m = sd15.model.clone()
    for kind, fn in ((pe.WrappersMP.OUTER_SAMPLE, outer), (pe.WrappersMP.CALC_COND_BATCH, calc),
                     (pe.WrappersMP.APPLY_MODEL, apply), (pe.WrappersMP.DIFFUSION_MODEL, dm)):
        m.add_wrapper_with_key(kind, "compat-test", fn)
    sample(sd15, m, steps=2)
    noise, latent, sampler, sigmas = seen["outer"]
    assert noise.shape == latent.shape == sd15.latent["samples"].shape
    assert hasattr(sampler, "sample") and sigmas.ndim == 1 and len(sigmas) == 3
    assert "transformer_options" in seen["calc"]
    for name in ("apply", "dm"):
        x, t, to = seen[name]
        assert x.ndim == 4 and t.ndim == 1 and x.shape[0] == t.shape[0], name
        assert "uuids" in to and "sigmas" in to, f"{name}: transformer_options lack uuids/sigmas"


def test_an_outer_sample_wrapper_reads_the_latent_shape_and_replaces_the_schedule(sd15):
    import comfy.patcher_extension as pe

    seen = {"sigmas": []}

    def outer(executor, *args, **kwargs):
        seen["shape"] = cc.outer_sample_latent_shape(args, kwargs)
        sigmas = cc.outer_sample_args(args)[3]
        seen["given"] = len(sigmas)
        return executor(*cc.with_outer_sample_sigmas(args, sigmas[:2]), **kwargs)  # its first step only

    def model_function(apply_model, args):
        seen["sigmas"].append(float(args["timestep"].flatten()[0]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    m = sd15.model.clone()
    m.add_wrapper_with_key(pe.WrappersMP.OUTER_SAMPLE, "compat-test", outer)
    m.set_model_unet_function_wrapper(model_function)
    sample(sd15, m, steps=3)
    assert seen["shape"] == tuple(sd15.latent["samples"].shape)
    assert seen["given"] == 4 and len(seen["sigmas"]) == 1, "the replaced schedule (one step) was not the one run"


def test_context_windows_are_recognised(sd15, comfy):
    assert not cc.uses_context_windows(sd15.model.model_options)
    windowed = tf.with_context_windows(sd15.model, context_length=4, context_overlap=1, dim=0)
    assert cc.uses_context_windows(windowed.model_options)


def test_fingerprint_reads_weights_and_patches(sd15):
    fp = cc.model_fingerprint(sd15.model, b"t")
    assert fp == cc.model_fingerprint(sd15.model.clone(), b"t") and fp != cc.model_fingerprint(sd15.model, b"u")
    m = sd15.model.clone()
    key = next(iter(m.model.state_dict()))
    m.add_patches({key: (torch.ones_like(m.model.state_dict()[key]),)}, 0.5)
    assert cc.model_fingerprint(m, b"t") != fp


def test_fingerprint_ignores_1d_parameters_and_module_names_but_not_matrices():
    """ComfyUI drops unused 1-D parameters between versions (Lumina 2's norm_final.weight
    from 0.4.x) and renames modules: neither may change a stored calibration's key."""
    a, b = tf.build_model("lumina2"), tf.build_model("lumina2")
    fp, legacy = cc.model_fingerprint(a, b"t"), cc.legacy_model_fingerprint(a, b"t")
    assert cc.model_fingerprint(b, b"t") == fp
    sd = b.model.diffusion_model.state_dict(keep_vars=True)
    one_d = next(k for k in sorted(sd) if sd[k].dim() == 1)
    matrix = next(k for k in sorted(sd) if sd[k].dim() >= 2)
    with torch.no_grad():
        sd[one_d].add_(1.0)
    assert cc.model_fingerprint(b, b"t") == fp and cc.legacy_model_fingerprint(b, b"t") != legacy
    renamed = b.model.diffusion_model
    renamed.add_module("renamed_final_layer", renamed._modules.pop("final_layer"))
    assert cc.model_fingerprint(b, b"t") == fp
    with torch.no_grad():
        sd[matrix].mul_(2.0)
    assert cc.model_fingerprint(b, b"t") != fp


@pytest.mark.parametrize("family", ["flux", "hunyuan_video", "ltxv", "wan21"])
def test_first_block_input_is_read_from_the_blocks_own_arguments(family):
    fam = tf.build(family)
    got = {}

    def patch(args, extra):
        got["ind"] = cc.first_block_modulated_input(family, fam.model.model.diffusion_model, args)
        got["img"] = args["img"]
        return extra["original_block"](args)

    m = fam.model.clone()
    m.set_model_patch_replace(patch, "dit", "double_block", 0)
    sample(fam, m, steps=1, cfg=1.0)
    assert got, f"{family}: the ('double_block', 0) replace patch was never called"
    assert got["ind"].shape[0] == got["img"].shape[0] and got["ind"].shape[-1] == got["img"].shape[-1]
    assert torch.isfinite(got["ind"]).all()


@pytest.mark.parametrize("family", ["wan21", "lumina2"])
def test_timestep_embedding_depends_on_the_timestep_only(family):
    fam = tf.build(family)
    dm = fam.model.model.diffusion_model
    x = torch.zeros(1, 1)
    a = cc.timestep_embedding(family, dm, x, torch.tensor([0.5]))
    assert torch.equal(a, cc.timestep_embedding(family, dm, x, torch.tensor([0.5])))
    assert not torch.equal(a, cc.timestep_embedding(family, dm, x, torch.tensor([0.9])))


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


def test_the_sampler_sample_wrapper_runs_loaded_and_receives_the_noise(sd15):
    import comfy.model_management as mm
    import comfy.patcher_extension as pe

    seen = {}

    def timer(executor, *args, **kwargs):
        seen["noise"] = cc.sampler_sample_noise(args)
        seen["loaded"] = any(p.is_clone(m) for p in mm.loaded_models())
        return executor(*args, **kwargs)

    m = sd15.model.clone()
    m.add_wrapper_with_key(pe.WrappersMP.SAMPLER_SAMPLE, "compat-test", timer)
    sample(sd15, m, steps=2)
    latent = sd15.latent["samples"]
    expected = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))  # what sample() passes
    assert torch.equal(seen["noise"].cpu(), expected), "SAMPLER_SAMPLE's fifth argument is no longer the noise"
    assert seen["loaded"], "SAMPLER_SAMPLE must run after the model is loaded (the A/B test times only sampling)"


def test_load_device_and_the_clock_synchronisation(sd15):
    import comfy.model_management as mm

    assert cc.load_device(sd15.model) == mm.get_torch_device()
    assert cc.synchronize(torch.device("cpu")) is None  # nothing to wait for
    assert mm.is_device_cuda(torch.device("cuda")) and not mm.is_device_cuda(torch.device("cpu"))
    assert mm.is_device_mps(torch.device("mps")) and not mm.is_device_mps(torch.device("cpu"))


def test_unet_layout_reads_levels_and_transformer_blocks_from_the_modules(sd15):
    layout = cc.unet_layout(sd15.model)
    assert layout.attention_levels == (0,)  # the tiny SD1.5 has one level
    assert {key for _p, key, _l in layout.blocks} == {("input", 1), ("middle", 0), ("output", 0), ("output", 1)}
    sdxl = tf.build("sdxl")
    layout = cc.unet_layout(sdxl.model)
    assert layout.attention_levels == (1,)  # SDXL: no attention at the top level
    # input 3 is the downsampling itself (it runs at level 0); output 2 ends with the upsampling
    assert layout.levels[("input", 3)] == 0 and layout.levels[("input", 4)] == 1 and layout.levels[("middle", 0)] == 1
    assert layout.levels[("output", 2)] == 1 and layout.levels[("output", 3)] == 0
    dm = sdxl.model.model.diffusion_model
    for path, _key, _level in layout.blocks:
        assert type(dm.get_submodule(path)).__name__ == "BasicTransformerBlock"
    assert cc.unet_layout(tf.build("flux").model) is None


def test_a_transformer_blocks_forward_is_object_patched_and_reads_its_call(sd15):
    path = cc.unet_layout(sd15.model).blocks[0][0]
    key = cc.block_forward_key(path)
    m = sd15.model.clone()
    previous = m.get_model_object(key)
    assert previous.__self__ is m.model.diffusion_model.get_submodule(path)  # the class's forward, bound
    seen = []

    def forward(x, *args, **kwargs):
        options = cc.block_forward_options(args, kwargs)
        seen.append((x.shape, cc.attention_grid(options), cc.call_sigma(options), cc.attention_block_key(options)))
        return previous(x, *args, **kwargs)

    m.add_object_patch(key, forward)
    out = sample(sd15, m, steps=1)
    assert torch.equal(out, sample(sd15, sd15.model, steps=1))
    (shape, grid, sigma, block), = seen
    h, w = sd15.latent["samples"].shape[-2:]
    assert shape[1] == h * w and grid == (h, w) and sigma > 0 and block == ("input", 1)
    assert m.model.diffusion_model.get_submodule(path).forward is not forward  # the unpatched run restored it


def test_flux_layout_reads_patch_size_and_block_groups(flux, sd15):
    layout = cc.flux_layout(flux.model)
    assert layout.patch_size == 2 and layout.groups == (("double", 1), ("single", 1))
    assert cc.flux_layout(sd15.model) is None and cc.flux_layout(tf.build("sd3").model) is None


class AttentionRecorder:
    """An override in the attention slot: records each call as FewStep reads it, then runs
    ComfyUI's attention function, optionally with the keys/values cut to `keep` tokens."""

    def __init__(self, keep=None):
        self.calls, self.keep = [], keep

    def __call__(self, func, *args, **kwargs):
        q, k, v, mask, options = cc.attention_call(args, kwargs)
        self.calls.append((cc.dit_block(options), q, k, v, mask))
        if self.keep is not None:
            args = cc.with_attention_kv(args, k[:, :, :self.keep], v[:, :, :self.keep])
        return func(*args, **kwargs)


def flux_run(flux, latent, noise_seed=0, keep=None, cfg=1.0):
    """One Euler step of core sampling on the tiny Flux with an AttentionRecorder in the slot
    and a DIFFUSION_MODEL wrapper reading the call's token layout."""
    import comfy.patcher_extension as pe
    import comfy.sample

    m = flux.model.clone()
    rec, layouts = AttentionRecorder(keep), []
    cc.set_attention_override(m.model_options.setdefault("transformer_options", {}), rec)

    def wrapper(executor, *args, **kwargs):
        layouts.append(cc.flux_call_tokens(args, kwargs, cc.flux_layout(m).patch_size))
        return executor(*args, **kwargs)

    m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "test", wrapper)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(noise_seed))
    out = comfy.sample.sample(m, noise, 1, cfg, "euler", flux.scheduler, flux.positive, flux.negative, latent, seed=0,
                              disable_pbar=True)
    return out, rec.calls, layouts


@pytest.mark.parametrize("shape", [(1, 16, 8, 8), (2, 16, 9, 7)])
def test_flux_attention_calls_reach_the_slot_with_the_call_token_layout(flux, shape):
    out, calls, layouts = flux_run(flux, torch.zeros(shape), cfg=2.0)
    assert torch.isfinite(out).all()
    (text, (h, w), total), = layouts  # cond and uncond in one call
    assert text == flux.positive[0][0].shape[1] and (h, w) == ((shape[2] + 1) // 2, (shape[3] + 1) // 2)
    assert total == text + h * w
    assert [block for block, *_ in calls] == [("double", 0), ("single", 0)]
    for _block, q, k, v, mask in calls:
        assert q.dim() == 4 and q.shape[0] == 2 * shape[0] and q.shape[2] == k.shape[2] == v.shape[2] == total
        assert mask is None


def test_flux_attention_accepts_fewer_keys_than_queries(flux):
    latent = torch.zeros(1, 16, 8, 8)
    full, _calls, _ = flux_run(flux, latent)
    text = flux.positive[0][0].shape[1]
    cut, calls, _ = flux_run(flux, latent, keep=text)
    assert cut.shape == full.shape and torch.isfinite(cut).all() and not torch.equal(cut, full)


def test_flux_applies_rope_to_q_and_k_before_the_slot(flux):
    import comfy.ldm.flux.math as flux_math

    dm = flux.model.model.diffusion_model
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 6, 128, generator=gen) for _ in range(3))
    ids = torch.zeros(1, 6, 3)
    ids[0, :, 1], ids[0, :, 2] = torch.tensor([0., 0, 1, 1, 2, 2]), torch.tensor([0., 1, 0, 1, 0, 1])
    pe = dm.pe_embedder(ids)
    rec = AttentionRecorder()
    flux_math.attention(q, k, v, pe=pe, transformer_options={cc.ATTENTION_OVERRIDE: rec})
    (_block, q_seen, k_seen, v_seen, _mask), = rec.calls
    rq, rk = flux_math.apply_rope(q, k, pe)
    assert torch.equal(q_seen, rq) and torch.equal(k_seen, rk) and torch.equal(v_seen, v)
    assert not torch.equal(k_seen, k)  # the keys arrive rotated: each carries its own position


def test_flux_joint_sequences_are_text_then_image(flux):
    """Double blocks: a token's key depends only on its own stream before attention, so
    another image (same prompt, same step) changes exactly the keys after the text. Single
    blocks: their input is the double blocks' text output followed by their image output."""
    latent = torch.zeros(1, 16, 8, 8)
    text = flux.positive[0][0].shape[1]
    _, a, _ = flux_run(flux, latent, noise_seed=0)
    _, b, _ = flux_run(flux, latent, noise_seed=1)
    ka, kb = a[0][2], b[0][2]
    assert a[0][0] == ("double", 0)
    assert torch.equal(ka[:, :, :text], kb[:, :, :text]) and not torch.equal(ka[:, :, text:], kb[:, :, text:])
    seen = {}

    def double(args, extra):
        out = extra["original_block"](args)
        seen["txt"], seen["img"] = out["txt"].clone(), out["img"].clone()
        return out

    def single(args, extra):
        seen["joint"] = args["img"].clone()
        return extra["original_block"](args)

    m = flux.model.clone()
    m.set_model_patch_replace(double, "dit", "double_block", 0)
    m.set_model_patch_replace(single, "dit", "single_block", 0)
    sample(flux, m, steps=1, cfg=1.0)
    assert torch.equal(seen["joint"], torch.cat([seen["txt"], seen["img"]], dim=1))


def test_flux_attention_takes_a_replaced_mask(flux):
    """A mask that hides every image key must give what attention over the text keys alone gives."""
    import comfy.sample

    latent = torch.zeros(1, 16, 8, 8)
    text = flux.positive[0][0].shape[1]
    cut, _calls, _ = flux_run(flux, latent, keep=text)

    def text_only(func, *args, **kwargs):
        q, k, _v, mask, _options = cc.attention_call(args, kwargs)
        assert mask is None
        hide = torch.zeros(q.shape[2], k.shape[2])
        hide[:, text:] = float("-inf")
        args, kwargs = cc.with_attention_mask(args, kwargs, hide)
        return func(*args, **kwargs)

    m = flux.model.clone()
    cc.set_attention_override(m.model_options.setdefault("transformer_options", {}), text_only)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    masked = comfy.sample.sample(m, noise, 1, 1.0, "euler", flux.scheduler, flux.positive, flux.negative, latent,
                                 seed=0, disable_pbar=True)
    assert torch.allclose(masked, cut, rtol=1e-4, atol=1e-4 * cut.abs().max().item())

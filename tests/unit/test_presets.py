"""The preset registry: every research row is there with a citation, every name is one
ComfyUI knows, step rules hold, and malformed entries fail with errors that say where."""

import copy
import json
import math

import pytest

from comfyui_fewstep.fewstep.presets import registry as P
from comfyui_fewstep.fewstep.presets.shift import ResolutionShift

# Every published preset the pack ships (the audited table), plus the Wan LoRAs.
PUBLISHED = {
    "lcm-lora", "dmd2-sdxl-4step", "dmd2-sdxl-pixai-8step", "dmd2-sdxl-pixai-8step-cfg1.6",
    "dmd2-hyper-sdxl-pixai-4step", "dmd2-sdxl-1step-unet", "hyper-sd-nstep", "hyper-sd-1step-unified-tcd",
    "hyper-sd-cfg", "hyper-sd3-cfg", "hyper-flux-dev", "sdxl-lightning", "sdxl-lightning-1step", "tcd-lora",
    "pcm-smallcfg", "pcm-normalcfg", "sdxl-turbo", "sd-turbo", "flux-schnell", "flux-turbo-alpha",
    "qwen-image-lightning", "qwen-image-distill-lora",
}
WAN_ROWS = {"wan21-lightx2v-4step", "wan22-lightning-t2v-4step"}


def raw_registry() -> dict:
    return json.loads(P.PRESETS_FILE.read_text(encoding="utf-8"))


def test_the_registry_holds_exactly_the_published_presets_and_the_wan_loras():
    assert set(P.preset_ids()) == PUBLISHED | WAN_ROWS


def test_every_preset_cites_an_https_source():
    for preset in P.registry().values():
        assert preset.source, preset.id
        assert all(s.title and s.url.startswith("https://") for s in preset.source), preset.id


def test_pixai_dmd2_variants_carry_the_guides_numbers_and_cite_both_listings_of_the_same_lora():
    by_id = P.registry()
    got = {i: (by_id[i].default_steps, by_id[i].cfg, by_id[i].lora_strength) for i in by_id if "pixai" in i}
    assert got == {
        "dmd2-sdxl-pixai-8step": (8, 1.0, 1.0),
        "dmd2-sdxl-pixai-8step-cfg1.6": (8, 1.6, 0.7),
        "dmd2-hyper-sdxl-pixai-4step": (4, 1.0, 1.0),
    }
    # The guide gives both sets for one LoRA that PixAI lists under two URLs: neither set
    # belongs to one URL, so both presets cite both.
    urls = {i: {s.url for s in by_id[i].source} for i in ("dmd2-sdxl-pixai-8step", "dmd2-sdxl-pixai-8step-cfg1.6")}
    assert urls["dmd2-sdxl-pixai-8step"] == urls["dmd2-sdxl-pixai-8step-cfg1.6"]
    assert len(urls["dmd2-sdxl-pixai-8step"]) == 2
    # The guide names no sampler: all three say the pack chose it, and only they do.
    assert {i for i, p in by_id.items() if p.sampler_chosen_by_pack} == set(got)


def diffusers_tcd_timesteps(n: int, original_steps: int = 50, train_steps: int = 1000) -> tuple[int, ...]:
    """diffusers TCDScheduler.set_timesteps(n) with its defaults, rewritten without numpy:
    the training grid k*i - 1 (k = 1000 // 50, i = 1..50), reversed, sampled at
    floor(linspace(0, 50, n, endpoint=False))."""
    k = train_steps // original_steps
    grid = [k * i - 1 for i in range(original_steps, 0, -1)]
    return tuple(grid[math.floor(j * original_steps / n)] for j in range(n))


@pytest.mark.parametrize("preset_id", ["tcd-lora", "hyper-sd-1step-unified-tcd"])
def test_tcd_sigmas_carry_diffusers_timesteps_and_ksampler_stays_the_default(preset_id):
    preset = P.get_preset(preset_id)
    assert diffusers_tcd_timesteps(4) == (999, 759, 499, 259)
    for n in preset.steps:
        p = P.plan(preset, n)
        assert p.timesteps == diffusers_tcd_timesteps(n), n
        assert not p.sigmas_preferred  # KSampler's 'simple' is within 20 timesteps: its outputs stay the default
        # ComfyUI's 'simple' on the 1000-step table picks timesteps 999 - int(x * 1000 / n).
        simple = [999 - int(x * 1000 / n) for x in range(n)]
        assert max(abs(a - b) for a, b in zip(p.timesteps, simple)) < 20


def test_where_the_sigmas_output_is_the_recommended_path():
    preferred = {(i, n) for i, p in P.registry().items() for n in p.steps if P.plan(p, n).sigmas_preferred}
    assert preferred == {("dmd2-sdxl-1step-unet", 1)} | {(t, n) for t in ("sdxl-turbo", "sd-turbo") for n in (2, 3, 4)}


def test_hyper_sd_n_step_has_no_one_step_setting():
    with pytest.raises(P.PresetError, match=r"'hyper-sd-nstep'.*cannot run 1 steps.*allowed step counts are 2, 4, 8"):
        P.plan("hyper-sd-nstep", 1)
    assert 1 in P.get_preset("hyper-sd-1step-unified-tcd").steps  # one step is the unified LoRA with TCD


def test_qwen_distill_shift_follows_diffsynths_token_rule():
    rule = P.get_preset("qwen-image-distill-lora").model_patches["shift_by_resolution"]
    # DiffSynth: mu = 0.5 + (tokens - 256) * 0.4 / 7936, tokens = (h // 16) * (w // 16).
    for (w, h), expected in {(1024, 1024): 2.0, (1328, 1328): 2.3}.items():
        tokens = (h // 16) * (w // 16)
        assert rule.shift_for_image(w, h) == pytest.approx(math.exp(0.5 + (tokens - 256) * 0.4 / 7936), rel=1e-12)
        assert rule.shift_for_image(w, h) == pytest.approx(expected, abs=0.01)  # the audit's numbers
    # The latent of a w x h image is (h / 8) x (w / 8): the same tokens, 5-D Qwen latents too.
    assert rule.shift_for_latent((1, 16, 1, 1328 // 8, 1328 // 8)) == rule.shift_for_image(1328, 1328)
    assert rule.shift_for_image(1664, 928) == rule.shift_for_image(928, 1664)


@pytest.mark.parametrize("raw, message", [
    ({"tokens": [256, 8192], "log_shift": [0.5, 0.9], "latent_patch": 2}, "exactly the keys"),
    ({"tokens": [8192, 256], "log_shift": [0.5, 0.9], "latent_patch": 2, "vae_scale": 8}, "'tokens' must be"),
    ({"tokens": [256, 8192], "log_shift": [0.5, "x"], "latent_patch": 2, "vae_scale": 8}, "'log_shift' must be"),
    ({"tokens": [256, 8192], "log_shift": [0.5, 0.9], "latent_patch": 0, "vae_scale": 8}, "'latent_patch' must be"),
])
def test_resolution_shift_rules_are_checked(raw, message):
    with pytest.raises(ValueError, match=message):
        ResolutionShift.from_json(raw)


def test_plan_uses_the_default_count_and_step_dependent_values():
    p = P.plan("lcm-lora")
    assert (p.steps, p.cfg, p.sampler_name, p.scheduler, p.timesteps, p.guidance) == (4, 1.0, "lcm", "sgm_uniform", None, None)
    assert P.plan("hyper-sd3-cfg", 4).cfg == 3.0
    assert P.plan("hyper-sd3-cfg", 16).cfg == 7.0
    assert P.plan("hyper-sd3-cfg", 8).cfg == 5.0
    assert P.plan("dmd2-sdxl-1step-unet").timesteps == (399,)
    assert P.plan("sd-turbo", 3).timesteps == (999, 899, 799)
    assert P.plan("dmd2-sdxl-4step").timesteps == (999, 749, 499, 249)
    assert P.plan("hyper-flux-dev").guidance == 3.5
    assert P.plan("tcd-lora").eta == 0.3


@pytest.mark.parametrize("bad", [0, -1, 3, 100, True, 4.0])
def test_a_count_the_preset_cannot_do_names_the_preset_and_the_allowed_counts(bad):
    with pytest.raises(P.PresetError) as err:
        P.plan("sdxl-lightning", bad)
    msg = str(err.value)
    assert "'sdxl-lightning'" in msg and "allowed step counts are 2, 4, 8" in msg
    if bad == 0:
        assert "0 is never valid" in msg


def test_ranges_of_counts_are_written_compactly():
    assert "allowed step counts are 2-8" in str(pytest.raises(P.PresetError, P.plan, "lcm-lora", 9).value)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(P.PresetError, match="unknown preset 'nope'.*lcm-lora"):
        P.get_preset("nope")


def _break(mutate) -> str:
    data = raw_registry()
    mutate(data["presets"])
    with pytest.raises(P.PresetError) as err:
        P.parse_registry(data, origin="test.json")
    return str(err.value)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda ps: ps[0].pop("source"), "(lcm-lora): missing field(s) ['source']"),
        (lambda ps: ps[0].update(source=[]), "'source' must be a non-empty list"),
        (lambda ps: ps[0].update(cfg=5.0), "cfg 5.0 is outside 'cfg_range'"),
        (lambda ps: ps[0].update(default_steps=9), "'default_steps' 9 is not in 'steps'"),
        (lambda ps: ps[0].update(model_patches={"model_sampling": "turbo"}), "invalid value 'turbo'"),
        (lambda ps: ps[0].update(model_patches={"warp": 1}), "unknown model patch 'warp'"),
        (lambda ps: ps.append(copy.deepcopy(ps[0])), "duplicate preset id 'lcm-lora'"),
        (lambda ps: ps[0].update(sampler="tcd"), "must give 'eta'"),
        (lambda ps: ps[0].update(timesteps={"4": [999, 500]}), "timesteps for 4 step(s)"),
        (lambda ps: ps[0].update(timesteps={"9": [999]}), "key '9' is not one of the supported step counts"),
        (lambda ps: ps[0].update(base=["sd9"]), "'base' must be a non-empty list"),
        (lambda ps: ps[0].update(lora_strength=None), "needs 'lora_strength'"),
        (lambda ps: ps[0].update(colour="red"), "unknown field(s) ['colour']"),
        (lambda ps: ps[0].update(prediction="flow", timesteps={"4": [999, 749, 499, 249]}), "flow presets use a scheduler"),
        (lambda ps: ps[0].update(sigmas_preferred_at=[4]), "'sigmas_preferred_at' must list step counts"),
        (lambda ps: ps[0].update(sampler_chosen_by_pack="yes"), "'sampler_chosen_by_pack' must be true or false"),
        (lambda ps: ps[0].update(warning=" "), "'warning' must be a non-empty string"),
        (lambda ps: ps[0].update(model_patches={"shift_by_resolution": {"tokens": [1, 2]}}),
         "model patch 'shift_by_resolution' has an invalid value"),
        (lambda ps: ps[0].update(model_patches={"sd3_shift": 3.0, "aura_flow_shift": 3.0}), "use one shift patch"),
        (lambda ps: ps[0].update(steps="4"), "'steps' must be a non-empty list of positive integers"),
        (lambda ps: ps[0].update(kind="unet"), "'kind' must be one of"),
    ],
)
def test_malformed_entries_fail_with_the_file_the_preset_and_the_field(mutate, expected):
    msg = _break(mutate)
    assert msg.startswith("test.json: ")
    assert expected in msg


def test_the_shipped_file_parses_the_same_as_the_cached_registry():
    assert list(P.parse_registry(raw_registry())) == P.preset_ids()

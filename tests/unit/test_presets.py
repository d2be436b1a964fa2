"""The preset registry: every research row is there with a citation, every name is one
ComfyUI knows, step rules hold, and malformed entries fail with errors that say where."""

import copy
import json

import pytest

from comfyui_fewstep.fewstep.presets import registry as P

# One id per row of shared/research/presets.md (plus the verified Wan rows).
RESEARCH_ROWS = {
    "lcm-lora", "dmd2-sdxl-4step", "dmd2-sdxl-pixai-8step", "dmd2-sdxl-pixai-8step-cfg1.6",
    "dmd2-hyper-sdxl-pixai-4step", "dmd2-sdxl-1step-unet", "hyper-sd-nstep", "hyper-sd-1step-unified-tcd",
    "hyper-sd-cfg", "hyper-sd3-cfg", "hyper-flux-dev", "sdxl-lightning", "sdxl-lightning-1step", "tcd-lora",
    "pcm-smallcfg", "pcm-normalcfg", "sdxl-turbo", "sd-turbo", "flux-schnell", "flux-turbo-alpha",
    "qwen-image-lightning", "qwen-image-distill-lora",
}
WAN_ROWS = {"wan21-lightx2v-4step", "wan22-lightning-t2v-4step"}


def raw_registry() -> dict:
    return json.loads(P.PRESETS_FILE.read_text(encoding="utf-8"))


def test_every_research_row_and_the_wan_loras_are_in_the_registry():
    assert set(P.preset_ids()) == RESEARCH_ROWS | WAN_ROWS


def test_every_preset_cites_an_https_source():
    for preset in P.registry().values():
        assert preset.source, preset.id
        assert all(s.title and s.url.startswith("https://") for s in preset.source), preset.id


def test_pixai_dmd2_variants_carry_the_seed_numbers():
    by_id = P.registry()
    got = {i: (by_id[i].default_steps, by_id[i].cfg, by_id[i].lora_strength) for i in by_id if "pixai" in i}
    assert got == {
        "dmd2-sdxl-pixai-8step": (8, 1.0, 1.0),
        "dmd2-sdxl-pixai-8step-cfg1.6": (8, 1.6, 0.7),
        "dmd2-hyper-sdxl-pixai-4step": (4, 1.0, 1.0),
    }


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
    ],
)
def test_malformed_entries_fail_with_the_file_the_preset_and_the_field(mutate, expected):
    msg = _break(mutate)
    assert msg.startswith("test.json: ")
    assert expected in msg


def test_the_shipped_file_parses_the_same_as_the_cached_registry():
    assert list(P.parse_registry(raw_registry())) == P.preset_ids()

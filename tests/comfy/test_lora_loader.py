"""FewStepLoraLoader in-process on the tiny SD1.5 model with synthesised LoRA files: it
applies LoRAs exactly as core LoraLoader, recognises generically named files by metadata,
user hash and structure, states which evidence wins, refuses other architectures and
broken files, and reruns only when the file changes (hashing once per file version)."""

import hashlib
import json
import os
from types import SimpleNamespace

import pytest
import torch

from comfyui_fewstep.tools.synth_loras import (fewstep_metadata, qwen_image_lora, sdxl_only_lora, tiny_sd15_lora,
                                                write_lora)


@pytest.fixture(scope="module")
def dirs(lora_dirs):
    return lora_dirs


@pytest.fixture(scope="module")
def node(pack_nodes):
    return pack_nodes["FewStepLoraLoader"]


def put(dirs, name, tensors, metadata=None):
    return write_lora(dirs.loras / name, tensors, metadata)


def run(node, tiny_sd15, name, preset="auto", steps=-1, clip=True, strength=1.0):
    model, c, _ = tiny_sd15
    out = node.execute(model, name, strength, strength, preset, steps, clip=c if clip else None).args
    assert len(out) == 9
    keys = ("model", "clip", "steps", "cfg", "sampler", "scheduler", "info", "sigmas", "guidance")
    return SimpleNamespace(**dict(zip(keys, out)))


def ksample(model, steps, cfg, sampler, scheduler, conds, seed=3):
    import nodes

    latent = nodes.EmptyLatentImage().generate(64, 64, 1)[0]
    return nodes.common_ksampler(model, seed, steps, cfg, sampler, scheduler, *conds, latent)[0]["samples"]


def test_schema_is_the_published_contract_and_links_into_ksampler(node):
    import comfy.samplers
    from comfy_execution.validation import validate_node_input

    info = node.GET_NODE_INFO_V1()
    assert info["category"] == "FewStep/loaders"
    assert list(info["input"]["required"]) == ["model", "lora_name", "strength_model", "strength_clip", "preset", "steps"]
    assert list(info["input"]["optional"]) == ["clip"]
    assert info["output_name"] == ["MODEL", "CLIP", "steps", "cfg", "sampler_name", "scheduler", "info", "sigmas", "guidance"]
    assert info["output"][:4] == ["MODEL", "CLIP", "INT", "FLOAT"] and info["output"][6:] == ["STRING", "SIGMAS", "FLOAT"]
    ksampler = __import__("nodes").KSampler.INPUT_TYPES()["required"]
    assert validate_node_input(info["output"][4], ksampler["sampler_name"][0])
    assert validate_node_input(info["output"][5], ksampler["scheduler"][0])
    assert info["output"][4] == comfy.samplers.KSampler.SAMPLERS
    presets = info["input"]["required"]["preset"][1]["options"]
    assert presets[0] == "auto" and "qwen-image-lightning" in presets
    assert all(info["output_tooltips"])
    for section in ("required", "optional"):
        assert all(spec[1].get("tooltip") for spec in info["input"][section].values())


def test_applies_the_lora_exactly_like_core_lora_loader(node, tiny_sd15, dirs, conds):
    import nodes

    tensors = tiny_sd15_lora(text_encoder=True, seed=1)
    put(dirs, "Hyper-SD15-8steps-lora.safetensors", tensors)
    model, clip, _ = tiny_sd15
    patches_before = dict(model.patches)
    o = run(node, tiny_sd15, "Hyper-SD15-8steps-lora.safetensors")
    assert (o.steps, o.cfg, o.sampler, o.scheduler) == (8, 1.0, "euler", "sgm_uniform")
    assert "Recognised by name" in o.info and "32 module(s) on the MODEL" in o.info and "4 on the CLIP" in o.info
    assert model.patches == patches_before and o.model is not model  # the input is untouched

    core_model, core_clip = nodes.LoraLoader().load_lora(model, clip, "Hyper-SD15-8steps-lora.safetensors", 1.0, 1.0)
    assert set(o.model.patches) == set(core_model.patches) and len(o.model.patches) == 32
    ours = ksample(o.model, 8, 1.0, "euler", "sgm_uniform", conds)
    core = ksample(core_model, 8, 1.0, "euler", "sgm_uniform", conds)
    assert torch.equal(ours, core)
    assert not torch.equal(ours, ksample(model, 8, 1.0, "euler", "sgm_uniform", conds))  # the LoRA does something
    enc = lambda c: nodes.CLIPTextEncode().encode(c, "seven")[0][0][0]  # noqa: E731
    assert torch.equal(enc(o.clip), enc(core_clip)) and not torch.equal(enc(o.clip), enc(clip))


def test_generic_name_recognised_by_metadata_gets_preset_and_patch(node, tiny_sd15, dirs):
    from comfy_extras.nodes_model_advanced import LCM

    put(dirs, "model.safetensors", tiny_sd15_lora(seed=2), fewstep_metadata("lcm-lora", steps=6))
    o = run(node, tiny_sd15, "model.safetensors")
    assert (o.steps, o.cfg, o.sampler, o.scheduler) == (6, 1.0, "lcm", "sgm_uniform")
    assert o.info.splitlines()[1].startswith("Recognised by metadata")
    assert isinstance(o.model.get_model_object("model_sampling"), LCM)
    assert not isinstance(tiny_sd15[0].get_model_object("model_sampling"), LCM)
    assert o.sigmas.shape == (7,)


def test_metadata_with_its_own_settings_and_no_preset_id(node, tiny_sd15, dirs):
    meta = {"fewstep.schema": "1", "fewstep.family": "House distill", "fewstep.base": "sd15", "fewstep.steps": "3",
            "fewstep.cfg": "1.5", "fewstep.sampler": "euler", "fewstep.scheduler": "sgm_uniform",
            "fewstep.source": "https://example.org/house-distill"}
    put(dirs, "diffusion_pytorch_model.safetensors", tiny_sd15_lora(seed=3), meta)
    o = run(node, tiny_sd15, "diffusion_pytorch_model.safetensors")
    assert (o.steps, o.cfg, o.sampler, o.scheduler) == (3, 1.5, "euler", "sgm_uniform")
    assert "House distill" in o.info and "https://example.org/house-distill" in o.info


@pytest.mark.parametrize("hash_file, seed", [("fewstep/lora_hashes.json", 4),
                                             ("default/fewstep_lora_hashes.json", 14)])  # earlier releases' place
def test_generic_name_recognised_by_a_user_hash_entry(node, tiny_sd15, dirs, hash_file, seed):
    from comfyui_fewstep.fewstep.lora.library import library

    name = f"team_model_{seed}.safetensors"
    path = put(dirs, name, tiny_sd15_lora(seed=seed))
    unknown = run(node, tiny_sd15, name)
    assert unknown.info.splitlines()[1].startswith("Unknown few-step LoRA")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    user_file = dirs.user / hash_file
    user_file.parent.mkdir(parents=True, exist_ok=True)
    before = node.fingerprint_inputs(lora_name=name)
    user_file.write_text(json.dumps(
        {"entries": [{"sha256_prefix": digest[:12], "preset": "tcd-lora", "steps": 6, "name": "team TCD merge"}]}))
    try:
        assert node.fingerprint_inputs(lora_name=name) != before  # the user list is part of it
        computed = library().hash_cache.computed
        o = run(node, tiny_sd15, name)
        assert (o.steps, o.sampler, o.scheduler) == (6, "tcd", "simple")
        assert "Recognised by hash" in o.info and "team TCD merge" in o.info
        assert library().hash_cache.computed == computed  # not hashed again for the new table
    finally:
        user_file.unlink()


def test_structure_only_reports_architecture_and_passes_ksampler_defaults(node, tiny_sd15, dirs):
    put(dirs, "pytorch_lora_weights.safetensors", tiny_sd15_lora(rank=8, seed=5))
    o = run(node, tiny_sd15, "pytorch_lora_weights.safetensors")
    assert (o.steps, o.cfg, o.sampler, o.scheduler, o.guidance) == (20, 8.0, "euler", "normal", 0.0)
    assert "Structure: sd15, rank 8, 32 modules" in o.info and "no preset is guessed" in o.info
    assert "pick the LoRA's preset in `preset`" in o.info
    picked = run(node, tiny_sd15, "pytorch_lora_weights.safetensors", preset="pcm-smallcfg", steps=8)
    assert (picked.steps, picked.sampler) == (8, "euler") and "Preset: pcm-smallcfg (your choice)" in picked.info


def test_conflicting_evidence_keys_win_and_info_says_so(node, tiny_sd15, dirs):
    put(dirs, "sdxl_lightning_4step_lora.safetensors", tiny_sd15_lora(seed=6))  # name: SDXL; keys: SD1.5
    o = run(node, tiny_sd15, "sdxl_lightning_4step_lora.safetensors")
    assert o.steps == 20 and o.sampler == "euler"  # no SDXL-Lightning preset applied
    assert "Set aside: file name 'sdxl_lightning_4step_lora.safetensors' matches preset sdxl-lightning" in o.info
    assert "the keys and shapes say sd15; the tensors decide the architecture" in o.info


def test_step_count_comes_from_the_file_and_contradicting_overrides_fail(node, tiny_sd15, dirs):
    from comfyui_fewstep.fewstep.lora.settings import LoraSettingsError

    put(dirs, "Hyper-SD15-2steps-lora.safetensors", tiny_sd15_lora(seed=7))
    put(dirs, "model.safetensors", tiny_sd15_lora(seed=2), fewstep_metadata("lcm-lora", steps=6))
    assert run(node, tiny_sd15, "Hyper-SD15-2steps-lora.safetensors").steps == 2
    with pytest.raises(LoraSettingsError, match=r"Hyper-SD15-2steps-lora.safetensors was distilled for 2 steps "
                                                r"\(from the name\).*Set steps to -1 \(or 2\)"):
        run(node, tiny_sd15, "Hyper-SD15-2steps-lora.safetensors", steps=4)
    assert run(node, tiny_sd15, "model.safetensors", steps=2).steps == 2  # LCM: any count in 2-8
    with pytest.raises(LoraSettingsError, match=r"model.safetensors: preset 'lcm-lora'.*cannot run 12 steps"):
        run(node, tiny_sd15, "model.safetensors", steps=12)


def test_validation_refuses_paths_zero_steps_and_bad_counts(node, dirs):
    put(dirs, "model.safetensors", tiny_sd15_lora(seed=2), fewstep_metadata("lcm-lora", steps=6))
    assert node.validate_inputs(lora_name="model.safetensors", preset="auto", steps=-1) is True
    for bad in ("../model.safetensors", "/etc/passwd", "C:\\loras\\x.safetensors", "sub/../../x.safetensors"):
        msg = node.validate_inputs(lora_name=bad, preset="auto", steps=-1)
        assert isinstance(msg, str) and "is a path, not a LoRA name" in msg and "models/loras" in msg
    assert "not in ComfyUI's loras folders" in node.validate_inputs(lora_name="nope.safetensors")
    zero = node.validate_inputs(lora_name="model.safetensors", preset="auto", steps=0)
    assert "model.safetensors: steps 0 cannot run" in zero and "Set steps to -1" in zero
    assert "cannot run 3 steps" in node.validate_inputs(lora_name="model.safetensors", preset="sdxl-lightning", steps=3)


@pytest.mark.parametrize("tensors, lora_arch", [(sdxl_only_lora(), "sdxl"), (qwen_image_lora(), "qwen_image")])
def test_a_lora_for_another_architecture_is_an_error_naming_both(node, tiny_sd15, dirs, tensors, lora_arch):
    from comfyui_fewstep.fewstep.lora.apply import LoraArchitectureError

    put(dirs, f"other_{lora_arch}.safetensors", tensors)
    with pytest.raises(LoraArchitectureError, match=rf"other_{lora_arch}.safetensors: this LoRA is for {lora_arch} "
                                                    r".*the model is SD15 \(sd15\): none of its \d+ diffusion-model"):
        run(node, tiny_sd15, f"other_{lora_arch}.safetensors")


def test_partly_fitting_lora_loads_the_rest_and_counts_the_skipped(node, tiny_sd15, dirs, conds):
    put(dirs, "wide_context.safetensors", tiny_sd15_lora(context=2048, seed=8))  # attn2 k/v have SDXL's width
    o = run(node, tiny_sd15, "wide_context.safetensors", clip=False)
    assert "24 module(s) on the MODEL" in o.info
    assert "8 of 32 diffusion-model module(s) did not fit" in o.info and "0 by name, 8 by shape" in o.info
    assert "the LoRA's keys and shapes say sdxl" in o.info
    assert len(o.model.patches) == 24 and not any("attn2.to_k" in k for k in o.model.patches)
    assert torch.isfinite(ksample(o.model, 2, 1.0, "euler", "normal", conds)).all()


def test_clip_missing_text_encoder_part_is_reported(node, tiny_sd15, dirs):
    put(dirs, "with_te.safetensors", tiny_sd15_lora(text_encoder=True, seed=9))
    o = run(node, tiny_sd15, "with_te.safetensors", clip=False)
    assert o.clip is None and "4 text-encoder module(s) not applied: no CLIP is connected" in o.info


def test_zero_strengths_skip_the_lora_but_keep_the_preset(node, tiny_sd15, dirs):
    put(dirs, "model.safetensors", tiny_sd15_lora(seed=2), fewstep_metadata("lcm-lora", steps=6))
    o = run(node, tiny_sd15, "model.safetensors", strength=0.0)
    assert o.model.patches == tiny_sd15[0].patches and "not applied" in o.info and o.sampler == "lcm"


@pytest.mark.parametrize("kind", ["nan", "inf", "truncated", "pickle"])
def test_broken_files_fail_naming_the_file_and_the_fix(node, tiny_sd15, dirs, kind):
    from comfyui_fewstep.fewstep.lora.files import LoraFileError

    tensors = tiny_sd15_lora(seed=10)
    if kind in ("nan", "inf"):
        tensors[next(iter(tensors))][0, 0] = float(kind)
        name = put(dirs, f"broken_{kind}.safetensors", tensors).name
        pattern = r"hold NaN or Inf.*download or export it again"
    elif kind == "truncated":
        path = put(dirs, "broken_truncated.safetensors", tensors)
        path.write_bytes(path.read_bytes()[:-1000])
        name, pattern = path.name, "truncated.*download it again"
    else:
        name = "broken.pt"
        torch.save(tensors, dirs.loras / name)
        pattern = r"pickle.*convert the LoRA to \.safetensors"
    before = {p.name: p.stat().st_mtime_ns for p in dirs.loras.iterdir()}
    with pytest.raises(LoraFileError, match=rf"{name}: .*{pattern}"):
        run(node, tiny_sd15, name)
    assert {p.name: p.stat().st_mtime_ns for p in dirs.loras.iterdir()} == before


def test_a_changed_file_changes_the_fingerprint_and_is_hashed_once_per_version(node, tiny_sd15, dirs):
    from comfyui_fewstep.fewstep.lora.library import library

    path = put(dirs, "rewritten.safetensors", tiny_sd15_lora(seed=11))
    first = node.fingerprint_inputs(lora_name="rewritten.safetensors")
    computed = library().hash_cache.computed
    for _ in range(3):
        run(node, tiny_sd15, "rewritten.safetensors")
    assert library().hash_cache.computed == computed + 1
    assert node.fingerprint_inputs(lora_name="rewritten.safetensors") == first
    write_lora(path, tiny_sd15_lora(seed=12))
    os.utime(path, ns=(first[2] + 10**9, first[2] + 10**9))
    assert node.fingerprint_inputs(lora_name="rewritten.safetensors") != first
    changed = run(node, tiny_sd15, "rewritten.safetensors")
    assert library().hash_cache.computed == computed + 2
    assert changed.model.patches  # the new tensors were loaded, not the cached ones
    new = tiny_sd15_lora(seed=12)["lora_unet_middle_block_1_transformer_blocks_0_attn1_to_q.lora_up.weight"]
    patch = changed.model.patches["diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight"][-1][1]
    assert torch.equal(patch.weights[0], new)


def test_describe_lora_is_what_the_badge_shows(dirs):
    from comfyui_fewstep.fewstep.lora.load import describe_lora

    put(dirs, "Hyper-SD15-8steps-lora.safetensors", tiny_sd15_lora(seed=1))
    put(dirs, "pytorch_lora_weights.safetensors", tiny_sd15_lora(rank=8, seed=5))
    d = describe_lora("Hyper-SD15-8steps-lora.safetensors")
    assert d["badge"] == "Hyper-SD N-step LoRA \u00b7 8 steps \u00b7 cfg 1 \u00b7 euler/sgm_uniform"
    assert (d["preset"], d["steps"], d["recognised_by"], d["architecture"]) == ("hyper-sd-nstep", 8, "name", "sd15")
    unknown = describe_lora("pytorch_lora_weights.safetensors")
    assert unknown["preset"] is None and unknown["badge"].startswith("Unknown LoRA (sd15, rank 8)")
    assert d["needs_sigmas"] is False and unknown["needs_sigmas"] is False


def test_badge_recommends_the_sigmas_path_only_where_ksampler_cannot_run_the_preset(dirs):
    from comfyui_fewstep.fewstep.lora.load import describe_lora

    put(dirs, "dmd2_sdxl_1step_unet_lora.safetensors", sdxl_only_lora(seed=6))
    put(dirs, "dmd2_sdxl_4step_lora.safetensors", sdxl_only_lora(seed=7))
    one = describe_lora("dmd2_sdxl_1step_unet_lora.safetensors")
    assert (one["preset"], one["steps"], one["needs_sigmas"]) == ("dmd2-sdxl-1step-unet", 1, True)
    assert one["badge"] == "DMD2 1-step UNet \u00b7 1 step \u00b7 cfg 1 \u00b7 sigmas \u2192 SamplerCustom (lcm)"
    # DMD2 4-step also has custom timesteps, but KSampler's sgm_uniform runs them to within 1.
    four = describe_lora("dmd2_sdxl_4step_lora.safetensors")
    assert (four["preset"], four["needs_sigmas"]) == ("dmd2-sdxl-4step", False)
    assert four["badge"].endswith("\u00b7 lcm/sgm_uniform")


def test_malformed_fewstep_metadata_names_the_file_and_the_fix(node, tiny_sd15, dirs):
    from comfyui_fewstep.fewstep.lora.files import LoraFileError

    put(dirs, "tagged_by_a_tool.safetensors", tiny_sd15_lora(seed=13), {"fewstep.bench": "v1"})
    with pytest.raises(LoraFileError, match=r"tagged_by_a_tool.safetensors: invalid FewStep metadata: unknown key\(s\) "
                                            r"fewstep.bench.*Fix the fewstep.\* entries with tools/tag_lora.py"):
        run(node, tiny_sd15, "tagged_by_a_tool.safetensors")


def test_nan_scan_runs_once_per_file_version_and_tensors_can_be_dropped(dirs, monkeypatch):
    from comfyui_fewstep.fewstep.lora import apply as lora_apply
    from comfyui_fewstep.fewstep.lora.library import file_version

    path = put(dirs, "scanned.safetensors", tiny_sd15_lora(seed=14))
    version = file_version(path)
    first = lora_apply.load_lora_tensors(path, version)
    assert lora_apply.load_lora_tensors(path, version) is first  # in memory
    lora_apply.forget_loaded_loras()
    scans = []
    monkeypatch.setattr(torch, "isfinite", lambda t: scans.append(1) or torch.ones((), dtype=torch.bool))
    again = lora_apply.load_lora_tensors(path, version)
    assert again is not first and again.keys() == first.keys() and scans == []  # read again, not rescanned

"""The LoRA file side on synthesised files (never real weights): safe header reading and
refusals, FewStep metadata, hash table and cache, name patterns, structure detection, and
recognition order with conflicting evidence."""

import hashlib
import json
import os
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui_fewstep.fewstep.lora import files as LF
from comfyui_fewstep.fewstep.lora.hashes import BUILTIN, HashCache, load_hash_table, match_hash
from comfyui_fewstep.fewstep.lora.names import match_name, normalise
from comfyui_fewstep.fewstep.lora.recognition import recognise
from comfyui_fewstep.fewstep.lora.structure import detect_structure

# --- synthesising LoRA files -------------------------------------------------------------


def kohya(modules, rank=4, prefix="lora_unet_"):
    """modules: {name: (in, out)} -> kohya tensors (down [r, in], up [out, r], alpha)."""
    out = {}
    for name, (fan_in, fan_out) in modules.items():
        out[f"{prefix}{name}.lora_down.weight"] = torch.full((rank, fan_in), 0.01)
        out[f"{prefix}{name}.lora_up.weight"] = torch.zeros(fan_out, rank)
        out[f"{prefix}{name}.alpha"] = torch.tensor(float(rank))
    return out


def peft(modules, rank=4, prefix="transformer."):
    out = {}
    for name, (fan_in, fan_out) in modules.items():
        out[f"{prefix}{name}.lora_A.weight"] = torch.full((rank, fan_in), 0.01)
        out[f"{prefix}{name}.lora_B.weight"] = torch.zeros(fan_out, rank)
    return out


def sd_unet(context, rank=4):
    return kohya({
        "down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q": (640, 640),
        "down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k": (context, 640),
        "down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_v": (context, 640),
        "mid_block_attentions_0_transformer_blocks_0_attn2_to_k": (context, 1280),
    }, rank)


def write(path, tensors, metadata=None):
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.fixture
def sd15_file(tmp_path):
    return write(tmp_path / "model.safetensors", sd_unet(768), {"ss_network_dim": "4"})


def snapshot(folder):
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


# --- header reading and refusals -----------------------------------------------------------


def test_header_gives_metadata_names_and_shapes_without_loading(sd15_file):
    h = LF.read_header(sd15_file)
    assert h.metadata == {"ss_network_dim": "4"}
    assert h.tensors["lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"].shape == (4, 768)
    assert h.size == sd15_file.stat().st_size


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickle_files_are_refused_by_suffix_and_nothing_changes(tmp_path, suffix):
    path = tmp_path / f"lora{suffix}"
    torch.save({"w": torch.zeros(2)}, path)
    before = snapshot(tmp_path)
    with pytest.raises(LF.LoraFileError, match=rf"lora\{suffix}: .*pickle.*convert the LoRA to \.safetensors"):
        LF.read_header(path)
    assert snapshot(tmp_path) == before


def test_a_pickle_renamed_to_safetensors_is_refused_by_content(tmp_path):
    path = tmp_path / "innocent.safetensors"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(LF.LoraFileError, match="innocent.safetensors: this file is a pickle"):
        LF.read_header(path)


def test_truncated_and_corrupt_files_name_the_file_and_the_fix(tmp_path, sd15_file):
    data = sd15_file.read_bytes()
    cut = write_bytes(tmp_path / "cut.safetensors", data[:-100])
    with pytest.raises(LF.LoraFileError, match=r"cut.safetensors: truncated .*download it again"):
        LF.read_header(cut)
    (n,) = struct.unpack("<Q", data[:8])
    bad_json = write_bytes(tmp_path / "bad.safetensors", data[:8] + b"{" + b" " * (n - 1) + data[8 + n:])
    with pytest.raises(LF.LoraFileError, match="bad.safetensors: the safetensors header is not valid JSON"):
        LF.read_header(bad_json)
    huge = write_bytes(tmp_path / "huge.safetensors", struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(LF.LoraFileError, match="huge.safetensors: the header claims"):
        LF.read_header(huge)
    with pytest.raises(LF.LoraFileError, match="too short"):
        LF.read_header(write_bytes(tmp_path / "empty.safetensors", b""))
    lying = json.loads(data[8:8 + n])
    first = next(k for k in lying if k != "__metadata__")
    lying[first]["shape"] = [999, 999]
    blob = json.dumps(lying).encode()
    with pytest.raises(LF.LoraFileError, match=f"tensor '{first}' has an invalid header entry"):
        LF.read_header(write_bytes(tmp_path / "lying.safetensors", struct.pack("<Q", len(blob)) + blob + data[8 + n:]))


def write_bytes(path, data):
    path.write_bytes(data)
    return path


def test_nonfinite_tensors_are_found(tmp_path):
    tensors = sd_unet(768)
    name = next(iter(tensors))
    tensors[name][0, 0] = float("nan")
    path = write(tmp_path / "nan.safetensors", tensors)
    assert LF.nonfinite_tensors(path) == [name]
    assert LF.nonfinite_tensors(write(tmp_path / "ok.safetensors", sd_unet(768))) == []


# --- FewStep metadata ----------------------------------------------------------------------


def test_fewstep_metadata_is_added_without_touching_the_tensors(tmp_path, sd15_file):
    out = LF.add_fewstep_metadata(sd15_file, {"preset": "lcm-lora", "base": "sd15", "steps": 4}, tmp_path / "tagged.safetensors")
    h = LF.read_header(out)
    assert h.metadata["fewstep.preset"] == "lcm-lora" and h.metadata["fewstep.schema"] == "1"
    assert h.metadata["ss_network_dim"] == "4"  # other metadata kept
    original, tagged = load_file(str(sd15_file)), load_file(str(out))
    assert original.keys() == tagged.keys() and all(torch.equal(original[k], tagged[k]) for k in original)
    meta = LF.read_fewstep_metadata(h.metadata)
    assert (meta.steps, meta.base) == (4, ("sd15",))
    assert LF.read_fewstep_metadata(LF.read_header(sd15_file).metadata) is None  # source unchanged


@pytest.mark.parametrize("fields, problem", [
    ({"base": "sd15", "steps": 4}, "give fewstep.preset, or fewstep.family"),
    ({"preset": "lcm-lora", "base": "sd9", "steps": 4}, "fewstep.base must be"),
    ({"preset": "lcm-lora", "base": "sd15", "steps": 0}, "fewstep.steps must be a positive integer"),
    ({"preset": "lcm-lora", "base": "sd15", "steps": 4, "cfg": "hot"}, "fewstep.cfg must be a positive number"),
    ({"preset": "lcm-lora", "base": "sd15", "steps": 4, "colour": "red"}, "unknown key(s) fewstep.colour"),
])
def test_invalid_fewstep_metadata_is_refused_and_no_file_is_written(tmp_path, sd15_file, fields, problem):
    before = snapshot(tmp_path)
    with pytest.raises(LF.LoraFileError, match="model.safetensors: invalid FewStep metadata") as err:
        LF.add_fewstep_metadata(sd15_file, fields)
    assert problem in str(err.value)
    assert snapshot(tmp_path) == before


# --- hashes --------------------------------------------------------------------------------


def test_builtin_prefixes_cover_the_published_files():
    assert {e.sha256_prefix for e in BUILTIN} == {
        "04fafc77", "bf56cf26", "5aa30d94", "b3d91738", "a374289e", "c912df18", "69b25c01", "12f81a27", "ca689190"}
    table, warnings = load_hash_table(None)
    assert warnings == []
    assert match_hash("bf56cf26" + "0" * 56, table).steps == 4
    assert match_hash("ffffffff" + "0" * 56, table) is None


def test_user_hash_file_adds_entries_and_bad_lines_only_warn(tmp_path):
    user = tmp_path / "fewstep_lora_hashes.json"
    user.write_text(json.dumps({"entries": [
        {"sha256_prefix": "ABCDEF0123", "preset": "dmd2-sdxl-4step", "name": "my merge"},
        {"sha256_prefix": "xyz", "preset": "lcm-lora"},
        {"sha256_prefix": "12345678", "preset": "sdxl-lightning", "steps": 3},
    ]}))
    table, warnings = load_hash_table(user)
    hit = match_hash("abcdef0123" + "0" * 54, table)
    assert (hit.preset, hit.name, hit.origin) == ("dmd2-sdxl-4step", "my merge", str(user))
    assert len(warnings) == 2 and "8-64 hex digits" in warnings[0] and "steps 3" in warnings[1]
    user.write_text("{not json")
    table, warnings = load_hash_table(user)
    assert len(table) == len(BUILTIN) and "ignored the user hash list" in warnings[0]


def test_hash_cache_hashes_each_file_version_once_and_persists(tmp_path, sd15_file):
    store = tmp_path / "cache" / "hashes.json"
    cache = HashCache(store)
    expected = hashlib.sha256(sd15_file.read_bytes()).hexdigest()
    assert cache.sha256(sd15_file) == expected and cache.sha256(sd15_file) == expected
    assert cache.computed == 1
    again = HashCache(store)  # a restart
    assert again.sha256(sd15_file) == expected and again.computed == 0
    os.utime(sd15_file, ns=(1, 1))  # a changed file (new mtime) is hashed again
    assert again.cached(sd15_file) is None
    again.sha256(sd15_file)
    assert again.computed == 1


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, preset, steps", [
    ("lcm-lora-sdv1-5.safetensors", "lcm-lora", None),
    ("dmd2_sdxl_4step_lora_fp16.safetensors", "dmd2-sdxl-4step", None),
    ("dmd2_sdxl_1step_unet_fp16.bin", "dmd2-sdxl-1step-unet", None),
    ("sdxl_lightning_4step_lora.safetensors", "sdxl-lightning", 4),
    ("SDXL-Lightning 8STEP lora", "sdxl-lightning", 8),
    ("sdxllightning2step", "sdxl-lightning", 2),
    ("sdxl_lightning_1step_x0.safetensors", "sdxl-lightning-1step", None),
    ("Hyper-SDXL-8steps-CFG-lora.safetensors", "hyper-sd-cfg", 8),
    ("Hyper-SD15-12steps-CFG-lora.safetensors", "hyper-sd-cfg", 12),
    ("Hyper-SDXL-1step-lora.safetensors", "hyper-sd-1step-unified-tcd", None),
    ("Hyper-SD15-2steps-lora.safetensors", "hyper-sd-nstep", 2),
    ("Hyper-SD3-16steps-CFG-lora.safetensors", "hyper-sd3-cfg", 16),
    ("Hyper-FLUX.1-dev-8steps-lora.safetensors", "hyper-flux-dev", 8),
    ("pcm_sdxl_smallcfg_4step_converted.safetensors", "pcm-smallcfg", 4),
    ("pcm_sd15_normalcfg_8step_converted.safetensors", "pcm-normalcfg", 8),
    ("TCD-SDXL-LoRA.safetensors", "tcd-lora", None),
    ("FLUX.1-Turbo-Alpha.safetensors", "flux-turbo-alpha", None),
    ("Qwen-Image-Lightning-8steps-V1.0.safetensors", "qwen-image-lightning", 8),
    ("Qwen-Image-Lightning-4steps-V2.0-bf16.safetensors", "qwen-image-lightning", 4),
    ("wan2.1_t2v_14b_lora_rank64_lightx2v_4step.safetensors", "wan21-lightx2v-4step", None),
    ("lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors", "wan21-lightx2v-4step", None),
    ("Wan2.2-Lightning_T2V-A14B-4steps-lora_HIGH_fp16.safetensors", "wan22-lightning-t2v-4step", None),
])
def test_published_file_names(name, preset, steps):
    m = match_name(name)
    assert m is not None and (m.preset, m.steps) == (preset, steps)


@pytest.mark.parametrize("name", ["model.safetensors", "diffusion_pytorch_model.safetensors", "my_style.safetensors",
                                  "wan2.2_t2v_A14b_high_noise_lora_rank64_lightx2v_4step_1217.safetensors", "pitcd.safetensors"])
def test_generic_or_unsupported_names_match_nothing(name):
    assert match_name(name) is None


def test_normalise_ignores_case_and_separators():
    assert normalise("SDXL-Lightning__4step.Lora.safetensors") == "sdxl_lightning_4step_lora"


# --- structure -----------------------------------------------------------------------------


def header_of(tmp_path, tensors, name="x.safetensors"):
    return LF.read_header(write(tmp_path / name, tensors))


@pytest.mark.parametrize("context, arch", [(768, "sd15"), (1024, "sd2"), (2048, "sdxl")])
def test_unet_architecture_from_cross_attention_width(tmp_path, context, arch):
    s = detect_structure(header_of(tmp_path, sd_unet(context, rank=8)))
    assert (s.architecture, s.rank, s.modules) == (arch, 8, 4)


def test_diffusers_unet_names_and_text_encoder_modules(tmp_path):
    tensors = peft({"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k": (2048, 320)}, 16, prefix="unet.")
    tensors |= kohya({"text_model_encoder_layers_0_self_attn_q_proj": (768, 768)}, 16, prefix="lora_te1_")
    s = detect_structure(header_of(tmp_path, tensors))
    assert (s.architecture, s.rank, s.modules, s.text_encoder_modules) == ("sdxl", 16, 1, 1)


@pytest.mark.parametrize("tensors, arch", [
    (peft({"double_blocks.0.img_attn.qkv": (3072, 9216), "single_blocks.0.linear1": (3072, 21504)}, prefix="diffusion_model."), "flux"),
    (peft({"transformer_blocks.0.attn.to_q": (3072, 3072), "transformer_blocks.0.attn.add_q_proj": (3072, 3072)}), "flux"),
    (peft({"transformer_blocks.0.attn.to_q": (1536, 1536), "transformer_blocks.0.ff_context.net.0.proj": (1536, 6144)}), "sd3"),
    (kohya({"joint_blocks_0_context_block_attn_qkv": (1536, 4608)}), "sd3"),
    (peft({"transformer_blocks.0.img_mlp.net.0.proj": (3072, 12288), "transformer_blocks.0.attn.to_q": (3072, 3072)}), "qwen_image"),
    (peft({"blocks.0.self_attn.q": (5120, 5120), "blocks.0.cross_attn.k": (5120, 5120)}, prefix="diffusion_model."), "wan21"),
    (peft({"blocks.0.self_attn.q": (3072, 3072), "blocks.0.ffn.0": (3072, 14336)}, prefix="diffusion_model."), "wan22_5b"),
])
def test_dit_architectures(tmp_path, tensors, arch):
    assert detect_structure(header_of(tmp_path, tensors)).architecture == arch


def test_mixed_ranks_and_unknown_layouts(tmp_path):
    tensors = kohya({"down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": (768, 320)}, 4)
    tensors |= kohya({"mid_block_attentions_0_transformer_blocks_0_attn2_to_v": (768, 1280)}, 16)
    tensors |= kohya({"up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k": (768, 1280)}, 16)
    s = detect_structure(header_of(tmp_path, tensors))
    assert (s.rank, s.ranks) == (16, (4, 16)) and "(mixed)" in s.summary()
    odd = detect_structure(header_of(tmp_path, peft({"weird.layer": (10, 10)}), "odd.safetensors"))
    assert odd.architecture is None and "no known block layout" in odd.evidence[0]


# --- recognition ---------------------------------------------------------------------------


def test_generic_name_recognised_by_metadata(tmp_path, sd15_file):
    LF.add_fewstep_metadata(sd15_file, {"preset": "lcm-lora", "base": "sd15", "steps": 4})
    cache = HashCache()
    r = recognise(sd15_file, load_hash_table()[0], cache)
    assert (r.preset, r.steps, r.source) == ("lcm-lora", 4, "metadata")
    assert r.lines[0].startswith("Recognised by metadata") and cache.computed == 0  # no hashing needed


def test_metadata_with_own_settings_and_no_preset(tmp_path, sd15_file):
    LF.add_fewstep_metadata(sd15_file, {"family": "MyDistill", "base": "sd15", "steps": 3, "cfg": 1.5,
                                        "sampler": "euler", "scheduler": "sgm_uniform"})
    r = recognise(sd15_file, load_hash_table()[0], HashCache())
    assert (r.preset, r.steps, r.source, r.metadata.fields["family"]) == (None, 3, "metadata", "MyDistill")


def test_metadata_written_with_older_architecture_ids_still_reads(tmp_path):
    """Files tagged by earlier releases say 'sd21' / 'wan'; they map to today's ids."""
    path = write(tmp_path / "model.safetensors", sd_unet(1024))
    LF.add_fewstep_metadata(path, {"family": "Old", "base": "sd21", "steps": 4, "cfg": 1.0,
                                   "sampler": "euler", "scheduler": "sgm_uniform"})
    r = recognise(path, load_hash_table()[0], HashCache())
    assert (r.source, r.metadata.base, r.structure.architecture) == ("metadata", ("sd2",), "sd2")


def test_generic_name_recognised_by_a_user_hash_entry(tmp_path, sd15_file):
    digest = hashlib.sha256(sd15_file.read_bytes()).hexdigest()
    user = tmp_path / "fewstep_lora_hashes.json"
    user.write_text(json.dumps({"entries": [{"sha256_prefix": digest[:10], "preset": "tcd-lora", "name": "team TCD"}]}))
    r = recognise(sd15_file, load_hash_table(user)[0], HashCache())
    assert (r.preset, r.source) == ("tcd-lora", "hash") and "team TCD" in r.lines[0]


def test_name_only(tmp_path):
    path = write(tmp_path / "Hyper-SD15-2steps-lora.safetensors", sd_unet(768))
    r = recognise(path, load_hash_table()[0], HashCache())
    assert (r.preset, r.steps, r.source) == ("hyper-sd-nstep", 2, "name")


def test_conflicting_evidence_keys_win_over_the_name(tmp_path):
    path = write(tmp_path / "sdxl_lightning_4step_lora.safetensors", sd_unet(768))  # SD1.5 keys
    r = recognise(path, load_hash_table()[0], HashCache())
    assert (r.preset, r.source, r.structure.architecture) == (None, "unknown", "sd15")
    assert any("Set aside: file name" in line and "the tensors decide the architecture" in line for line in r.lines)
    assert "no preset is guessed" in r.lines[0]


def test_unknown_generic_file_reports_its_structure(tmp_path, sd15_file):
    r = recognise(sd15_file, load_hash_table()[0], HashCache())
    assert r.preset is None and r.source == "unknown"
    assert any(line.startswith("Structure: sd15, rank 4") for line in r.lines)

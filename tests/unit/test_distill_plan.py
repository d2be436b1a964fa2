"""The distillation engine's pure parts: settings checks, the sample plan, schedules,
conditioning batches, layer targets, file names and the LoRA key layout."""

from __future__ import annotations


import pytest
import torch

from comfyui_fewstep.trainers import conds, files, lora_format, plan, schedule, targets
from comfyui_fewstep.trainers.config import MAX_HELDOUT, DistillConfig, DistillConfigError
from comfyui_fewstep.trainers.graph import upstream_loras


@pytest.mark.parametrize("settings, named", [
    (dict(prompts=("",)), "prompt list is empty"),
    (dict(student_steps=30), "student_steps (30)"),
    (dict(width=500), "width 500"),
    (dict(rank=0), "rank 0"),
    (dict(learning_rate=0.0), "learning_rate 0.0"),
    (dict(learning_rate=-1e-4), "learning_rate -0.0001"),
    (dict(lora_name="../evil"), "lora_name '../evil'"),
    (dict(lora_name="sub/dir"), "lora_name 'sub/dir'"),
    (dict(lora_name="C:\\x"), "lora_name"),
    (dict(student_sampler="dpmpp_2m"), "student_sampler 'dpmpp_2m'"),
])
def test_impossible_settings_are_named(settings, named):
    cfg = DistillConfig(**{"prompts": ("a",), **settings})
    with pytest.raises(DistillConfigError, match="cannot start") as e:
        cfg.check()
    assert named in str(e.value)


def test_the_defaults_are_valid_and_round_trip_through_json():
    cfg = DistillConfig.from_text("one\n\n two \n").check()
    assert cfg.prompts == ("one", "two")
    assert DistillConfig.from_json(cfg.to_json()) == cfg


def test_seeds_depend_on_the_sample_not_on_batching_or_order():
    cfg = DistillConfig(prompts=("a", "b"), samples_per_prompt=3, heldout_per_prompt=1)
    first = plan.samples(cfg)
    assert len(first) == 8 and [s.heldout for s in first] == [False] * 6 + [True] * 2
    assert len({s.seed for s in first}) == 8
    bigger = plan.samples(DistillConfig(prompts=("a", "b", "c"), samples_per_prompt=3, batch_size=1))
    assert {(s.prompt, s.seed) for s in first if not s.heldout} <= {(s.prompt, s.seed) for s in bigger}


def test_held_out_samples_are_capped():
    cfg = DistillConfig(prompts=tuple(str(i) for i in range(40)), heldout_per_prompt=2)
    assert sum(s.heldout for s in plan.samples(cfg)) == MAX_HELDOUT


def test_batches_cover_each_epoch_once_and_resume_exactly():
    stream = plan.BatchStream(count=10, batch_size=4, seed=3)
    seen = stream.next() + stream.next() + stream.next()[:2]
    assert sorted(seen) == list(range(10))
    state = stream.state()
    ahead = [stream.next() for _ in range(5)]
    other = plan.BatchStream(count=10, batch_size=4, seed=99)
    other.load_state(state)
    assert [other.next() for _ in range(5)] == ahead


def test_schedules():
    assert schedule.lr_factor("constant", 0, 100) == 1.0
    warm = [schedule.lr_factor("cosine_warmup", i, 100) for i in range(100)]
    assert warm[0] < warm[4] < 1.0 and warm[5] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(warm[5:], warm[6:])) and 0 < warm[-1] < 0.01
    assert schedule.lr_factor("cosine_warmup", 52, 100) == pytest.approx(0.5, abs=0.02)  # the cosine's midpoint


def test_conditioning_of_different_lengths_batches_like_comfyui():
    short = [[torch.ones(1, 77, 8), {"pooled_output": torch.full((1, 4), 1.0)}]]
    long = [[torch.full((1, 154, 8), 2.0), {"pooled_output": torch.full((1, 4), 2.0)}]]
    batch = conds.stack([conds.first_pair(short), conds.first_pair(long)])
    cross, extras = batch[0]
    assert cross.shape == (2, 154, 8) and torch.equal(cross[0], torch.ones(154, 8))
    assert torch.equal(extras["pooled_output"], torch.tensor([[1.0] * 4, [2.0] * 4]))
    with pytest.raises(ValueError, match="one prompt"):
        conds.first_pair(short + long)


@pytest.mark.parametrize("name, ndim, chosen", [
    ("input_blocks.1.1.transformer_blocks.0.attn1.to_q", 2, {"attention", "attention+mlp", "all"}),
    ("input_blocks.1.1.transformer_blocks.0.ff.net.0.proj", 2, {"attention+mlp", "all"}),
    ("input_blocks.1.1.proj_in", 4, {"attention+mlp", "all"}),
    ("input_blocks.1.0.in_layers.2", 4, {"all"}),
    ("double_blocks.0.img_attn.qkv", 2, {"attention", "attention+mlp", "all"}),
    ("double_blocks.0.img_mlp.0", 2, {"attention+mlp", "all"}),
    ("single_blocks.3.linear1", 2, {"attention+mlp", "all"}),
    ("input_blocks.1.1.transformer_blocks.0.norm1", 1, set()),
])
def test_targets_choose_layers_by_role(name, ndim, chosen):
    assert {t for t in ("attention", "attention+mlp", "all") if targets.selected(name, ndim, t)} == chosen


def test_run_names_never_reuse_a_number(tmp_path):
    assert files.run_stem(tmp_path, "x") == "x_00001"
    (tmp_path / "x_00001_it000100.safetensors").write_bytes(b"")
    (tmp_path / "x_00002.distill").write_bytes(b"")
    assert files.run_stem(tmp_path, "x") == "x_00003"
    assert files.checkpoint_name("x_00003", 100) == "x_00003_it000100.safetensors"


@pytest.mark.parametrize("name", ["../a", "a/b", "/etc/passwd", "..", "a\\b"])
def test_resume_names_stay_in_the_folder(tmp_path, name):
    with pytest.raises(files.DistillFileError, match="plain file name"):
        files.resolve_in(tmp_path, name, files.RESUME_EXT)


def test_resume_file_round_trips_tensors_and_state(tmp_path):
    g = torch.Generator().manual_seed(4)
    path = files.save_resume(tmp_path / "r.distill", {"a": torch.arange(3.0), "rng": g.get_state()}, {"iteration": 7})
    tensors, state = files.load_resume(path)
    assert state == {"iteration": 7} and torch.equal(tensors["a"], torch.arange(3.0))
    h = torch.Generator()
    h.set_state(tensors["rng"])
    assert torch.equal(torch.randn(3, generator=h), torch.randn(3, generator=g))
    (tmp_path / "junk.distill").write_bytes(b"not safetensors")
    with pytest.raises(files.DistillFileError, match="not a FewStep resume file"):
        files.load_resume(tmp_path / "junk.distill")


def test_conv_loras_are_saved_in_kohya_layout():
    up, down = torch.randn(8, 2), torch.randn(2, 4 * 9)
    out = lora_format.kohya_tensors({"diffusion_model.c.weight": {"lora_up.weight": up, "lora_down.weight": down,
                                                                  "alpha": torch.tensor(2.0),
                                                                  "__weight_shape__": (8, 4, 3, 3)}},
                                    {"diffusion_model.c.weight": "lora_unet_c"})
    assert out["lora_unet_c.lora_down.weight"].shape == (2, 4, 3, 3)
    assert out["lora_unet_c.lora_up.weight"].shape == (8, 2, 1, 1)
    rebuilt = out["lora_unet_c.lora_up.weight"].flatten(1) @ out["lora_unet_c.lora_down.weight"].flatten(1)
    assert torch.allclose(rebuilt, up @ down)


def test_metadata_is_what_fewsteploraloader_validates():
    from comfyui_fewstep.fewstep.lora.files import validate_fewstep_fields

    md = lora_format.metadata("{}", "sd15", 4, 1.0, "euler", "sgm_uniform", ["a.safetensors"], 300)
    fields = {k[len("fewstep."):]: v for k, v in md.items() if k.startswith("fewstep.")}
    assert validate_fewstep_fields(fields)["steps"] == "4"


def test_upstream_loras_follow_the_model_path_only():
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x"}},
        "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "lora_name": "style.safetensors"}},
        "3": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["2", 0], "lora_name": "detail.safetensors"}},
        "4": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "lora_name": "elsewhere.safetensors"}},
        "5": {"class_type": "FewStepDistillTrainer", "inputs": {"model": ["3", 0]}},
    }
    assert upstream_loras(prompt, "5") == ["style.safetensors", "detail.safetensors"]
    assert upstream_loras(None, "5") == []


def test_shards_split_a_batch_without_gaps_or_overlap():
    from comfyui_fewstep.trainers.collective import shard

    for size in (1, 5, 24):
        for world in (1, 2, 3, 8):
            parts = [shard(list(range(size)), r, world) for r in range(world)]
            assert sum(parts, []) == list(range(size))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_the_cli_source_is_read_from_the_graph_or_refused_with_the_node_named():
    from comfyui_fewstep.trainers.graph import NotExportable, cli_source

    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
        "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": "a.safetensors",
                                                     "strength_model": 0.8, "strength_clip": 0.5}},
        "3": {"class_type": "FewStepDistillTrainer", "inputs": {"model": ["2", 0], "clip": ["2", 1]}},
        "4": {"class_type": "FewStepTeaCache", "inputs": {"model": ["2", 0]}},
        "5": {"class_type": "FewStepDistillTrainer", "inputs": {"model": ["4", 0]}},
    }
    assert cli_source(prompt, "3") == {"checkpoint": "base.safetensors", "loras": [["a.safetensors", 0.8, 0.5]]}
    with pytest.raises(NotExportable, match="node 4 .FewStepTeaCache."):
        cli_source(prompt, "5")

"""tools/preset_table.py: the README's preset table is generated from the registry."""

from comfyui_fewstep.fewstep.presets.registry import registry
from comfyui_fewstep.tools.preset_table import HEADER, markdown


def test_one_row_per_preset_with_its_numbers_and_source():
    lines = markdown().splitlines()
    assert lines[0] == "| " + " | ".join(HEADER) + " |"
    body = lines[2:]
    assert len(body) == len(registry())
    for line, preset in zip(body, registry().values()):
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert len(cells) == len(HEADER), line  # no unescaped '|' inside a cell
        assert cells[0] == f"`{preset.id}`"
        assert cells[5].startswith(f"{preset.sampler} / {preset.scheduler}")
        assert all(s.title in cells[6] for s in preset.source)


def test_step_and_patch_details_appear():
    table = markdown()
    assert "| `sdxl-lightning` | SDXL-Lightning | SDXL | 2, 4, 8 (default 4), from the file name | 1 |" in table
    assert "timesteps 999,749,499,249" in table and "AuraFlow shift 3" in table and "FLUX guidance 3.5" in table


def test_recommended_sigmas_paths_pack_choices_and_resolution_shifts_are_marked():
    rows = {line.split(" | ")[0].strip("| `"): line for line in markdown().splitlines()[2:]}
    assert "sigmas output, recommended: timesteps 399" in rows["dmd2-sdxl-1step-unet"]
    assert "sigmas output, recommended at 2, 3, 4 steps" in rows["sdxl-turbo"]
    assert "sigmas output: timesteps 999,749,499,249" in rows["dmd2-sdxl-4step"]  # KSampler stays the default
    assert {i for i, row in rows.items() if "FewStep's choice" in row} == {
        "dmd2-sdxl-pixai-8step", "dmd2-sdxl-pixai-8step-cfg1.6", "dmd2-hyper-sdxl-pixai-4step"}
    assert "shift by resolution: 2.00 at 1024px, 2.30 at 1328px" in rows["qwen-image-distill-lora"]

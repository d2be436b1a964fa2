"""`make bench`'s row families run end to end on tiny models (--preset smoke: seconds, the
numbers mean nothing): the table, its columns and the plots come out as the README shows them."""

import re

from comfyui_fewstep.bench import run


def test_smoke_run_of_the_tome_family_writes_table_and_plot(tmp_path):
    """Real row families through ComfyUI's own TomePatchModel and HyperTile and FewStep Token
    Merge on a tiny SD1.5 layout, each with its FLOP ratio."""
    assert run.main(["--preset", "smoke", "--rows", "tome", "--repeats", "1", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "latest.md").read_text()
    dated = sorted(tmp_path.glob("20*.md"))
    assert len(dated) == 1 and dated[0].read_text() == md
    assert "| machine | torch | ComfyUI | attention | device |" in md
    assert ("| model | size | method | setting | one forward (s) | speedup | FLOP ratio "
            "| UNet output PSNR vs unpatched | max abs diff |") in md
    rows = [line.strip("| ").split(" | ") for line in md.splitlines() if line.startswith("| tiny SD1.5")]
    assert [r[2:4] for r in rows] == [
        ["unpatched", "–"], ["TomePatchModel (core)", "ratio 0.3"], ["TomePatchModel (core)", "ratio 0.5"],
        ["HyperTile (core)", "tile 256"], ["FewStep Token Merge, ToMe", "ratio 0.3"],
        ["FewStep Token Merge, ToMe", "ratio 0.5"], ["FewStep Token Merge, ToDo", "downsample 2"],
        ["FewStep Token Merge, ToDo", "downsample 3"]]
    flop_ratio = {r[2] + " " + r[3]: float(r[6].rstrip("x")) for r in rows}
    assert flop_ratio["unpatched –"] == 1.0
    # fewer tokens in attention (and, for ToMe, in the blocks' linear layers) is fewer FLOPs
    assert all(v > 1.0 for k, v in flop_ratio.items() if k.startswith(("FewStep", "TomePatchModel")))
    assert flop_ratio["FewStep Token Merge, ToDo downsample 3"] > flop_ratio["FewStep Token Merge, ToDo downsample 2"]
    assert flop_ratio["FewStep Token Merge, ToMe ratio 0.5"] > flop_ratio["FewStep Token Merge, ToMe ratio 0.3"]
    # merging changes the output (it merges tokens) but keeps it close to the unpatched one;
    # HyperTile's 256 px tiles are larger than the 64 px image: it leaves attention whole
    whole = {"unpatched", "HyperTile (core)"}
    assert [r[7] for r in rows if r[2] in whole] == ["identical", "identical"]
    assert all(r[7].endswith(" dB") for r in rows if r[2] not in whole)
    pngs = list(tmp_path.glob("*-tome.png"))
    assert len(pngs) == 1 and f"]({pngs[0].name})" in md
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_smoke_run_of_the_tome_flops_family_counts_on_the_meta_device(tmp_path):
    """FLOPs per forward for every token-merging method, without running the network's maths:
    the unpatched count is the layout's, merging lowers it, a depth the model lacks gives no row."""
    assert run.main(["--preset", "smoke", "--rows", "tome_flops", "--repeats", "1", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "latest.md").read_text()
    assert "| model | size | method | setting | TFLOP per forward | FLOP ratio |" in md
    rows = [line.strip("| ").split(" | ") for line in md.splitlines() if line.startswith("| tiny SD1.5")]
    methods = [r[2] for r in rows]
    assert methods[0] == "unpatched" and not any("max_depth 2" in m for m in methods)  # one level only
    assert {"TomePatchModel (core)", "HyperTile (core)", "FewStep Token Merge, ToMe",
            "FewStep Token Merge, ToDo"} <= set(methods)
    ratio = {(r[2], r[3]): float(r[5].rstrip("x")) for r in rows}
    assert ratio[("unpatched", "–")] == 1.0
    assert ratio[("FewStep Token Merge, ToDo", "downsample 3")] > ratio[("FewStep Token Merge, ToDo", "downsample 2")] > 1
    assert list(tmp_path.glob("*-tome-flops.png"))


def test_smoke_run_of_the_lora_family_puts_fewstep_beside_core_and_keeps_the_other_families(tmp_path):
    """Core LoraLoaderModelOnly and FewStepLoraLoader patch the same weights from one file;
    `--rows lora` replaces the lora tables of the last report and keeps the others, dated."""
    earlier = ("# FewStep benchmarks, 2020-01-01\n\n<!-- bench-family: tome 2020-01-01 -->\n## Token merging\n\n"
               "| model | speedup |\n|---|---|\n| SD1.5 | 1.20x |\n\n<!-- bench-family: lora 2020-01-01 -->\n"
               "## Applying a LoRA\n\n| method |\n|---|\n| stale lora row |\n")
    (tmp_path / "latest.md").write_text(earlier)
    assert run.main(["--preset", "smoke", "--rows", "lora", "--repeats", "1", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "latest.md").read_text()
    assert "stale lora row" not in md
    tome = md.split("<!-- bench-family: tome 2020-01-01 -->")[1]
    assert tome.startswith("\n## Token merging\n\n_Kept from the run of 2020-01-01") and "| SD1.5 | 1.20x |" in tome
    assert md.index("bench-family: lora") < md.index("bench-family: tome")  # report order: lora, then tome
    rows = [line for line in md.splitlines() if "tiny SD1.5 (smoke)" in line]
    assert [r.split(" | ")[0].lstrip("| ") for r in rows] == [
        "LoraLoaderModelOnly (core)", "FewStepLoraLoader (recognition, architecture check, preset)"]
    patched = [r.rstrip(" |").rsplit(" | ", 1)[1] for r in rows]
    total = patched[0].split("/")[1]
    assert patched == [f"{total}/{total}"] * 2 and int(total) > 0


def test_smoke_run_of_the_teacache_overhead_family_measures_the_wrappers(tmp_path):
    """The row's overhead is the time measured inside FewStep TeaCache's wrappers at threshold
    0, beside a whole-run ratio of runs timed side by side."""
    args = ["--preset", "smoke", "--rows", "teacache_overhead", "--repeats", "1", "--out", str(tmp_path)]
    assert run.main(args) == 0
    rows = [line.strip("| ").split(" | ") for line in (tmp_path / "latest.md").read_text().splitlines()
            if line.startswith("| tiny SD1.5 (smoke)")]
    assert len(rows) == 1
    model, size, step, work_ms, share, ratio = rows[0]
    assert size == "64x64" and float(step) > 0 and float(work_ms) > 0 and share.endswith("%") and float(ratio) > 0

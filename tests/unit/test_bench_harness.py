"""The benchmark harness: timing rules, ratios, the table model and report writers on
plain functions (the row families' smoke runs, which need ComfyUI, are in
tests/comfy/test_bench_smoke.py). No assert depends on how fast anything ran."""

from __future__ import annotations

import math

import pytest

from comfyui_fewstep.bench import harness
from comfyui_fewstep.bench.harness import Column, Environment, Table, Timing


def test_median_and_spread_of_known_seconds():
    t = Timing([3.0, 1.0, 2.0, 10.0, 2.5])
    assert t.median == 2.5
    assert t.spread == pytest.approx((10.0 - 1.0) / 2.5)


def test_speedup_is_the_median_of_paired_ratios():
    base = Timing([4.0, 8.0, 6.0])
    fast = Timing([2.0, 2.0, 3.0])  # per-repeat ratios 2, 4, 2
    assert harness.speedup(base, fast) == 2.0
    # a ratio of medians would say 6/2 = 3: pairing keeps load drift out of the ratio
    assert harness.speedup(base, fast) != base.median / fast.median
    assert harness.speedup(fast, base) == 0.5
    with pytest.raises(ValueError, match="side by side"):
        harness.speedup(base, Timing([1.0]))


def test_side_by_side_interleaves_and_rotates_after_warming_each_up():
    order = []
    variants = {name: (lambda n=name: order.append(n) or n) for name in "abc"}
    timings = harness.side_by_side(variants, repeats=3, warmup=1)
    assert order[:3] == ["a", "b", "c"]  # warm-up, each variant once
    assert order[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # nobody always goes first
    assert {n: len(t.seconds) for n, t in timings.items()} == {"a": 3, "b": 3, "c": 3}
    assert {n: len(t.warmup) for n, t in timings.items()} == {"a": 1, "b": 1, "c": 1}
    assert timings["b"].result == "b"


def test_side_by_side_can_share_one_warm_up_for_long_calls():
    order = []
    variants = {name: (lambda n=name: order.append(n)) for name in "ab"}
    timings = harness.side_by_side(variants, repeats=2, warm_each=False)
    assert order == ["a", "a", "b", "b", "a"]
    assert len(timings["a"].warmup) == 1 and timings["b"].warmup == []


def test_paired_runs_each_variant_next_to_its_own_base_run():
    order = []
    base = lambda: order.append("base") or "b"  # noqa: E731
    variants = {name: (lambda n=name: order.append(n) or n) for name in "xy"}
    base_t, timings = harness.paired(base, variants, repeats=2)
    assert order[:3] == ["base", "x", "y"]  # warm-up of everything
    assert order[3:] == ["base", "x", "base", "y", "x", "base", "y", "base"]  # base first, then second
    assert len(base_t.seconds) == 4 and base_t.result == "b"
    assert [len(timings[n].base_seconds) for n in "xy"] == [2, 2]
    # the speedup of a paired variant uses its own neighbours, not the other base runs
    v = Timing([1.0, 1.0], base_seconds=[3.0, 5.0])
    assert harness.speedup(Timing([100.0] * 4), v) == 4.0


def test_stopwatch_accumulates_named_laps():
    sw = harness.Stopwatch()
    for _ in range(2):
        with sw.lap("read"):
            pass
    with sw.lap("patch"):
        pass
    assert set(sw.laps) == {"read", "patch"} and all(v >= 0 for v in sw.laps.values())


def _table():
    t = Table("demo", "Demo rows", [Column("method", "method"), Column("psnr", "PSNR", harness.fmt_psnr),
                                     Column("speedup", "speedup", "{:.2f}x"), Column("share", "share", harness.fmt_pct)])
    t.add(method="base", psnr=math.inf, speedup=1.0, share=1.0)
    t.add("fewstep", method="ours", psnr=31.234, speedup=1.5, share=0.875)
    t.add(method="missing values")
    return t


def test_table_renders_markdown_with_formats_and_gaps():
    lines = _table().markdown().splitlines()
    assert lines[0] == "| method | PSNR | speedup | share |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2] == "| base | identical | 1.00x | 100% |"
    assert lines[3] == "| ours | 31.23 dB | 1.50x | 88% |"
    assert lines[4] == "| missing values | – | – | – |"
    assert _table().rows[1].provider == "fewstep"


def test_table_refuses_values_for_unknown_columns():
    with pytest.raises(KeyError, match="psnr_db"):
        _table().add(method="x", psnr_db=1.0)


ENV = Environment(date="2030-01-02", cores=2, cpu="Test CPU 9000", memory_gib=24.0, python="3.11", torch="2.14.1",
                  comfyui="0.3.75", attention="PyTorch SDPA (`attention_pytorch`)", device="cpu", dtype="float32")


def test_report_header_names_machine_versions_attention_and_load():
    busy = {"wall_s": 100.0, "other_cpu_s": 120.0, "other_share": 0.6}
    md = harness.render_markdown(ENV, [_table()], "make bench", total_s=600, load=busy, repeats=3)
    assert md.startswith("# FewStep benchmarks, 2030-01-02")
    assert "`make bench`" in md
    assert "| machine | torch | ComfyUI | attention | device |" in md
    assert "| 2 cores, Test CPU 9000, 24 GiB | 2.14.1 | 0.3.75 | PyTorch SDPA (`attention_pytorch`) | cpu (float32) |" in md
    assert "3 timed repeats" in md and "10.0 min" in md
    assert "Other processes were running" in md and "60%" in md
    assert "## Demo rows" in md and "| ours | 31.23 dB | 1.50x | 88% |" in md
    idle = harness.render_markdown(ENV, [], "make bench", load={"wall_s": 1, "other_cpu_s": 0, "other_share": 0.01})
    assert "otherwise idle" in idle and "Other processes were running" not in idle


def test_write_report_writes_dated_and_latest_alike(tmp_path):
    dated, latest = harness.write_report(tmp_path / "out", "# hello\n", "2030-01-02")
    assert dated.name == "2030-01-02.md" and latest.name == "latest.md"
    assert dated.read_text() == latest.read_text() == "# hello\n"


def test_plot_curves_writes_a_png(tmp_path):
    path = harness.plot_curves(tmp_path / "c.png", [("a", [1, 2, 4], [10.0, 20.0, math.inf]), ("b", [1], [5.0])],
                               xlabel="x", ylabel="y", title="t", annotations=[["p", "q", "r"], ["s"]])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_monitor_reports_shares_between_zero_and_one():
    report = harness.LoadMonitor().report()
    if report is not None:  # None only where /proc/stat does not exist
        assert report["other_cpu_s"] >= 0 and 0 <= report["other_share"]


def test_unknown_row_family_is_refused(tmp_path):
    from comfyui_fewstep.bench import run

    with pytest.raises(SystemExit, match="nosuch"):
        run.main(["--rows", "nosuch", "--out", str(tmp_path)])


def test_a_family_that_did_not_run_keeps_its_tables_with_their_date():
    from comfyui_fewstep.bench.report_sections import family_sections, kept

    old = harness.render_markdown(ENV, [_table()], "make bench")  # family "demo", measured 2030-01-02
    date, text = family_sections(old)["demo"]
    assert date == "2030-01-02" and text.startswith(harness.section_marker("demo", "2030-01-02"))
    assert "| ours | 31.23 dB | 1.50x | 88% |" in text
    later = Environment(**{**ENV.__dict__, "date": "2030-02-03"})
    fresh = Table("other", "Other rows", [Column("method", "method")])
    fresh.add(method="new")
    md = harness.render_markdown(later, [fresh, kept(text, date)], "make bench ROWS=other")
    sections = family_sections(md)
    assert {name: d for name, (d, _) in sections.items()} == {"other": "2030-02-03", "demo": "2030-01-02"}
    kept_text = sections["demo"][1]
    assert kept_text.count("Kept from the run of 2030-01-02") == 1 and "| ours | 31.23 dB" in kept_text
    # kept again by a third run: still the original date, one note
    again = family_sections(harness.render_markdown(later, [kept(kept_text, "2030-01-02")], "x"))["demo"][1]
    assert again.count("Kept from the run of") == 1 and "2030-01-02" in again


def test_row_families_are_registered_once_and_row_modules_do_not_change_each_other():
    from comfyui_fewstep.bench import rows_caching, rows_fewstep_cache, run

    names = [f.name for f in run.FAMILIES]
    assert len(names) == len(set(names)) and {"caching", "lora", "tome"} <= set(names)
    # rows_fewstep_cache's TeaCache methods reach the caching table through run.py only
    assert [m.provider for m in rows_caching.PEERS] == ["core", "core"]
    assert [m.provider for m in rows_fewstep_cache.TEACACHE] == ["fewstep", "fewstep"]


@pytest.mark.parametrize("argv, expected", [
    ([], "make bench"), (["--preset", "full"], "make bench BENCH=full"),
    (["--rows", "caching,lora"], "make bench ROWS=caching,lora"),
    (["--preset", "default", "--rows", "tome"], "make bench ROWS=tome"),
    (["--preset", "smoke", "--rows", "tome"], ".venv/bin/python -P -m comfyui_fewstep.bench.run --preset smoke --rows tome"),
])
def test_the_report_names_the_command_that_made_it(argv, expected):
    from comfyui_fewstep.bench import run

    assert run.command_line(run.parse_args(argv), argv) == expected


@pytest.mark.parametrize("argv, folder", [([], "results"), (["--preset", "full"], "full"), (["--preset", "smoke"], "results")])
def test_a_full_run_reports_beside_the_default_run_instead_of_over_it(argv, folder):
    from comfyui_fewstep.bench import run

    out = run.parse_args(argv).out
    assert out.name == folder and (out == run.DEFAULT_OUT) == (folder == "results")

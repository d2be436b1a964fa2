"""`make compat` (tools/compat.py): pytest results are counted from junit XML, the README
table says what ran where, and a missing tree is reported instead of failing the run."""

import json

import pytest

from comfyui_fewstep.tools import compat

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5">
<testcase classname="tests.e2e.test_a" name="test_ok"/>
<testcase classname="tests.e2e.test_a" name="test_ok2"/>
<testcase classname="tests.e2e.test_a" name="test_bad"><failure message="x"/></testcase>
<testcase classname="tests.e2e.test_a" name="test_err"><error message="y"/></testcase>
<testcase classname="tests.e2e.test_a" name="test_skip"><skipped message="z"/></testcase>
</testsuite></testsuites>"""


def test_junit_counts(tmp_path):
    (tmp_path / "j.xml").write_text(JUNIT)
    c = compat.junit_counts(tmp_path / "j.xml")
    assert (c["passed"], c["failed"], c["errors"], c["skipped"]) == (2, 1, 1, 1)
    assert c["failing"] == ["tests.e2e.test_a::test_bad", "tests.e2e.test_a::test_err"]


def test_table_has_a_row_per_tested_tree_and_notes_failures_and_missing_trees():
    trees = [{"name": "a", "note": "rerun of t::x after its fix: passed"}, {"name": "b"}, {"name": "c"}]
    results = {
        "a": {"info": {"name": "a", "comfyui": "0.3.75", "frontend": "1.28.8", "source": "wheel", "commit": "v0.3.75"},
              "tiers": {"comfy": {"passed": 3, "failed": 0, "errors": 0, "skipped": 0, "failing": [], "date": "2026-12-02"},
                        "e2e": {"passed": 1, "failed": 1, "errors": 0, "skipped": 0, "failing": ["t::x"], "date": "2026-12-02"}}},
        "b": {"info": {"name": "b", "source": "", "commit": "", "missing": "no ComfyUI tree at /nowhere"}, "tiers": {}},
    }
    text = compat.table(results, trees)
    row = next(line for line in text.splitlines() if line.startswith("| 0.3.75"))
    assert "3 passed" in row and "1 passed, **1 failed**" in row and "not run" in row and "2026-12-02" in row
    assert "`t::x` failed" in text and "- 0.3.75: rerun of t::x after its fix: passed" in text and "b: not tested here (no ComfyUI tree at /nowhere)" in text
    assert len([line for line in text.splitlines() if line.startswith("| ")]) == 2  # header + a; c never ran


def test_readme_markers_are_required_once_and_only_the_section_changes(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{compat.BEGIN}\nold\n{compat.END}\nb\n")
    compat.write_readme("new", readme)
    assert readme.read_text() == f"a\n{compat.BEGIN}\nnew\n{compat.END}\nb\n"
    readme.write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        compat.write_readme("new", readme)


def test_the_config_lists_the_bundled_runtime_first():
    trees = compat.load_trees()
    assert trees[0]["comfyui"] == ".runtime/comfyui" and len({t["name"] for t in trees}) == len(trees) >= 2


def test_an_unset_variable_in_a_path_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("FEWSTEP_COMPAT_DIR", raising=False)
    with pytest.raises(SystemExit, match="FEWSTEP_COMPAT_DIR"):
        compat._path("${FEWSTEP_COMPAT_DIR}/trees/x")


def test_results_of_other_runs_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(compat, "RESULTS", tmp_path / "r.json")
    compat.store("a", {"name": "a"}, "comfy", {"passed": 1})
    compat.store("b", {"name": "b"}, "e2e", {"passed": 2})  # another `make compat` meanwhile
    compat.store("a", {"name": "a"}, "e2e", {"passed": 3})
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["a"]["tiers"] == {"comfy": {"passed": 1}, "e2e": {"passed": 3}} and r["b"]["tiers"] == {"e2e": {"passed": 2}}

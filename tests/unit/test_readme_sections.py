"""The README's generated sections match their sources: the preset table the registry,
the benchmark section the latest committed report (bench/readme_section.py)."""

import pytest

from comfyui_fewstep.bench.readme_section import BEGIN, END, LATEST, README, replace_between_markers, section
from comfyui_fewstep.tools.preset_table import markdown


def test_readme_preset_table_is_the_registry():
    assert markdown() in README.read_text()


def test_readme_benchmark_section_is_the_latest_report():
    readme = README.read_text()
    assert replace_between_markers(readme, section(LATEST.read_text())) == readme
    assert "Made by `" in readme.split(BEGIN)[1].split(END)[0]  # the command that produced it


def test_section_moves_headings_down_and_links_plots_from_the_root():
    report = "# FewStep benchmarks, 2026-01-01\n\nMade by `make bench`.\n\n## Caching\n\n![plot](2026-01-01-caching.png)\n"
    assert section(report) == "Made by `make bench`.\n\n### Caching\n\n![plot](bench/results/2026-01-01-caching.png)"


def test_markers_missing_or_doubled_are_an_error_naming_them():
    with pytest.raises(ValueError, match="bench:begin"):
        replace_between_markers("no markers here", "body")
    with pytest.raises(ValueError, match="markers once each"):
        replace_between_markers(f"{BEGIN}\n{END}\n{BEGIN}\n{END}", "body")
    assert replace_between_markers(f"a\n{BEGIN}\nold\n{END}\nb", "new") == f"a\n{BEGIN}\nnew\n{END}\nb"

"""`make bench`'s frontier family end to end on the digits teacher (--preset smoke: its own
file, so pytest-xdist runs it beside the other smoke runs)."""

import re

from comfyui_fewstep.bench import run


def test_smoke_run_of_the_frontier_family_charts_every_method_on_the_teacher(tmp_path):
    """`--rows frontier` alone runs the caching and few-step families it draws on (their
    points, not their sections), adds its sweeps, and names a winner per budget that fits it."""
    assert run.main(["--preset", "smoke", "--rows", "frontier", "--repeats", "1", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "latest.md").read_text()
    assert "bench-family: caching" not in md and "bench-family: frontier" in md
    rows = [line.strip("| ").split(" | ") for line in md.splitlines() if line.startswith(("| 4 |", "| 8 |"))]
    assert [r[0] for r in rows] == ["4", "8"]
    for budget, sampler, cache, distilled, winner, speedup in rows:
        evals = float(re.search(r"([\d.]+) ev\.", winner).group(1))
        assert 0 < evals <= float(budget) and re.search(r": [\d.]+ dB, ", winner), winner
        assert winner in (sampler, cache, distilled) and float(speedup.rstrip("x")) > 0
    assert "FewStep Distill student trained for" in rows[0][3]  # a student at <= 4 steps, cfg 1: <= 4 evaluations
    png = next(tmp_path.glob("*-frontier.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png.name})" in md

"""`make bench`'s distill family end to end on the digits teacher (--preset smoke: its own
file, so pytest-xdist runs it beside the other smoke runs)."""

import re

from comfyui_fewstep.bench import run


def test_smoke_run_of_the_distill_family_reports_each_student_and_memory_by_steps(tmp_path):
    """`--rows distill` trains every student the bench names (each once) and measures peak
    memory of training in fresh processes, with and without gradient checkpointing."""
    from comfyui_fewstep.bench.distill_student import STUDENT_STEPS

    assert run.main(["--preset", "smoke", "--rows", "distill", "--repeats", "1", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "latest.md").read_text()
    cells = dict(line.strip("| ").split(" | ") for line in md.splitlines() if "-step student: " in line)
    for n in STUDENT_STEPS:
        assert re.fullmatch(r"\d+ s for 2 iterations", cells[f"{n}-step student: training time"])
        assert re.fullmatch(r"[\d.]+ -> [\d.]+ dB", cells[f"{n}-step student: held-out latent PSNR vs teacher, before -> after"])
    memory = [line.strip("| ").split(" | ") for line in md.splitlines() if re.match(r"\| [248] \| (on|off) \|", line)]
    assert [(r[0], r[1]) for r in memory] == [("2", "on"), ("4", "on"), ("2", "off"), ("4", "off")]
    assert all(float(r[2]) > 0 for r in memory) and memory[0][3] == memory[2][3] == "1.00x"

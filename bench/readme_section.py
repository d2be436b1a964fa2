"""Keep the README's benchmark section equal to the latest committed report.

`make bench` writes bench/results/latest.md and then rewrites the README between two
markers, so the table a user reads is always the one a real run produced, with the command
that made it. Re-sync by hand after editing the README:

    .venv/bin/python -P -m comfyui_fewstep.bench.readme_section
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

BEGIN = "<!-- bench:begin (generated from bench/results/latest.md by `make bench`; do not edit) -->"
END = "<!-- bench:end -->"
REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
LATEST = REPO / "bench" / "results" / "latest.md"


def section(report: str, results_link: str = "bench/results") -> str:
    """The report as README text: its title dropped, headings one level down, plots linked
    from the repository root."""
    lines = report.strip("\n").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    out = []
    for line in lines:
        if line.startswith("#"):
            line = "#" + line
        out.append(re.sub(r"\]\(([^):/]+\.png)\)", rf"]({results_link}/\1)", line))
    return "\n".join(out).strip("\n")


def replace_between_markers(readme: str, body: str) -> str:
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"README.md must contain the markers once each, in order:\n{BEGIN}\n{END}")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{body}\n{END}{tail}"


def sync(readme: Path = README, latest: Path = LATEST) -> bool:
    """Rewrite `readme`'s section from `latest`; True when the file changed."""
    old = readme.read_text()
    new = replace_between_markers(old, section(latest.read_text()))
    if new == old:
        return False
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, readme)
    return True


def main() -> int:
    print("README.md " + ("updated" if sync() else "already up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

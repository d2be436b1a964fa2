"""Carry each row family's last results into the next report.

`make bench ROWS=lora` reruns one family; the others keep the tables of the report that
last ran them, with that date, instead of vanishing from latest.md and the README. Every
table in a report follows a marker line (harness.section_marker) naming its family and
the date it was measured; a kept section keeps its marker, so the date stays the original.
"""

from __future__ import annotations

import re

MARKER = re.compile(r"^<!-- bench-family: (?P<family>[\w-]+) (?P<date>\d{4}-\d\d-\d\d) -->$")
KEPT_NOTE = "_Kept from the run of {date}: this family did not run in the command above._"


def family_sections(report: str) -> dict[str, tuple[str, str]]:
    """family -> (date measured, its markdown from its first marker up to the next family's)."""
    found: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in report.splitlines():
        m = MARKER.match(line)
        if m:
            current = m["family"]
            date, lines = found.setdefault(current, (m["date"], []))
            lines.append(line)
        elif current is not None:
            found[current][1].append(line)
    return {name: (date, "\n".join(lines).strip("\n")) for name, (date, lines) in found.items()}


def kept(section: str, date: str) -> str:
    """`section` with a note under its first heading saying it is from the run of `date`."""
    lines = [line for line in section.splitlines() if not line.startswith("_Kept from the run of ")]
    at = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines) - 1)
    return "\n".join(lines[:at + 1] + ["", KEPT_NOTE.format(date=date)] + lines[at + 1:])

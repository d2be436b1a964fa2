"""The README's screenshots of FewStep nodes in the real ComfyUI frontend.

The browser tests draw each node after a real run and, with FEWSTEP_UPDATE_SCREENSHOTS=1
(`make screenshots`), also write its crop to docs/screenshots/. A screenshot goes stale
when the web extension that draws it changes; git commit times tell (a checkout resets
file times). Stdlib only: the unit tier checks staleness without ComfyUI.
"""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from .comfy_runtime import REPO_ROOT

SCREENSHOT_SUBDIR = "docs/screenshots"
SCREENSHOT_DIR = REPO_ROOT / SCREENSHOT_SUBDIR
REFRESH_COMMAND = "make screenshots"
UPDATE_ENV = "FEWSTEP_UPDATE_SCREENSHOTS"
# screenshot file -> the web extension that draws what it shows
SHOWS = {
    "preset-badge.png": "web/js/preset_badge.js",
    "teacache-stats.png": "web/js/cache_stats.js",
    "distill-chart.png": "web/js/distill_chart.js",
    "ab-test-report.png": "web/js/compare.js",
}


class CannotJudge(RuntimeError):
    """No git history to read commit times from (an sdist, a shallow clone)."""


def update_requested() -> bool:
    return os.environ.get(UPDATE_ENV) == "1"


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise CannotJudge(f"`git {' '.join(args)}` failed in {root}: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def check_history(root: Path = REPO_ROOT) -> None:
    """Raise CannotJudge unless `root` is the top of a full git checkout."""
    try:
        inside = _git(root, "rev-parse", "--is-inside-work-tree") == "true"
        top = Path(_git(root, "rev-parse", "--show-toplevel")).resolve()
    except (CannotJudge, FileNotFoundError) as e:
        raise CannotJudge(f"not a git checkout ({e}): commit times are unknown") from None
    if not inside or top != root.resolve():
        raise CannotJudge(f"{root} is not the top of a git checkout: commit times are unknown")
    if _git(root, "rev-parse", "--is-shallow-repository") == "true":
        raise CannotJudge("a shallow clone: its oldest commit stands for all earlier history, so commit times "
                          "are unknown (run `git fetch --unshallow`)")


def commit_time(relative: str, root: Path = REPO_ROOT) -> int | None:
    """Unix time of the last commit that touched `relative`, None if it was never committed."""
    out = _git(root, "log", "-1", "--format=%ct", "--", relative)
    return int(out) if out else None


def _when(unix: int) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def stale(root: Path = REPO_ROOT, shows: dict[str, str] = SHOWS) -> list[str]:
    """One message per committed screenshot older than the extension it shows (or missing)."""
    check_history(root)
    problems = []
    for name, source in shows.items():
        shot = f"{SCREENSHOT_SUBDIR}/{name}"
        shot_time, source_time = commit_time(shot, root), commit_time(source, root)
        if shot_time is None:
            problems.append(f"{shot} is not committed: run `{REFRESH_COMMAND}` and commit it")
        elif source_time is not None and shot_time < source_time:
            problems.append(f"{shot} (committed {_when(shot_time)}) is older than {source} (committed "
                            f"{_when(source_time)}), which draws it: run `{REFRESH_COMMAND}` and commit the new picture")
    return problems

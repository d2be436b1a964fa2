"""Debian's chromium driven by Playwright (Playwright's own browser download fails here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium_path() -> str | None:
    explicit = os.environ.get("FEWSTEP_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    return shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def ensure_chromium() -> str:
    """Find chromium; as root (CI) install Debian's package when it is missing."""
    found = chromium_path()
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("[browser] installing Debian's chromium", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
        found = chromium_path()
    if not found:
        raise RuntimeError("chromium not found: install it (Debian/Ubuntu: `sudo apt-get install chromium`) "
                           "or set FEWSTEP_CHROMIUM to a Chromium/Chrome binary")
    return found


def launch(playwright):
    return playwright.chromium.launch(executable_path=ensure_chromium(), args=CHROMIUM_ARGS, headless=True)


if __name__ == "__main__":
    print(f"[browser] chromium: {ensure_chromium()}")

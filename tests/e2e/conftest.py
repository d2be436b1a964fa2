"""The e2e tier's shared pieces beyond the session server (tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


class DistillCli:
    """tools/distill_cli.py as a user runs it: from the pack's folder with COMFYUI_PATH set,
    alone or under torchrun."""

    def __init__(self):
        from comfyui_fewstep.tools import comfy_runtime as rt

        self.script = rt.REPO_ROOT / "tools" / "distill_cli.py"
        self.comfyui = str(rt.find_comfyui())

    def command(self, config: Path, processes: int = 1) -> list[str]:
        if processes == 1:
            return [sys.executable, str(self.script), "--config", str(config)]
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
        return [torchrun, "--standalone", f"--nproc_per_node={processes}", str(self.script), "--config", str(config)]

    def env(self, threads: int | None = 1) -> dict:
        """One thread per process unless told; None leaves torch's default (as the server has)."""
        env = {**os.environ, "COMFYUI_PATH": self.comfyui}
        env.pop("OMP_NUM_THREADS", None)
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        return env

    def run(self, config: Path, processes: int = 1, threads: int | None = 1) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(config, processes), env=self.env(threads), capture_output=True, text=True,
                              timeout=1800)


@pytest.fixture(scope="session")
def distill_cli() -> DistillCli:
    return DistillCli()

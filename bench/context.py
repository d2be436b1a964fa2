"""What every row family gets: the options, shared (memoised) models and references, and
lookups of ComfyUI's and FewStep's node classes."""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import harness


@dataclass
class BenchContext:
    preset: str  # "default", "full", or "smoke" (seconds-long, for testing the harness itself)
    repeats: int
    device: str
    out_dir: Path
    date: str = field(default_factory=harness.today)
    log: Callable[[str], None] = print
    families: dict[str, Callable[["BenchContext"], list]] = field(default_factory=dict)  # name -> rows function
    _memo: dict = field(default_factory=dict)
    _models: dict = field(default_factory=dict)

    @property
    def full(self) -> bool:
        return self.preset == "full"

    @property
    def smoke(self) -> bool:
        return self.preset == "smoke"

    def pick(self, default: Any, full: Any = None, smoke: Any = None) -> Any:
        """The per-preset setting (full falls back to default)."""
        if self.smoke and smoke is not None:
            return smoke
        if self.full and full is not None:
            return full
        return default

    def plot_path(self, name: str) -> Path:
        """PNGs carry the date, so an older dated report keeps pointing at its own plots."""
        return self.out_dir / f"{self.date}-{name}.png"

    def memo(self, key: Any, build: Callable[[], Any]) -> Any:
        """Build once per bench process (e.g. the uncached teacher reference, shared by families)."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def family(self, name: str) -> list:
        """The tables of row family `name`, run once per bench process: a family that draws
        on another's results (the frontier chart) asks for them here."""
        return self.memo(("family-tables", name), lambda: self.families[name](self))

    # ---- full-size random models: one at a time, they are large ---------------------------
    def random_model(self, layout: str):
        """ModelPatcher of a random full-size `layout` ("sd15", "sdxl"); the previous one is freed."""
        from .models import random_model_patcher

        if layout not in self._models:
            self.free_models()
            t0 = time.perf_counter()
            self._models[layout] = random_model_patcher(layout)
            self.log(f"  built random {layout} in {time.perf_counter() - t0:.0f} s")
        return self._models[layout]

    def free_models(self) -> None:
        import comfy.model_management as mm

        self._models.clear()
        mm.unload_all_models()
        gc.collect()
        mm.soft_empty_cache()

    # ---- nodes -----------------------------------------------------------------------------
    def pack_node(self, node_id: str):
        """FewStep's node class `node_id` as ComfyUI registers it, or None while the feature
        does not exist yet (then it simply has no row)."""
        def load():
            import comfyui_fewstep

            ext = asyncio.run(comfyui_fewstep.comfy_entrypoint())
            return {c.GET_SCHEMA().node_id: c for c in asyncio.run(ext.get_node_list())}

        return self.memo("pack_nodes", load).get(node_id)

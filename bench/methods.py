"""What every row family compares and how it names it: one `Method` per compared node or
setting, the model names and the columns the families share.

A method with a FewStep node id that the pack does not register yet gives no row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from . import harness
from .harness import Column


@dataclass(frozen=True)
class Method:
    label: str  # as shown in the table's method column
    provider: str  # "core" (ComfyUI's own node: the peer) or "fewstep"
    # A FewStep node id, a loader of a core node class, or None (the method needs no node).
    node: str | Callable[[], Any] | None = None
    # (node class, model, value) -> patched MODEL; families that apply methods differently
    # (e.g. a LoRA loader, given a file name) document their own signature.
    apply: Callable[..., Any] | None = None
    values: Sequence[Any] = ()  # one row per value: thresholds, ratios, ...
    settings: Mapping[str, Any] = field(default_factory=dict)  # sampler overrides, ...

    def node_class(self, ctx):
        """The node class, or None when this FewStep node is not registered (no row)."""
        if self.node is None:
            return None
        return ctx.pack_node(self.node) if isinstance(self.node, str) else self.node()


# Model layouts as the tables name them.
LAYOUT_NAMES = {"sd15": "SD1.5", "sdxl": "SDXL", "tiny-sd15": "tiny SD1.5 (smoke)"}

# Columns with the same meaning in several families.
METHOD = Column("method", "method")
MODEL = Column("model", "model")
SIZE = Column("size", "size", "{0}x{0}")
WALL_BATCH1 = Column("wall", "wall, batch 1 (s)", "{:.3f}")
MAX_ABS = Column("max_abs", "max abs diff", "{:.3g}")
PROMPTED = Column("prompted", "reads as prompted digit", harness.fmt_pct)

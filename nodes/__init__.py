"""The registry of FewStep nodes. Node ids are a public contract: never rename one;
move a retired node to deprecated.py with is_deprecated=True instead.

Nothing happens at import. ComfyUI calls get_node_list() once per load (0.3.75 never
calls on_load, and the server adds its routes after get_node_list), so the "tcd"
sampler and the HTTP route are registered there, idempotently.
"""

from comfy_api.latest import ComfyExtension, io

from ..fewstep import comfy_compat
from ..fewstep.sampling.hooks import register_tcd_sampler
from .caching import FewStepTeaCache
from .analysis import FewStepABTest, FewStepCompare
from .lora import FewStepLoraLoader
from .presets import FewStepPreset
from .routes import register_routes
from .sampling import FewStepTCDSampler
from .tome import FewStepTokenMerge
from .training import FewStepDistillTrainer

NODES: list[type[io.ComfyNode]] = [
    FewStepCompare,
    FewStepTCDSampler,
    FewStepPreset,
    FewStepTeaCache,
    FewStepTokenMerge,
    FewStepLoraLoader,
    FewStepDistillTrainer,
    FewStepABTest,
]


class FewStepExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        comfy_compat.note_untested_version()
        register_tcd_sampler()
        register_routes()  # GET /fewstep/lora_info for the LoRA badge; only when a server runs
        return list(NODES)

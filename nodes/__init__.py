"""The registry of FewStep nodes. Node ids are a public contract: never rename one;
move a retired node to deprecated.py with is_deprecated=True instead."""

from comfy_api.latest import ComfyExtension, io

from .caching import FewStepTeaCache
from .analysis import FewStepCompare
from .lora import FewStepLoraLoader
from .presets import FewStepPreset
from .routes import register_routes
from .sampling import FewStepTCDSampler

register_routes()  # GET /fewstep/lora_info for the LoRA badge; once, only when a server runs

NODES: list[type[io.ComfyNode]] = [
    FewStepCompare,
    FewStepTCDSampler,
    FewStepPreset,
    FewStepTeaCache,
    FewStepLoraLoader,
]


class FewStepExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)

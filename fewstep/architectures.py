"""The one vocabulary of model families. Every other table (presets, model patches,
TeaCache profiles, LoRA structure, token merging, the README preset table) names
families by these ids; adding a family is one entry in ARCHITECTURES.

Pure: torch-free and ComfyUI-free, so it reads the same in tests, tools and nodes. A
loaded model is matched by the *names* of its ComfyUI classes (which the caller reads
off the model), a LoRA by the layout of its key names and one width from its shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class LoraSignature:
    """How a LoRA for this family looks. `layout` groups families whose key names are
    alike (an SD UNet, MMDiT blocks, Wan blocks, ...); within a layout, `widths` (the
    input width of the layer that `structure.LAYOUTS` probes) tells them apart."""

    layout: str
    widths: tuple[int, ...] = ()
    # When no probed width decides, this family is picked if a key name matches this
    # pattern ("" matches any); None: never picked without a width.
    fallback: str | None = None


@dataclass(frozen=True)
class Architecture:
    id: str
    display_name: str
    # ComfyUI model-config class names (comfy/supported_models.py); matched along the
    # config's MRO, so subclasses (FluxSchnell, FluxInpaint, ...) count too.
    configs: tuple[str, ...]
    flow: bool  # flow matching (ComfyUI CONST sampling) rather than discrete eps/v
    # Class name of the network (comfy.ldm) a family-specific hook reads; None: any.
    diffusion_model: str | None = None
    lora: LoraSignature | None = None
    # Families whose presets and LoRAs also fit this one (SSD-1B is a distilled SDXL).
    compatible: tuple[str, ...] = ()
    # Ids older FewStep releases wrote into LoRA metadata for this family.
    aliases: tuple[str, ...] = ()


ARCHITECTURES: dict[str, Architecture] = {a.id: a for a in [
    Architecture("sd15", "SD1.5", ("SD15",), flow=False,
                 diffusion_model="UNetModel", lora=LoraSignature("unet", (768,))),
    Architecture("sd2", "SD2.x", ("SD20", "SD21UnclipL", "SD21UnclipH"), flow=False,
                 diffusion_model="UNetModel", lora=LoraSignature("unet", (1024,)), aliases=("sd21",)),
    Architecture("sdxl", "SDXL", ("SDXL",), flow=False,
                 diffusion_model="UNetModel", lora=LoraSignature("unet", (2048,), fallback=r"transformer_blocks_[1-9]")),
    Architecture("ssd1b", "SSD-1B", ("SSD1B",), flow=False, diffusion_model="UNetModel", compatible=("sdxl",)),
    Architecture("sd3", "SD3", ("SD3",), flow=True,
                 diffusion_model="OpenAISignatureMMDITWrapper", lora=LoraSignature("mmdit", (1536, 2432), fallback="")),
    Architecture("flux", "FLUX.1", ("Flux", "FluxSchnell", "FluxInpaint"), flow=True, diffusion_model="Flux",
                 lora=LoraSignature("flux", (3072,))),
    Architecture("flux2", "FLUX.2", ("Flux2",), flow=True, diffusion_model="Flux"),
    Architecture("chroma", "Chroma", ("Chroma",), flow=True),
    Architecture("qwen_image", "Qwen-Image", ("QwenImage",), flow=True,
                 diffusion_model="QwenImageTransformer2DModel", lora=LoraSignature("qwen_image")),
    Architecture("wan21", "Wan 2.1/2.2 A14B", ("WAN21_T2V", "WAN21_I2V"), flow=True,
                 diffusion_model="WanModel", lora=LoraSignature("wan", (5120, 1536), fallback=""), aliases=("wan",)),
    Architecture("wan22_5b", "Wan 2.2 5B", ("WAN22_T2V",), flow=True, diffusion_model="WanModel",
                 lora=LoraSignature("wan", (3072,))),
    Architecture("hunyuan_video", "HunyuanVideo", ("HunyuanVideo", "HunyuanVideoI2V", "HunyuanVideoSkyreelsI2V"), flow=True, diffusion_model="HunyuanVideo"),
    Architecture("ltxv", "LTX-Video", ("LTXV",), flow=True, diffusion_model="LTXVModel"),
    Architecture("lumina2", "Lumina 2", ("Lumina2",), flow=True, diffusion_model="NextDiT"),
    Architecture("zimage", "Z-Image", ("ZImage",), flow=True, diffusion_model="NextDiT"),
]}

_BY_ALIAS = {alias: a.id for a in ARCHITECTURES.values() for alias in a.aliases}
_BY_CONFIG = {config: a.id for a in ARCHITECTURES.values() for config in a.configs}


class UnknownArchitecture(ValueError):
    """An architecture id that is neither in ARCHITECTURES nor an alias of one."""


def ids() -> tuple[str, ...]:
    return tuple(ARCHITECTURES)


def canonical(arch_id: str) -> str:
    """The current id for `arch_id` (old aliases such as 'sd21' or 'wan' map forward)."""
    if arch_id in ARCHITECTURES:
        return arch_id
    if arch_id in _BY_ALIAS:
        return _BY_ALIAS[arch_id]
    raise UnknownArchitecture(f"unknown architecture {arch_id!r}; known: {', '.join(ARCHITECTURES)}")


def get(arch_id: str) -> Architecture:
    return ARCHITECTURES[canonical(arch_id)]


def display_name(arch_id: str) -> str:
    return get(arch_id).display_name


def is_flow(arch_ids: Iterable[str]) -> bool:
    """True when every listed family samples by flow matching."""
    found = [get(a).flow for a in arch_ids]
    return bool(found) and all(found)


@dataclass(frozen=True)
class ModelFamily:
    """What a loaded model is: `id` None when no family matches."""

    id: str | None
    exact: bool  # the model's own config class is listed (not a subclass of a listed one)
    config: str  # the model's config class name, for messages

    @property
    def ids(self) -> list[str]:
        """This family and the families whose presets/LoRAs also fit it."""
        return [] if self.id is None else [self.id, *ARCHITECTURES[self.id].compatible]


def from_config_classes(class_names: Iterable[str]) -> ModelFamily:
    """The family of a loaded model from its model-config class names in MRO order (most
    specific first). A subclass ComfyUI adds later (a new Wan or Flux variant) counts as
    its parent's family but not `exact`: per-model fits such as TeaCache's published
    coefficients apply only when `exact`."""
    names = list(class_names)
    for i, name in enumerate(names):
        arch = _BY_CONFIG.get(name)
        if arch is not None:
            return ModelFamily(arch, i == 0, names[0])
    return ModelFamily(None, False, names[0] if names else "?")


def family_of(model_patcher) -> ModelFamily:
    """The family of a ComfyUI MODEL (a ModelPatcher), read from its model config's class."""
    config = getattr(getattr(model_patcher, "model", None), "model_config", None)
    if config is None:
        return ModelFamily(None, False, type(model_patcher).__name__)
    return from_config_classes(c.__name__ for c in type(config).__mro__)


def describe(model_patcher) -> str:
    """The model as error messages name it: its config class and family ids."""
    family = family_of(model_patcher)
    return f"{family.config} ({', '.join(family.ids)})" if family.ids else family.config


def lora_candidates(layout: str) -> list[Architecture]:
    """Families whose LoRAs have this key layout, in registry order."""
    return [a for a in ARCHITECTURES.values() if a.lora is not None and a.lora.layout == layout]

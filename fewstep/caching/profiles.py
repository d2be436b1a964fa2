"""TeaCache's indicator: what it reads, where, and the published rescale polynomials.

TeaCache (arXiv 2411.19108) decides to skip a model call from the relative L1 change,
call to call, of the *timestep-modulated input of the first transformer block*, mapped
through a per-model polynomial to an estimate of the relative change of the output.
Where each family's indicator comes from (ComfyUI 0.3.75):

- flux, flux-kontext, hunyuan_video: `img_norm1(img) * (1 + img_mod1.scale) + shift` of
  double_blocks[0], read from the ("double_block", 0) replace patch, whose args are
  exactly that block's inputs.
- ltxv: `rms_norm(x) * (1 + scale_msa) + shift_msa` of transformer_blocks[0] (its
  scale_shift_table plus the adaLN timestep), same patch.
- wan2.1 (default mode): the time embedding `e` that ComfyUI-TeaCache uses; it depends
  only on the timestep, so it is computed before the call from the model's own
  `time_embedding`. Retention mode (`*_ret_mode`): `e0`, the block input `vec` of the
  ("double_block", 0) patch.
- lumina2: the adaLN input `t_embedder(...)` (ComfyUI-TeaCache's choice), again a
  function of the timestep only, computed before the call.
- everything else (SD1.5, SDXL, SD3, Qwen-Image, new families): `generic`, the relative
  change of the network input as the model sees it (`model_sampling.calculate_input`),
  which needs no model-specific code.

The reading itself is in comfy_compat (first_block_modulated_input, timestep_embedding):
it depends on ComfyUI's block attributes. Coefficients are numpy poly1d order (highest
power first), identical in the upstream ali-vilab/TeaCache scripts and
welltop-cn/ComfyUI-TeaCache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import architectures
from ..architectures import family_of

AUTO = "auto"
GENERIC = "generic"

# How an indicator is obtained (see the module docstring).
BLOCK0 = "first block input"  # inside the forward, ("double_block", 0) replace patch
TIMESTEP_EMBEDDING = "timestep embedding"  # before the forward, from the timestep
MODEL_INPUT = "model input"  # before apply_model, from x and sigma


@dataclass(frozen=True)
class Profile:
    """One `model_family` choice: the architecture it needs, its indicator, its rescale."""

    name: str
    architecture: str  # an id from fewstep.architectures, or "generic"
    source: str  # BLOCK0, TIMESTEP_EMBEDDING or MODEL_INPUT
    coefficients: tuple[float, ...] | None  # published polynomial, None: no published fit
    recommended_threshold: float | None = None  # ComfyUI-TeaCache README, where given

    @property
    def published(self) -> bool:
        return self.coefficients is not None


_WAN = {
    "wan2.1_t2v_1.3B": ((2.39676752e+03, -1.31110545e+03, 2.01331979e+02, -8.29855975e+00, 1.37887774e-01), 0.08),
    "wan2.1_t2v_14B": ((-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404), 0.2),
    "wan2.1_i2v_480p_14B": ((-3.02331670e+02, 2.23948934e+02, -5.25463970e+01, 5.87348440e+00, -2.01973289e-01), 0.26),
    "wan2.1_i2v_720p_14B": ((-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683), None),
}
_WAN_RET = {
    "wan2.1_t2v_1.3B_ret_mode": (-5.21862437e+04, 9.23041404e+03, -5.28275948e+02, 1.36987616e+01, -4.99875664e-02),
    "wan2.1_t2v_14B_ret_mode": (-3.03318725e+05, 4.90537029e+04, -2.65530556e+03, 5.87365115e+01, -3.15583525e-01),
    "wan2.1_i2v_480p_14B_ret_mode": (2.57151496e+05, -3.54229917e+04, 1.40286849e+03, -1.35890334e+01, 1.32517977e-01),
    "wan2.1_i2v_720p_14B_ret_mode": (8.10705460e+03, 2.13393892e+03, -3.72934672e+02, 1.66203073e+01, -4.17769401e-02),
}

PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile(GENERIC, "generic", MODEL_INPUT, None),
    Profile("flux", "flux", BLOCK0,
            (4.98651651e+02, -2.83781631e+02, 5.58554382e+01, -3.82021401e+00, 2.64230861e-01), 0.4),
    Profile("flux-kontext", "flux", BLOCK0,
            (-1.04655119e+03, 3.12563399e+02, -1.69500694e+01, 4.10995971e-01, 3.74537863e-02), 0.22),
    Profile("hunyuan_video", "hunyuan_video", BLOCK0,
            (7.33226126e+02, -4.01131952e+02, 6.75869174e+01, -3.14987800e+00, 9.61237896e-02), 0.15),
    Profile("ltxv", "ltxv", BLOCK0,
            (2.14700694e+01, -1.28016453e+01, 2.31279151e+00, 7.92487521e-01, 9.69274326e-03), 0.06),
    Profile("lumina2", "lumina2", TIMESTEP_EMBEDDING,
            (-8.74643948e+02, 4.66059906e+02, -7.51559762e+01, 5.32836175e+00, -3.27258296e-02)),
    *[Profile(n, "wan21", TIMESTEP_EMBEDDING, c, t) for n, (c, t) in _WAN.items()],
    *[Profile(n, "wan21", BLOCK0, c) for n, c in _WAN_RET.items()],
]}

FAMILY_CHOICES: list[str] = [AUTO, *PROFILES]

WAN_720P_TOKENS = 90 * 160  # latent positions per frame of a 720x1280 video (8x VAE)


class FamilyError(ValueError):
    """An explicit model_family that does not exist or does not match the model."""


def _dm_classes(model_patcher) -> set[str]:
    dm = model_patcher.get_model_object("diffusion_model")
    return {c.__name__ for c in type(dm).__mro__}


def architecture_name(model_patcher) -> str:
    """A short name for logs and stats: the family id, else the config class."""
    family = family_of(model_patcher)
    return family.id or family.config.lower()


def resolve_profile(model_patcher, family: str) -> Profile:
    """The Profile for `family` on this model; `auto` picks published coefficients when
    they were fitted for this model's own config class, the generic indicator otherwise.
    Raises FamilyError."""
    if family == AUTO:
        found = family_of(model_patcher)
        if not found.exact:
            return PROFILES[GENERIC]
        if found.id == "wan21":
            return PROFILES[_auto_wan(model_patcher)]
        return PROFILES.get(found.id, PROFILES[GENERIC])
    profile = PROFILES.get(family)
    if profile is None:
        raise FamilyError(f"unknown model_family {family!r}; choose one of {', '.join(FAMILY_CHOICES)}")
    want = None if profile.architecture == GENERIC else architectures.get(profile.architecture).diffusion_model
    if want is not None and want not in _dm_classes(model_patcher):
        raise FamilyError(
            f"model_family {family!r} needs a {want} diffusion model, but this MODEL is "
            f"{family_of(model_patcher).config} ({type(model_patcher.get_model_object('diffusion_model')).__name__}); "
            f"use 'auto' or '{GENERIC}'")
    return profile


def _auto_wan(model_patcher) -> str:
    dm = model_patcher.get_model_object("diffusion_model")
    size = "14B" if getattr(dm, "dim", 0) >= 3072 else "1.3B"
    if family_of(model_patcher).config == "WAN21_I2V":
        return "wan2.1_i2v_480p_14B"  # 720p is chosen per run from the latent size
    return f"wan2.1_t2v_{size}"


def for_latent(profile: Profile, latent_shape, chosen_automatically: bool) -> Profile:
    """Wan I2V 480p and 720p share one architecture: when `auto` chose, pick by size."""
    if chosen_automatically and profile.name == "wan2.1_i2v_480p_14B" and len(latent_shape) >= 4:
        if latent_shape[-1] * latent_shape[-2] >= 0.75 * WAN_720P_TOKENS:
            return PROFILES["wan2.1_i2v_720p_14B"]
    return profile


# ---- the indicator ---------------------------------------------------------------------

def rel_l1(current: torch.Tensor, previous: torch.Tensor) -> float:
    """mean|current - previous| / mean|previous|; inf when undefined (zero or non-finite
    previous, shape change), which forces a computed call instead of a division by zero."""
    if previous is None or current.shape != previous.shape:
        return math.inf
    a, b = current.float(), previous.to(current.device).float()
    den = float(b.abs().mean())
    if not math.isfinite(den) or den <= 0.0:
        return math.inf
    value = float((a - b).abs().mean()) / den
    return value if math.isfinite(value) else math.inf


def polyval(coefficients, x: float) -> float:
    """|p(x)| with p in numpy poly1d order; TeaCache accumulates magnitudes."""
    if not math.isfinite(x):
        return math.inf
    acc = 0.0
    for c in coefficients:
        acc = acc * x + c
    return abs(acc)


def per_uuid(tensor: torch.Tensor, count: int) -> list[torch.Tensor]:
    """Split a cond-batched tensor (batch = count x per-cond batch) into per-cond slices."""
    if count <= 0 or tensor.shape[0] % count:
        raise ValueError(f"batch {tensor.shape[0]} does not split into {count} conds")
    return list(tensor.chunk(count, dim=0))

"""Which layers of a diffusion model get a trainable adapter.

Pure: names and shapes in, names out. Names are module paths inside the diffusion model
("input_blocks.1.1.transformer_blocks.0.attn1.to_q" in a UNet, "double_blocks.0.img_attn.qkv"
in Flux); the rules read path segments, so they hold for UNets and DiTs alike.
"""

from __future__ import annotations

import re

_ATTENTION = re.compile(r"(^|[._])(attn\d*|attention|self_attn|cross_attn|img_attn|txt_attn)([._]|$)")
_MLP = re.compile(r"(^|[._])(ff|mlp|ffn|feed_forward|img_mlp|txt_mlp|mlp_fc\d*)([._]|$)")
# A UNet transformer's in/out projections and a DiT block's fused linear layers carry
# the same content as attention/MLP; the feasibility runs trained them too.
_PROJ = re.compile(r"(^|\.)(proj_in|proj_out|linear1|linear2)$")

DESCRIPTIONS = {
    "attention": "attention projections only (q, k, v, out)",
    "attention+mlp": "attention, feed-forward (MLP) and the transformer blocks' in/out projections",
    "all": "every linear and convolution layer of the diffusion model",
}


def selected(name: str, ndim: int, target: str) -> bool:
    """Does module `name`, whose weight has `ndim` dimensions, get an adapter?"""
    if ndim < 2:
        return False  # norms and biases: adapters act on matrices and kernels
    if target == "all":
        return True
    attention = bool(_ATTENTION.search(name))
    if target == "attention":
        return attention
    if target == "attention+mlp":
        return attention or bool(_MLP.search(name)) or bool(_PROJ.search(name))
    raise ValueError(f"unknown target {target!r}; pick one of {', '.join(DESCRIPTIONS)}")


def select(layers: dict[str, int], target: str) -> list[str]:
    """The names among `layers` ({name: weight ndim}) that get adapters, in model order."""
    return [name for name, ndim in layers.items() if selected(name, ndim, target)]

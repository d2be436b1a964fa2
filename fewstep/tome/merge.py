"""Token merging maths, torch only: ToDo's key/value downsampling and ToMe's bipartite
soft matching (after tomesd's merge.py), on tokens laid out as an h x w grid in row-major
order (what a UNet's SpatialTransformer makes of a [B, C, h, w] feature map).

Randomness comes only from a `torch.Generator` the caller seeds (see `partition_seed`),
never from torch's global RNG, so a run is reproducible for a seed and draws nothing that
other nodes' sampling noise depends on. The partition is shared by every batch row and
all other work is per row, so a row's result does not depend on what it is batched with
(cond and uncond together or apart, batch 1 or 4).
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

import torch


def downsampled_size(h: int, w: int, factor: float) -> tuple[int, int]:
    """The grid ToDo keeps: ceil(h / factor) x ceil(w / factor), at least 1 x 1."""
    return max(1, math.ceil(h / factor)), max(1, math.ceil(w / factor))


def downsample_tokens(x: torch.Tensor, h: int, w: int, factor: float) -> torch.Tensor:
    """ToDo: nearest-neighbour ("nearest-exact") downsampling of a token grid.

    x [B, h*w, C] -> [B, h'*w', C] with (h', w') = downsampled_size(h, w, factor); factor 1
    (or a grid that would not shrink) returns x itself, untouched.
    """
    nh, nw = downsampled_size(h, w, factor)
    if factor <= 1 or (nh, nw) == (h, w):
        return x
    b, n, c = x.shape
    if n != h * w:
        raise ValueError(f"{n} tokens do not form a {h}x{w} grid")
    grid = x.reshape(b, h, w, c).permute(0, 3, 1, 2)
    # interpolate has no half/bfloat16 nearest-exact kernel on every device: it is a gather,
    # so running it in float32 changes no value.
    small = torch.nn.functional.interpolate(grid.float(), size=(nh, nw), mode="nearest-exact").to(x.dtype)
    return small.permute(0, 2, 3, 1).reshape(b, nh * nw, c)


def downsample_span(x: torch.Tensor, start: int, h: int, w: int, factor: float) -> torch.Tensor:
    """ToDo on a DiT's joint sequence: keys or values x [B, H, N, D] (tokens on dim 2) whose
    tokens [start, start + h*w) are an h x w image grid in row-major order. Returns
    [B, H, N - h*w + h'*w', D]: the grid downsampled as `downsample_tokens` does, every
    token before and after it (text, reference images) kept as it is. Factor 1 returns x."""
    b, heads, n, d = x.shape
    end = start + h * w
    if end > n:
        raise ValueError(f"a {h}x{w} grid from token {start} does not fit in {n} tokens")
    grid = x[:, :, start:end].reshape(b * heads, h * w, d)
    small = downsample_tokens(grid, h, w, factor)
    if small is grid:
        return x
    small = small.reshape(b, heads, -1, d)
    return torch.cat([x[:, :, :start], small, x[:, :, end:]], dim=2)


def downsample_key_mask(mask: torch.Tensor, start: int, h: int, w: int, factor: float) -> torch.Tensor:
    """The attention mask for keys cut by `downsample_span`: mask [..., N] (keys on the last
    dim, e.g. [B, Nq, N]) -> [..., N - h*w + h'*w'], each kept key keeping its own entries."""
    rows = mask.reshape(-1, 1, mask.shape[-1], 1)
    small = downsample_span(rows, start, h, w, factor)
    return mask if small is rows else small.reshape(*mask.shape[:-1], small.shape[2])


def partition_seed(seed: int, level: int, sigma: float) -> int:
    """A 63-bit generator seed from (seed, UNet level, sigma): every level and step gets its
    own partition, the same one in every run with this seed."""
    data = struct.pack("<qqd", int(seed), int(level), float(sigma))
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") & (2**63 - 1)


def random_partition(h: int, w: int, generator: torch.Generator, sx: int = 2, sy: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """ToMe's 2D partition: one random destination token per sy x sx cell, the rest sources.

    Returns (src [Ns], dst [Nd]) token indices (int64, on the generator's device) into the
    row-major h x w grid, Ns + Nd = h*w. Cells cut by the grid's border (odd sizes) hold
    sources only. Draws only from `generator`.
    """
    hsy, wsx = h // sy, w // sx
    choice = torch.randint(sy * sx, (hsy, wsx), generator=generator, device=generator.device)
    is_dst = torch.zeros(h, w, dtype=torch.bool, device=generator.device)
    cells = torch.zeros(hsy, wsx, sy * sx, dtype=torch.bool, device=generator.device)
    cells.scatter_(2, choice[..., None], True)
    is_dst[:hsy * sy, :wsx * sx] = cells.view(hsy, wsx, sy, sx).transpose(1, 2).reshape(hsy * sy, wsx * sx)
    flat = is_dst.flatten()
    return flat.logical_not().nonzero().flatten(), flat.nonzero().flatten()


@dataclass
class Merge:
    """ToMe's merge/unmerge for one token grid: `merge` maps x [B, N, C] to [B, N - r, C]
    (r source tokens averaged into their most similar destination), `unmerge` maps
    [B, N - r, C] back to [B, N, C] (a merged source token gets its destination's value)."""

    src: torch.Tensor  # [Ns] grid indices of the source tokens
    dst: torch.Tensor  # [Nd] grid indices of the destination tokens
    unm_idx: torch.Tensor  # [B, Ns - r, 1] positions (within src) of the sources kept
    src_idx: torch.Tensor  # [B, r, 1] positions (within src) of the sources merged
    dst_idx: torch.Tensor  # [B, r, 1] positions (within dst) they merge into
    n: int  # N, tokens before merging

    @property
    def r(self) -> int:
        return self.src_idx.shape[1]

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, N, C] -> [B, N - r, C]: kept sources, then destinations (means of their merged sources)."""
        if self.r == 0:
            return x
        b, _, c = x.shape
        src, dst = x[:, self.src], x[:, self.dst]
        unm = src.gather(1, self.unm_idx.expand(b, -1, c))
        merged = src.gather(1, self.src_idx.expand(b, -1, c))
        dst = dst.scatter_reduce(1, self.dst_idx.expand(b, -1, c), merged, reduce="mean")
        return torch.cat([unm, dst], dim=1)

    def unmerge(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, N - r, C] -> [B, N, C], every token back at its grid position."""
        if self.r == 0:
            return x
        b, _, c = x.shape
        kept = self.unm_idx.shape[1]
        unm, dst = x[:, :kept], x[:, kept:]
        out = x.new_empty(b, self.n, c)
        out[:, self.dst] = dst
        src_pos = self.src.expand(b, -1)
        out.scatter_(1, src_pos.gather(1, self.unm_idx[..., 0])[..., None].expand(b, -1, c), unm)
        out.scatter_(1, src_pos.gather(1, self.src_idx[..., 0])[..., None].expand(b, -1, c),
                     dst.gather(1, self.dst_idx.expand(b, -1, c)))
        return out


def bipartite_soft_matching(metric: torch.Tensor, h: int, w: int, ratio: float, generator: torch.Generator,
                            sx: int = 2, sy: int = 2) -> Merge:
    """ToMe's bipartite soft matching on a token grid.

    metric [B, h*w, C]: what similarity is measured on (the block's input tokens). Merges
    r = floor(ratio * N) tokens, at most the number of sources (3/4 of N with 2x2 cells).
    The partition comes from `generator` (shared by all rows); matching is per row.
    """
    b, n, _ = metric.shape
    if n != h * w:
        raise ValueError(f"{n} tokens do not form a {h}x{w} grid")
    src, dst = random_partition(h, w, generator, sx, sy)
    src, dst = src.to(metric.device), dst.to(metric.device)
    r = min(int(n * ratio), src.numel()) if dst.numel() else 0
    if r <= 0:
        empty = torch.zeros(b, 0, 1, dtype=torch.long, device=metric.device)
        keep = torch.arange(src.numel(), device=metric.device).expand(b, -1)[..., None]
        return Merge(src, dst, keep, empty, empty, n)
    with torch.no_grad():
        unit = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        scores = unit[:, src] @ unit[:, dst].transpose(-1, -2)  # [B, Ns, Nd]
        best, best_dst = scores.max(dim=-1)
        order = best.argsort(dim=-1, descending=True, stable=True)[..., None]  # [B, Ns, 1]
        src_idx, unm_idx = order[:, :r], order[:, r:]
        dst_idx = best_dst[..., None].gather(1, src_idx)
    return Merge(src, dst, unm_idx, src_idx, dst_idx, n)

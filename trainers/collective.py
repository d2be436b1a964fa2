"""Data-parallel glue on torch.distributed: this process's rank, the adapter-gradient
all-reduce (one flat buffer) and barriers. `Single` is the one-process case the node uses.

Pure: torch only. No launcher and no collective algorithm of our own: torchrun and
`accelerate launch` both set RANK / WORLD_SIZE / MASTER_ADDR, and env:// initialisation
reads them. DDP and accelerator.prepare() cannot see ComfyUI weight-wrapper adapters
(they are not submodules, and the forward does not pass through a DDP wrapper), so the
engine reduces the adapter gradients itself, here.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


class Single:
    """One process: every collective is the identity."""

    rank, world = 0, 1

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def all_reduce_gradients(self, params: list[torch.nn.Parameter]) -> None:
        return None

    def any(self, flag: bool) -> bool:
        return flag

    def sum(self, value: float) -> float:
        return value

    def barrier(self) -> None:
        return None

    def close(self) -> None:
        return None


class TorchDistributed(Single):
    """The process group torchrun / accelerate set up (gloo on CPU, nccl on CUDA)."""

    def __init__(self, backend: str | None = None):
        if not dist.is_initialized():
            backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
            dist.init_process_group(backend=backend, init_method="env://")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None

    def _on(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device) if self.device is not None else t

    def all_reduce_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Sum every adapter gradient over ranks, as one flat buffer (each rank already scaled
        its loss by its share of the global batch, so the sum is the global mean's gradient)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = self._on(torch.cat([g.reshape(-1) for g in grads]))
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(g).to(g.device)
            offset += n

    def any(self, flag: bool) -> bool:
        t = self._on(torch.tensor([1.0 if flag else 0.0]))
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def sum(self, value: float) -> float:
        t = self._on(torch.tensor([value], dtype=torch.float64))
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item())

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def from_environment():
    """TorchDistributed when launched with WORLD_SIZE > 1, else Single."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return TorchDistributed()
    return Single()


def shard(rows: list, rank: int, world: int) -> list:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    per, extra = divmod(len(rows), world)
    start = rank * per + min(rank, extra)
    return rows[start:start + per + (1 if rank < extra else 0)]

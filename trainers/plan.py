"""Which samples exist, which train, which are held out, and in what order batches come.

Pure: standard library + torch. A sample's noise seed is derived from the run seed, the
prompt and the sample's index, never from a process rank or a batch position, so the
teacher cache is shared by any number of processes and survives a changed batch size.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from .config import MAX_HELDOUT, DistillConfig


@dataclass(frozen=True)
class Sample:
    prompt_index: int
    prompt: str
    seed: int  # the initial noise's seed, as KSampler's `seed`
    heldout: bool


def sample_seed(run_seed: int, prompt: str, index: int) -> int:
    """A 63-bit seed for the index-th sample of a prompt (stable across releases)."""
    digest = hashlib.sha256(f"fewstep-distill|{run_seed}|{prompt}|{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def samples(config: DistillConfig) -> list[Sample]:
    """Training samples first, then held-out ones: `heldout_per_prompt` extra seeds per
    prompt, round-robin over prompts, at most MAX_HELDOUT in all."""
    train = [Sample(p, text, sample_seed(config.seed, text, i), False)
             for p, text in enumerate(config.prompts) for i in range(config.samples_per_prompt)]
    held: list[Sample] = []
    for extra in range(config.heldout_per_prompt):
        for p, text in enumerate(config.prompts):
            if len(held) < MAX_HELDOUT:
                held.append(Sample(p, text, sample_seed(config.seed, text, config.samples_per_prompt + extra), True))
    return train + held


def epoch_order(count: int, generator: torch.Generator) -> list[int]:
    """A fresh random order of the training samples, drawn from the run's generator."""
    return torch.randperm(count, generator=generator).tolist()


class BatchStream:
    """Batches of training-sample indices, epoch by epoch; its whole state is the generator
    state plus (epoch order, position), so a resumed run draws exactly the same batches."""

    def __init__(self, count: int, batch_size: int, seed: int):
        self.count, self.batch_size = count, min(batch_size, count)
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        self.position = 0

    def next(self) -> list[int]:
        batch: list[int] = []
        while len(batch) < self.batch_size:
            if self.position >= len(self.order):
                self.order, self.position = epoch_order(self.count, self.generator), 0
            take = min(self.batch_size - len(batch), len(self.order) - self.position)
            batch += self.order[self.position:self.position + take]
            self.position += take
        return batch

    def state(self) -> dict:
        return {"generator": self.generator.get_state(), "order": list(self.order), "position": self.position}

    def load_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = list(state["order"]), int(state["position"])

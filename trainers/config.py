"""The settings of one distillation run, checked before any long work starts.

Pure: standard library only. The node, the engine and the resume file share this one
definition; a resume file stores `DistillConfig.to_json()` and refuses another base.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field

STUDENT_SAMPLERS = ("euler", "lcm")  # the samplers the engine implements differentiably
LR_SCHEDULES = ("cosine_warmup", "constant_warmup", "constant")
ADAPTERS = ("lora", "loha", "lokr", "oft")
TARGETS = ("attention", "attention+mlp", "all")
TRAINING_DTYPES = ("fp32", "bf16")
WARMUP_SHARE = 0.05  # of the iterations, for the *_warmup schedules (at least one iteration)
MAX_HELDOUT = 16     # held-out samples are capped: they are sampled at every evaluation
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}$")


class DistillConfigError(ValueError):
    """A setting that cannot work; the message names the setting and the fix."""


@dataclass(frozen=True)
class DistillConfig:
    prompts: tuple[str, ...]
    negative: str = ""
    width: int = 512
    height: int = 512
    teacher_steps: int = 30
    teacher_cfg: float = 5.0
    teacher_sampler: str = "euler"
    teacher_scheduler: str = "normal"
    student_steps: int = 4
    student_cfg: float = 1.0
    student_sampler: str = "euler"
    student_scheduler: str = "sgm_uniform"
    samples_per_prompt: int = 8
    iterations: int = 300
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine_warmup"
    adapter: str = "lora"
    rank: int = 16
    alpha: float = 16.0
    target: str = "all"
    batch_size: int = 8
    seed: int = 0
    gradient_checkpointing: bool = True
    training_dtype: str = "fp32"
    lora_name: str = "fewstep_distill"
    save_every: int = 100
    resume: str = ""
    heldout_per_prompt: int = 1  # extra seeds per prompt kept out of training (capped at MAX_HELDOUT)
    extra: dict = field(default_factory=dict, compare=False)  # free-form notes (e.g. the base's upstream LoRAs)

    def __post_init__(self):
        object.__setattr__(self, "prompts", tuple(p.strip() for p in self.prompts if p and p.strip()))

    @classmethod
    def from_text(cls, prompts_text: str, **settings) -> DistillConfig:
        """Prompts as a node gives them: one per line, blank lines ignored."""
        return cls(prompts=tuple(prompts_text.splitlines()), **settings)

    def check(self) -> DistillConfig:
        """Raise DistillConfigError naming every impossible setting at once."""
        problems = [p for p in _problems(self) if p]
        if problems:
            raise DistillConfigError("FewStep Distill cannot start: " + "; ".join(problems) + ".")
        return self

    def training_fields(self) -> dict:
        """What a resume must agree on. The run length, the learning rate and its schedule
        may change (e.g. resume a diverged run from its last good checkpoint at a lower lr)."""
        skip = {"iterations", "save_every", "resume", "lora_name", "extra", "lr_schedule", "learning_rate"}
        return {k: v for k, v in self.to_dict().items() if k not in skip}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["prompts"] = list(self.prompts)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> DistillConfig:
        """Fields this release knows; newer files' extra fields are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> DistillConfig:
        return cls.from_dict(json.loads(text))


def check_lora_name(name: str) -> str | None:
    """A plain file stem: no folders, no '..', nothing a path trick could use."""
    if not name or not _SAFE_NAME.match(name) or ".." in name:
        return (f"lora_name {name!r} must be a plain file name (letters, digits, space, '_', '-', '.'; "
                "no folders or '..'), e.g. 'my_model_4step'")
    return None


def _problems(c: DistillConfig):
    yield None if c.prompts else "the prompt list is empty; write one prompt per line"
    for name in ("width", "height"):
        value = getattr(c, name)
        yield None if value >= 8 and value % 8 == 0 else f"{name} {value} must be a positive multiple of 8"
    yield None if c.teacher_steps >= 1 else "teacher_steps must be at least 1"
    yield None if 1 <= c.student_steps < c.teacher_steps else (
        f"student_steps ({c.student_steps}) must be at least 1 and fewer than teacher_steps ({c.teacher_steps})")
    yield None if c.student_sampler in STUDENT_SAMPLERS else (
        f"student_sampler {c.student_sampler!r} is not trainable; pick one of {', '.join(STUDENT_SAMPLERS)}")
    yield None if c.teacher_cfg > 0 and c.student_cfg > 0 else "teacher_cfg and student_cfg must be above 0"
    yield None if c.samples_per_prompt >= 1 else "samples_per_prompt must be at least 1"
    yield None if c.iterations >= 1 else "iterations must be at least 1"
    yield None if c.learning_rate > 0 else f"learning_rate {c.learning_rate} must be above 0 (try 1e-4 to 1e-3)"
    yield None if c.lr_schedule in LR_SCHEDULES else f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}"
    yield None if c.adapter in ADAPTERS else f"adapter must be one of {', '.join(ADAPTERS)}"
    yield None if c.rank >= 1 else f"rank {c.rank} must be at least 1 (try 8 to 32)"
    yield None if c.alpha > 0 else "alpha must be above 0 (commonly equal to rank)"
    yield None if c.target in TARGETS else f"target must be one of {', '.join(TARGETS)}"
    yield None if c.batch_size >= 1 else "batch_size must be at least 1"
    yield None if c.training_dtype in TRAINING_DTYPES else f"training_dtype must be one of {', '.join(TRAINING_DTYPES)}"
    yield None if c.save_every >= 0 else "save_every must be 0 (only at the end) or more"
    yield None if c.heldout_per_prompt >= 0 else "heldout_per_prompt must be 0 or more"
    yield check_lora_name(c.lora_name)

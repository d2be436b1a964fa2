"""Which preset a LoRA file was made for, from the strongest evidence available:
1. FewStep's own metadata, 2. a known SHA-256 prefix, 3. the file name, 4. the tensor
structure (architecture and rank only: no preset is guessed from it), 5. unknown.

Conflict rule: the tensors decide the architecture. Evidence naming a preset that was not
made for the architecture the keys and shapes show (e.g. the name says SDXL-Lightning but
the keys are SD1.5) is set aside, `info` says so, and the next evidence is tried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .files import FewStepMetadata, LoraFileError, read_fewstep_metadata, read_header
from .hashes import HashCache, HashEntry, match_hash
from .names import match_name
from .structure import Structure, detect_structure
from ..presets.registry import PresetError, get_preset


@dataclass
class Recognition:
    preset: str | None  # preset id, None when unknown
    steps: int | None  # step count the file was made for, when known
    source: str  # "metadata", "hash", "name" or "unknown"
    structure: Structure
    sha256: str | None
    lines: list[str] = field(default_factory=list)  # evidence, one line each, for `info`
    metadata: FewStepMetadata | None = None  # FewStep metadata, also when it names no preset


def _fits(preset_id: str, architecture: str | None) -> bool:
    return architecture is None or architecture in get_preset(preset_id).base


def recognise(path, hash_table: list[HashEntry], hash_cache: HashCache) -> Recognition:
    """Read only the header (and hash the file when metadata does not decide); never loads tensors."""
    header = read_header(path)  # raises LoraFileError for pickles, truncation, corruption
    structure = detect_structure(header)
    arch = structure.architecture
    lines = [f"Structure: {structure.summary()} ({'; '.join(structure.evidence)})."]
    meta = read_fewstep_metadata(header.metadata, header.path.name)
    digest = None

    if meta is not None and "preset" not in meta.fields:
        if arch is None or arch in meta.base:
            lines.insert(0, f"Recognised by metadata: FewStep metadata gives {meta.fields['family']} for {meta.fields['base']}, "
                            f"{meta.steps} steps, cfg {meta.fields['cfg']}, {meta.fields['sampler']}/{meta.fields['scheduler']} "
                            "(its own settings, no preset id).")
            return Recognition(None, meta.steps, "metadata", structure, None, lines, meta)
        lines.append(f"Set aside: FewStep metadata says {meta.fields['base']} but the keys and shapes say {arch}; "
                     "the tensors decide the architecture.")

    def candidates():
        nonlocal digest
        if meta is not None and "preset" in meta.fields:
            yield "metadata", meta.fields["preset"], meta.steps, f"FewStep metadata names preset {meta.fields['preset']} at {meta.steps} steps"
        digest = hash_cache.sha256(header.path)  # cached per (path, size, mtime)
        entry = match_hash(digest, hash_table)
        if entry is not None:
            yield "hash", entry.preset, entry.steps, f"SHA-256 {digest[:12]} matches {entry.name} ({entry.origin})"
        by_name = match_name(header.path.name)
        if by_name is not None:
            yield "name", by_name.preset, by_name.steps, f"file name {header.path.name!r} matches preset {by_name.preset}"

    for source, preset_id, steps, description in candidates():
        try:
            preset = get_preset(preset_id)
        except PresetError as e:
            lines.append(f"Set aside: {description}, but {e}.")
            continue
        if not _fits(preset_id, arch):
            lines.append(
                f"Set aside: {description}, but that preset is for {', '.join(preset.base)} and the keys "
                f"and shapes say {arch}; the tensors decide the architecture."
            )
            continue
        if steps is not None and steps not in preset.steps:
            lines.append(f"Set aside: {description}, but {preset_id} has no {steps}-step setting.")
            continue
        lines.insert(0, f"Recognised by {source}: {description}.")
        return Recognition(preset_id, steps, source, structure, digest, lines, meta)

    lines.insert(0, f"Unknown few-step LoRA (SHA-256 {digest[:12]}): no preset is guessed. Pick one in `preset`, or add "
                    "its hash to the user hash list or FewStep metadata to the file.")
    return Recognition(None, None, "unknown", structure, digest, lines, meta)


__all__ = ["Recognition", "recognise", "LoraFileError"]

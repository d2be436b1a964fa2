"""What the graph (ComfyUI's hidden `prompt`, API format) says about the teacher.

Pure: dicts in, names out. A MODEL carries no file path, so the LoRAs the teacher already
carries are read from the nodes upstream of the trainer's `model` input.
"""

from __future__ import annotations

LORA_NODES = {"LoraLoader", "LoraLoaderModelOnly", "FewStepLoraLoader"}
CHECKPOINT_NODES = {"CheckpointLoaderSimple", "CheckpointLoader", "UNETLoader"}


def _upstream(prompt: dict, node_id: str, input_name: str):
    """Node ids feeding `input_name` of `node_id`, nearest first, following MODEL links."""
    seen = set()
    link = (prompt.get(str(node_id), {}).get("inputs", {}) or {}).get(input_name)
    while isinstance(link, list) and link and str(link[0]) not in seen:
        current = str(link[0])
        seen.add(current)
        yield current, prompt.get(current, {})
        inputs = prompt.get(current, {}).get("inputs", {}) or {}
        link = inputs.get("model")


def upstream_loras(prompt: dict | None, node_id: str | None, input_name: str = "model") -> list[str]:
    """LoRA file names on the model path into the node, in the order they are applied."""
    if not prompt or node_id is None:
        return []
    names = [n.get("inputs", {}).get("lora_name") for _, n in _upstream(prompt, node_id, input_name)
             if n.get("class_type") in LORA_NODES]
    return [str(n) for n in reversed(names) if isinstance(n, str)]

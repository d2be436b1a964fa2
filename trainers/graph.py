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


class NotExportable(ValueError):
    """The teacher comes from nodes the CLI cannot rebuild; the message names the node."""


def cli_source(prompt: dict | None, node_id: str | None) -> dict:
    """{"checkpoint": name, "loras": [[name, model strength, clip strength], ...]} that
    rebuild the trainer's teacher headless, read from the graph; NotExportable when a node
    on the model path does anything else (the CLI would train another model)."""
    if not prompt or node_id is None:
        raise NotExportable("no graph to read the teacher from (run inside a ComfyUI prompt)")
    loras = []
    for nid, node in _upstream(prompt, node_id, "model"):
        kind, inputs = node.get("class_type"), node.get("inputs", {}) or {}
        if kind in ("LoraLoader", "LoraLoaderModelOnly"):
            loras.append([inputs.get("lora_name"), inputs.get("strength_model", 1.0),
                          inputs.get("strength_clip", 0.0 if kind == "LoraLoaderModelOnly" else 1.0)])
        elif kind == "CheckpointLoaderSimple":
            values = [inputs.get("ckpt_name"), *(v for l in loras for v in l)]
            if not all(isinstance(v, (str, int, float)) for v in values):
                raise NotExportable("a checkpoint or LoRA setting comes from another node's output")
            return {"checkpoint": inputs["ckpt_name"], "loras": list(reversed(loras))}
        else:
            raise NotExportable(f"node {nid} ({kind}) changes the model in a way the CLI cannot reproduce")
    raise NotExportable("the model input does not come from CheckpointLoaderSimple")

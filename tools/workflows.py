"""Check shipped workflows against a live server's /object_info, and run API-format ones.

UI-format files (workflows/*.json) are what the ComfyUI frontend loads and lists as
templates; API-format files (workflows/api/*.json) are what POST /prompt takes.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import comfy_runtime as rt

WORKFLOWS = rt.REPO_ROOT / "workflows"
MODEL_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")


def ui_workflows() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.json"))


def api_workflows() -> list[Path]:
    return sorted((WORKFLOWS / "api").glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def nodes_of(graph: dict, kind: str) -> list[str]:
    """Ids of an API graph's nodes of class `kind`, in file order."""
    return [i for i, n in graph.items() if n["class_type"] == kind]


def _input_specs(node_info: dict) -> dict[str, list]:
    specs = {}
    for section in ("required", "optional"):
        specs.update(node_info["input"].get(section, {}))
    return specs


def _is_file_list(options) -> bool:
    """Combos of model files depend on what the user has installed: don't judge values."""
    return isinstance(options, list) and (not options or all(
        isinstance(o, str) and o.lower().endswith(MODEL_FILE_SUFFIXES) for o in options))


def _combo_options(spec: list):
    kind = spec[0]
    if isinstance(kind, list):
        return kind
    if kind == "COMBO" and len(spec) > 1:
        return spec[1].get("options")
    return None


def link_accepted(out_type, in_type) -> bool:
    """ComfyUI's rule for a link (comfy_execution/validation.py validate_node_input): equal
    types, '*', or an option-list output into a v3 "COMBO" input. A V1 list input (KSampler's
    sampler_name) takes only the same list: a "COMBO"-typed output is refused."""
    if "*" in (out_type, in_type) or out_type == in_type:
        return True
    if isinstance(out_type, list) and in_type == "COMBO":
        return True
    if isinstance(out_type, str) and isinstance(in_type, str):
        return bool(set(out_type.split(",")) & set(in_type.split(",")))
    return False


def _short(io_type) -> str:
    return f"a list of {len(io_type)} options" if isinstance(io_type, list) else str(io_type)


def validate_api(graph: dict, object_info: dict) -> list[str]:
    """Problems that would make ComfyUI reject or misread this API-format graph."""
    problems = []
    for node_id, node in graph.items():
        where = f"node {node_id} ({node.get('class_type')})"
        info = object_info.get(node.get("class_type"))
        if info is None:
            problems.append(f"{where}: unknown node type")
            continue
        specs = _input_specs(info)
        for name in info["input"].get("required", {}):
            if name not in node["inputs"]:
                problems.append(f"{where}: required input '{name}' missing")
        for name, value in node["inputs"].items():
            spec = specs.get(name)
            if spec is None:
                problems.append(f"{where}: no input named '{name}'")
            elif isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                src = graph.get(value[0])
                if src is None or src.get("class_type") not in object_info:
                    problems.append(f"{where}: input '{name}' links to missing node {value[0]}")
                    continue
                outputs = object_info[src["class_type"]]["output"]
                if value[1] >= len(outputs):
                    problems.append(f"{where}: input '{name}' links to output {value[1]} of a node with {len(outputs)}")
                    continue
                out_type, in_type = outputs[value[1]], spec[0]
                if not link_accepted(out_type, in_type):
                    problems.append(f"{where}: input '{name}' wants {_short(in_type)} but gets {_short(out_type)}")
            else:
                options = _combo_options(spec)
                if options is not None and not _is_file_list(options) and value not in options:
                    problems.append(f"{where}: '{name}' = {value!r} is not one of its options")
    return problems


MODEL_FILE_INPUTS = {"ckpt_name", "lora_name", "unet_name", "clip_name", "vae_name"}


def with_missing_model_files(graph: dict) -> dict:
    """A copy of an API graph whose model-file inputs name files no server has: POST /prompt
    then validates everything (links included) and refuses it without running anything."""
    out = {}
    for node_id, node in graph.items():
        inputs = {k: (f"not-on-this-server-{v}" if k in MODEL_FILE_INPUTS and isinstance(v, str) else v)
                  for k, v in node["inputs"].items()}
        out[node_id] = {**node, "inputs": inputs}
    return out


def errors_besides_missing_model_files(graph: dict, rejection: dict) -> list[tuple]:
    """(node id, error type, details) of a POST /prompt refusal, leaving out the errors a
    server without the workflow's model files gives: a file input's value not in its list,
    and FewStepLoraLoader's own check naming the missing LoRA file (ComfyUI repeats that
    one for each input its validate_inputs declares)."""
    other = []
    for node_id, entry in (rejection.get("node_errors") or {}).items():
        for e in entry.get("errors", []):
            field = (e.get("extra_info") or {}).get("input_name")
            if e["type"] == "value_not_in_list" and field in MODEL_FILE_INPUTS:
                continue
            lora = graph.get(node_id, {}).get("inputs", {}).get("lora_name")
            if (e["type"] == "custom_validation_failed" and entry.get("class_type") == "FewStepLoraLoader"
                    and isinstance(lora, str) and lora in e.get("details", "")):
                continue
            other.append((node_id, e["type"], e.get("details")))
    return other


def validate_ui(workflow: dict, object_info: dict) -> list[str]:
    """Problems that would make the frontend show missing nodes or broken links."""
    problems = []
    nodes = {n["id"]: n for n in workflow.get("nodes", [])}
    for node in nodes.values():
        where = f"node {node['id']} ({node.get('type')})"
        info = object_info.get(node.get("type"))
        if info is None:
            problems.append(f"{where}: unknown node type")
            continue
        specs = _input_specs(info)
        for inp in node.get("inputs", []):
            if inp["name"] not in specs:
                problems.append(f"{where}: no input named '{inp['name']}'")
        for i, out in enumerate(node.get("outputs", [])):
            if i >= len(info["output"]) or out.get("type") not in (info["output"][i], "*") and not isinstance(info["output"][i], list):
                problems.append(f"{where}: output {i} is {out.get('type')}, server says {info['output'][i:i + 1]}")
    for link in workflow.get("links", []):
        link_id, src, src_slot, dst, dst_slot, link_type = link[:6]
        if src not in nodes or dst not in nodes:
            problems.append(f"link {link_id}: joins missing nodes {src} -> {dst}")
    return problems

"""`make demo`: the whole pack, headless, through a real ComfyUI server and the shipped
workflows (workflows/api/), on the built-in digits teacher:

1. fewstep_demo: FewStep TeaCache against the plain teacher, in FewStepABTest;
2. distill_then_use: a short in-graph distillation that saves a student LoRA;
3. use_distilled_lora: that LoRA through FewStepLoraLoader (the preset read from its
   metadata), against the teacher in FewStepABTest.

Writes .runtime/demo/index.html with every picture and report, and prints its path. Exits
non-zero when a step fails or a saved image is a uniform frame. `--ckpt` runs the same
three steps on a real checkpoint (a GPU is advised): generic prompts at `--size` px.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import comfy_runtime as rt
from .demo_page import Picture, Section, render, write
from .workflows import WORKFLOWS, load, nodes_of

OUT = rt.RUNTIME_DIR / "demo"
REAL_PROMPTS = ("a photo of a red fox in the snow", "a bowl of ramen on a wooden table, studio light",
                "a lighthouse on a cliff at sunset", "portrait of an old fisherman, detailed")


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    workflow: str
    what: str


STEPS = (
    Step("teacache", "1. FewStep TeaCache against the teacher", "fewstep_demo",
         "The teacher's own settings (30 steps, cfg 5) with and without FewStep TeaCache (threshold 0.1), from "
         "identical noise in FewStepABTest: median sampling time, model calls, PSNR and SSIM."),
    Step("distill", "2. Distilling a 4-step, cfg-1 student in the graph", "distill_then_use",
         "FewStepDistillTrainer samples the teacher at 30 steps and cfg 5, then trains a LoRA so that 4 steps at cfg 1 "
         "reproduce it, saves it into the loras folder and samples with it in the same graph. This is the short "
         "setting the workflow ships with; the README's Distill section gives the full recipe's numbers."),
    Step("student", "3. The saved LoRA through FewStep LoRA Loader, against the teacher", "use_distilled_lora",
         "FewStepLoraLoader reads the preset (steps, cfg, sampler, scheduler) from the file's metadata and hands it to "
         "KSampler and to branch B of FewStepABTest; branch A is the teacher at 30 steps and cfg 5."),
)


def image_stats(png: bytes) -> tuple[float, float]:
    import numpy as np
    from PIL import Image

    arr = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32) / 255
    return float(arr.mean()), float(arr.std())


def api_graph(step: Step) -> dict:
    return load(WORKFLOWS / "api" / f"{step.workflow}.json")


def on_checkpoint(graph: dict, ckpt_name: str, size: int) -> dict:
    """The same graph on another checkpoint: its name, `size` px, generic prompts."""
    for node in graph.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = ckpt_name
        if kind in ("EmptyLatentImage", "FewStepDistillTrainer"):
            inputs.update(width=size, height=size)
        if kind == "FewStepDistillTrainer":
            inputs["prompts"] = "\n".join(REAL_PROMPTS)
        if kind == "CLIPTextEncode" and inputs.get("text"):
            inputs["text"] = REAL_PROMPTS[0]
    return graph


class Demo:
    def __init__(self, base: Path, client, pictures: Path):
        self.base, self.client, self.pictures = base, client, pictures
        self.ok = True

    def run(self, step: Step, graph: dict) -> tuple[Section, object]:
        section = Section(step.title, f"{step.what} Workflow: workflows/{step.workflow}.json.")
        print(f"[demo] {step.title} (workflows/api/{step.workflow}.json)", flush=True)
        started = time.perf_counter()
        result = self.client.run(graph, timeout=3600)
        seconds = time.perf_counter() - started
        if result.status != "success":
            section.failed = json.dumps(result.error, indent=1)
            print(f"[demo] the workflow failed: {section.failed}", file=sys.stderr)
            self.ok = False
            return section, result
        for node_id, output in sorted(result.outputs.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0):
            kind = graph[node_id]["class_type"]
            for text in output.get("text", []):
                section.numbers.append(f"{kind} (node {node_id}):\n{text}")
                print(f"[demo] {kind} (node {node_id}): {text}")
            for i, ref in enumerate(output.get("images", [])):
                section.pictures.append(self.keep(step, node_id, kind, graph[node_id]["inputs"], i, ref))
        for stats in result.events_of("fewstep.cache_stats")[-1:]:
            line = (f"FewStep TeaCache, last run: skipped {stats['skipped']}/{stats['calls']} model calls "
                    f"(estimated {stats['speedup']:.2f}x)")
            section.numbers.append(line)
            print(f"[demo] {line}")
        section.numbers.append(f"workflow wall time: {seconds:.1f} s")
        print(f"[demo] ran in {seconds:.1f} s", flush=True)
        return section, result

    def keep(self, step: Step, node_id: str, kind: str, inputs: dict, i: int, ref: dict) -> Picture:
        raw = self.client.view(ref["filename"], ref["subfolder"], ref["type"])
        name = f"{step.key}_{node_id}_{i}.png"
        (self.pictures / name).write_bytes(raw)
        caption = f"{kind} (node {node_id})" + (f": {inputs['filename_prefix']}" if "filename_prefix" in inputs else "")
        if kind == "SaveImage":
            mean, std = image_stats(raw)
            if std <= 0.02:
                self.ok = False
                caption += " - DEGENERATE (uniform frame)"
            print(f"[demo] saved {self.base / ref['type'] / ref['subfolder'] / ref['filename']} "
                  f"(mean {mean:.2f}, std {std:.2f})")
        return Picture(f"pictures/{name}", caption)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="a real checkpoint file to run the demo on (default: the built-in teacher)")
    parser.add_argument("--size", type=int, default=512, help="image size with --ckpt (default 512)")
    parser.add_argument("--iterations", type=int, help="training iterations of step 2 (default: the workflow's)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT})")
    parser.add_argument("--models", type=Path, default=rt.REPO_ROOT / "models",
                        help="ComfyUI models folder the server uses; the trained LoRA lands in its loras/ "
                        "(default: the repo's models/, which `make serve` uses too)")
    args = parser.parse_args(argv)
    try:
        rt.find_comfyui()
    except rt.ComfyUINotFound as e:
        print(e, file=sys.stderr)
        return 2
    from .default_model import install_default_models
    from .server import ComfyServer, prepare_base_directory

    base = prepare_base_directory(args.out, models=args.models)
    print("[demo] preparing the built-in default model (trained once, then cached)", flush=True)
    install_default_models(base / "models")
    graphs = {s.key: api_graph(s) for s in STEPS}
    model_note = "the built-in digits teacher (32 px)"
    if args.ckpt:
        ckpt = Path(args.ckpt).expanduser().resolve()
        if not ckpt.is_file():
            print(f"[demo] --ckpt {ckpt} is not a file", file=sys.stderr)
            return 2
        target = base / "models" / "checkpoints" / ckpt.name
        if not target.exists():
            target.symlink_to(ckpt)
        graphs = {k: on_checkpoint(g, ckpt.name, args.size) for k, g in graphs.items()}
        model_note = f"{ckpt.name} at {args.size} px"
    if args.iterations:
        for i in nodes_of(graphs["distill"], "FewStepDistillTrainer"):
            graphs["distill"][i]["inputs"]["iterations"] = args.iterations
    pictures = base / "pictures"
    shutil.rmtree(pictures, ignore_errors=True)
    pictures.mkdir(parents=True)
    print(f"[demo] starting ComfyUI with FewStep (log: {base / 'server.log'})", flush=True)
    started = time.perf_counter()
    with ComfyServer(base) as server:
        demo = Demo(base, server.client(), pictures)
        sections = []
        teacache, _ = demo.run(STEPS[0], graphs["teacache"])
        distill, trained = demo.run(STEPS[1], graphs["distill"])
        sections += [teacache, distill]
        report = next((t for t in distill.numbers if t.startswith("FewStepDistillTrainer")), "")
        produced = re.search(r"FewStep Distill: (\S+\.safetensors) ", report)
        if produced:
            use = graphs["student"]
            for i in nodes_of(use, "FewStepLoraLoader"):
                use[i]["inputs"]["lora_name"] = produced.group(1)
            student, _ = demo.run(STEPS[2], use)
            sections.append(student)
        else:
            demo.ok = False
            sections.append(Section(STEPS[2].title, STEPS[2].what, failed="step 2 saved no LoRA"))
    total = time.perf_counter() - started
    page = write(base / "index.html", render(
        "FewStep demo", f"Three shipped workflows run through a real ComfyUI server on {model_note}.", sections,
        f"Made by `make demo` in {total:.0f} s (server start included). Pictures are the nodes' own outputs."))
    print(f"[demo] {'done' if demo.ok else 'FAILED'} in {total:.0f} s; open {page}", flush=True)
    return 0 if demo.ok else 1


if __name__ == "__main__":
    sys.exit(main())

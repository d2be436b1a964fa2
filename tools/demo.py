"""`make demo`: the main job, headless, through a real ComfyUI server.

Runs workflows/api/fewstep_demo.json on the built-in digits teacher: the reference
(30 steps, cfg 5) and the same sampling through FewStep TeaCache, compared by
FewStepCompare, and saves both images; prints the skipped calls TeaCache reported on the
websocket. Exits non-zero if anything fails or an image is degenerate.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time

from . import comfy_runtime as rt

DEMO_WORKFLOW = rt.REPO_ROOT / "workflows" / "api" / "fewstep_demo.json"


def image_stats(png: bytes) -> tuple[float, float]:
    import numpy as np
    from PIL import Image

    arr = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32) / 255
    return float(arr.mean()), float(arr.std())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflow", default=str(DEMO_WORKFLOW))
    args = parser.parse_args(argv)
    try:
        rt.find_comfyui()
    except rt.ComfyUINotFound as e:
        print(e, file=sys.stderr)
        return 2
    from .default_model import install_default_models
    from .server import ComfyServer, prepare_base_directory

    base = prepare_base_directory(rt.RUNTIME_DIR / "demo", models=rt.REPO_ROOT / "models")
    print("[demo] preparing the built-in default model (trained once, then cached)", flush=True)
    install_default_models(base / "models")
    graph = json.loads(open(args.workflow).read())
    print(f"[demo] starting ComfyUI with FewStep (log: {base / 'server.log'})", flush=True)
    with ComfyServer(base) as server:
        client = server.client()
        started = time.perf_counter()
        result = client.run(graph)
        elapsed = time.perf_counter() - started
        if result.status != "success":
            print(f"[demo] the workflow failed: {json.dumps(result.error, indent=1)}", file=sys.stderr)
            return 1
        ok = True
        for node_id, output in sorted(result.outputs.items()):
            for text in output.get("text", []):
                print(f"[demo] {graph[node_id]['class_type']} (node {node_id}): {text}")
            for ref in output.get("images", []):
                mean, std = image_stats(client.view(ref["filename"], ref["subfolder"], ref["type"]))
                path = base / ref["type"] / ref["subfolder"] / ref["filename"]
                verdict = "ok" if std > 0.02 else "DEGENERATE (uniform frame)"
                ok &= std > 0.02
                print(f"[demo] saved {path}  (mean {mean:.2f}, std {std:.2f}: {verdict})")
        for stats in result.events_of("fewstep.cache_stats"):
            print(f"[demo] FewStep TeaCache skipped {stats['skipped']}/{stats['calls']} model calls "
                  f"(estimated {stats['speedup']:.2f}x)")
        print(f"[demo] workflow ran in {elapsed:.1f} s on {server.url}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

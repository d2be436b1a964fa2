"""Write workflows/<name>.json (UI format) from workflows/api/<name>.json via the real frontend.

The ComfyUI frontend itself converts the API graph (`app.loadApiJson`), lays it out and
serialises it, so the UI files are exactly what a user's browser would save. Run after
changing an API workflow:  .venv/bin/python -P -m comfyui_fewstep.tools.export_ui_workflows
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from .server import ComfyServer, prepare_base_directory
from .workflows import WORKFLOWS, api_workflows

# Models a workflow needs, for the frontend's missing-model download dialog:
# file name -> (models subfolder, download url). Models this pack builds (the digits
# teacher) are not listed: there is nothing to download.
# LoRAs published as `pytorch_lora_weights.safetensors` get a telling name here (a browser
# download keeps the URL's name: rename the file to the one listed).
_HF = "https://huggingface.co"
MODEL_SOURCES: dict[str, tuple[str, str]] = {
    "v1-5-pruned-emaonly-fp16.safetensors": (
        "checkpoints", f"{_HF}/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors"),
    "sd_xl_base_1.0.safetensors": (
        "checkpoints", f"{_HF}/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors"),
    "lcm-lora-sdv1-5.safetensors": (
        "loras", f"{_HF}/latent-consistency/lcm-lora-sdv1-5/resolve/main/pytorch_lora_weights.safetensors"),
    "Hyper-SD15-8steps-lora.safetensors": (
        "loras", f"{_HF}/ByteDance/Hyper-SD/resolve/main/Hyper-SD15-8steps-lora.safetensors"),
    "TCD-SD15-LoRA.safetensors": ("loras", f"{_HF}/h1t/TCD-SD15-LoRA/resolve/main/pytorch_lora_weights.safetensors"),
    "dmd2_sdxl_4step_lora_fp16.safetensors": (
        "loras", f"{_HF}/tianweiy/DMD2/resolve/main/dmd2_sdxl_4step_lora_fp16.safetensors"),
    "sdxl_lightning_4step_lora.safetensors": (
        "loras", f"{_HF}/ByteDance/SDXL-Lightning/resolve/main/sdxl_lightning_4step_lora.safetensors"),
    "Qwen-Image-Lightning-8steps-V1.0.safetensors": (
        "loras", f"{_HF}/lightx2v/Qwen-Image-Lightning/resolve/main/Qwen-Image-Lightning-8steps-V1.0.safetensors"),
    "qwen_image_fp8_e4m3fn.safetensors": (
        "diffusion_models",
        f"{_HF}/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/diffusion_models/qwen_image_fp8_e4m3fn.safetensors"),
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": (
        "text_encoders",
        f"{_HF}/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors"),
    "qwen_image_vae.safetensors": (
        "vae", f"{_HF}/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/vae/qwen_image_vae.safetensors"),
}


def attach_model_hints(workflow: dict) -> None:
    """List each workflow's model files in properties.models, as core templates do."""
    for node in workflow["nodes"]:
        for value in node.get("widgets_values") or []:
            if isinstance(value, str) and value in MODEL_SOURCES:
                directory, url = MODEL_SOURCES[value]
                entry = {"name": value, "url": url, "directory": directory}
                node.setdefault("properties", {}).setdefault("models", []).append(entry)


def export(page, api_path: Path) -> Path:
    graph = json.loads(api_path.read_text())
    ui = page.evaluate(
        """async ([graph, name]) => {
             await app.loadApiJson(graph, name);
             app.graph.arrange();
             return app.graph.serialize();
           }""", [graph, api_path.stem])
    attach_model_hints(ui)
    out = WORKFLOWS / api_path.name
    out.write_text(json.dumps(ui, indent=1) + "\n")
    return out


def main(argv=None) -> int:
    import argparse

    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="workflow names (file stems) to export; default: all")
    names = set(parser.parse_args(argv).names)

    from .browser import launch
    from .default_model import install_default_models

    with tempfile.TemporaryDirectory() as tmp:
        base = prepare_base_directory(Path(tmp))
        install_default_models(base / "models")
        with ComfyServer(base) as server, sync_playwright() as pw:
            client = server.client()
            client._request("/settings/Comfy.TutorialCompleted", True)
            browser = launch(pw)
            page = browser.new_page()
            page.goto(server.url)
            page.wait_for_function("() => window.app && app.graph && app.extensions.length > 0", timeout=90_000)
            for api_path in api_workflows():
                if names and api_path.stem not in names:
                    continue
                print(f"wrote {export(page, api_path)}")
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

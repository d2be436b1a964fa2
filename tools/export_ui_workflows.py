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
# file name -> (models subfolder, download url or None when it is built locally).
MODEL_SOURCES: dict[str, tuple[str, str | None]] = {}


def attach_model_hints(workflow: dict) -> None:
    """List each workflow's model files in properties.models, as core templates do."""
    for node in workflow["nodes"]:
        for value in node.get("widgets_values") or []:
            if isinstance(value, str) and value in MODEL_SOURCES:
                directory, url = MODEL_SOURCES[value]
                entry = {"name": value, "directory": directory}
                if url:
                    entry["url"] = url
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


def main() -> int:
    from playwright.sync_api import sync_playwright

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
                print(f"wrote {export(page, api_path)}")
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

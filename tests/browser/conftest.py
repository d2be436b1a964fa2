"""The browser tier: one chromium page on the session's ComfyUI server per test module.

A module that needs files in place before the frontend loads (the LoRA list is read once,
at page load) or another window size overrides `page_options`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PACK_URL_PART = "/extensions/comfyui-fewstep/"
PACK_EXTENSIONS = ("FewStep.CacheStats", "FewStep.Compare", "FewStep.DistillChart", "FewStep.PresetBadge")


@pytest.fixture(scope="module")
def page_options(server) -> dict:
    """Keyword arguments of Playwright's new_context for this module's page."""
    return {"viewport": {"width": 1400, "height": 900}}


def settle_user_settings(client) -> None:
    """A fresh user directory opens the Templates dialog and the missing-models warning;
    a real user dismisses them once."""
    client._request("/settings/Comfy.TutorialCompleted", True)
    client._request("/settings/Comfy.Workflow.ShowMissingModelsWarning", False)


@pytest.fixture(scope="module")
def page(server, artifacts, page_options, request):
    """The ComfyUI frontend with every FewStep extension loaded and an empty graph.

    `page.fewstep_errors` collects console errors and page errors raised by the pack's own
    files; tests assert it stays empty."""
    from playwright.sync_api import sync_playwright

    from comfyui_fewstep.tools.browser import launch

    settle_user_settings(server.client())
    with sync_playwright() as pw:
        browser = launch(pw)
        pg = browser.new_context(**page_options).new_page()
        pg.fewstep_errors = []

        def on_console(msg):
            where = msg.location.get("url", "") if msg.location else ""
            if msg.type == "error" and (PACK_URL_PART in where or PACK_URL_PART in msg.text):
                pg.fewstep_errors.append(f"{where}: {msg.text}")

        pg.on("console", on_console)
        pg.on("pageerror", lambda exc: PACK_URL_PART in (exc.stack or "") and pg.fewstep_errors.append(str(exc)))
        pg.goto(server.url, wait_until="domcontentloaded")
        pg.wait_for_function("(names) => window.app && app.graph && window.LiteGraph && app.extensions"
                             " && names.every(n => app.extensions.some(e => e.name === n))",
                             arg=list(PACK_EXTENSIONS), timeout=90_000)
        pg.evaluate("() => app.graph.clear()")
        try:
            yield pg
        finally:
            pg.screenshot(path=str(artifacts / f"browser-{request.module.__name__.rsplit('.', 1)[-1]}-final.png"))
            browser.close()


@pytest.fixture
def node_screenshot(artifacts):
    """`node_screenshot(page, name, locate, bottom=None)`: see take_node_screenshot."""
    return lambda page, name, locate, bottom=None: take_node_screenshot(page, artifacts, name, locate, bottom)


def take_node_screenshot(page, artifacts: Path, name: str, locate: str, bottom: int | None = None,
                         margin: int = 12) -> Path:
    """Picture of one node as a user sees it (title, body, DOM widgets), cropped from the page
    at canvas zoom 1, written to tests/artifacts/node-<name>. With FEWSTEP_UPDATE_SCREENSHOTS=1
    (`make screenshots`) it also replaces docs/screenshots/<name>, which the README shows.
    `locate` is a JS expression for the node; `bottom` keeps only the node's lowest pixels
    (a tall node's chart)."""
    from comfyui_fewstep.tools import screenshots

    box = page.evaluate(f"""([m, bottom]) => {{ const n = {locate}, c = app.canvas, title = LiteGraph.NODE_TITLE_HEIGHT;
        const r = c.canvas.getBoundingClientRect();
        const top = bottom ? n.pos[1] + n.size[1] - bottom : n.pos[1] - title;  // graph coordinates
        // the crop's top left at page (120, 140): clear of the side bar, tabs and run toolbar
        c.ds.scale = 1; c.ds.offset = [120 - r.left - n.pos[0], 140 - r.top - top];
        c.setDirty(true, true); c.draw(true, true);
        return {{x: 120 - m, y: 140 - m, width: n.size[0] + 2 * m,
                 height: (bottom || n.size[1] + title) + 2 * m}}; }}""", [margin, bottom])
    viewport = page.viewport_size
    assert box["x"] + box["width"] <= viewport["width"] and box["y"] + box["height"] <= viewport["height"], (
        f"node {name} ({box}) does not fit the {viewport} page: give the module a larger page_options viewport")
    page.wait_for_timeout(300)  # DOM widgets follow the canvas on the next animation frame
    out = artifacts / f"node-{name}"
    page.screenshot(path=str(out), clip=box)
    if screenshots.update_requested():
        screenshots.SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        partial = screenshots.SCREENSHOT_DIR / f".{name}.partial"
        shutil.copyfile(out, partial)
        os.replace(partial, screenshots.SCREENSHOT_DIR / name)
    return out

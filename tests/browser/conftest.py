"""The browser tier: one chromium page on the session's ComfyUI server per test module.

A module that needs files in place before the frontend loads (the LoRA list is read once,
at page load) or another window size overrides `page_options`.
"""

from __future__ import annotations

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

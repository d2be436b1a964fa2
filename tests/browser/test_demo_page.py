"""`make demo` end to end (its own server, the shipped workflows, a short distillation), then
its one-page report in chromium: it loads, every picture loads, no console errors."""

from __future__ import annotations

import pytest

from comfyui_fewstep.tools import demo

pytestmark = pytest.mark.timeout(3600)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    code = demo.main(["--out", str(out), "--models", str(out / "own_models"), "--iterations", "4"])
    return code, out


def test_the_demo_runs_every_step_and_its_page_loads_with_every_picture(demo_run, artifacts):
    from playwright.sync_api import sync_playwright

    from comfyui_fewstep.tools.browser import launch

    code, out = demo_run
    assert code == 0
    page_file = out / "index.html"
    assert page_file.is_file() and not list(out.glob(".*.partial"))
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors = []
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            failed = []
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load")
            titles = page.locator("h2").all_inner_texts()
            assert [t.split(".")[0] for t in titles] == ["1", "2", "3"], titles
            assert page.locator(".failed").count() == 0
            pictures = page.evaluate("() => [...document.images].map(i => [i.getAttribute('src'), i.complete, "
                                     "i.naturalWidth])")
            # step 1: the A/B comparison (node preview + saved); 2: loss curve, comparison grid, samples;
            # 3: samples, the A/B comparison
            assert len(pictures) >= 6 and all(ok and width > 0 for _, ok, width in pictures), pictures
            text = page.inner_text("body")
            assert "speedup" in text and "FewStep Distill:" in text and "PSNR" in text
            assert errors == [] and failed == []
            page.screenshot(path=str(artifacts / "demo-page.png"), full_page=True)
        finally:
            browser.close()

"""The TeaCache stats reach the node in the real ComfyUI frontend (Debian's chromium)."""

import json

import pytest

from comfyui_fewstep.tools.graphs import txt2img

PACK_URL_PART = "/extensions/comfyui-fewstep/"


@pytest.fixture(scope="module")
def page(server, artifacts):
    from playwright.sync_api import sync_playwright

    from comfyui_fewstep.tools.browser import launch

    client = server.client()
    client._request("/settings/Comfy.TutorialCompleted", True)
    client._request("/settings/Comfy.Workflow.ShowMissingModelsWarning", False)
    with sync_playwright() as pw:
        browser = launch(pw)
        pg = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        pg.fewstep_errors = []

        def on_console(msg):
            where = msg.location.get("url", "") if msg.location else ""
            if msg.type == "error" and (PACK_URL_PART in where or PACK_URL_PART in msg.text):
                pg.fewstep_errors.append(f"{where}: {msg.text}")

        pg.on("console", on_console)
        pg.on("pageerror", lambda exc: PACK_URL_PART in (exc.stack or "") and pg.fewstep_errors.append(str(exc)))
        pg.goto(server.url, wait_until="domcontentloaded")
        pg.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=90_000)
        pg.wait_for_function("() => app.extensions && app.extensions.length > 0", timeout=60_000)
        yield pg
        browser.close()


def test_stats_appear_on_the_teacache_node_after_a_run(page, artifacts):
    assert "FewStep.CacheStats" in page.evaluate("() => app.extensions.map(e => e.name)")
    g, ids = txt2img("tiny-sd15.safetensors", prompt="seven", seed=31, steps=12, save_prefix=None)
    tc = g.add("FewStepTeaCache", model=g.out(ids["ckpt"]), threshold=0.4, start_percent=0.0, end_percent=1.0,
               max_consecutive_skips=0, model_family="auto", cache_device="auto", calibration="off")
    g.nodes[ids["sampler"]]["inputs"]["model"] = g.out(tc)
    g.add("PreviewImage", images=g.out(ids["decode"]))
    page.evaluate(f"async () => {{ app.graph.clear(); await app.loadApiJson({json.dumps(g.to_api())}, 'teacache-test'); "
                  f"await app.queuePrompt(0, 1); }}")
    page.wait_for_function(
        """(id) => { const n = app.graph.getNodeById(Number(id));
                     const w = n && n.widgets && n.widgets.find(w => w.name === 'fewstep_cache_stats');
                     return w && String(w.value).startsWith('TeaCache: skipped'); }""", arg=tc, timeout=180_000)
    text = page.evaluate(f"() => app.graph.getNodeById({tc}).widgets.find(w => w.name === 'fewstep_cache_stats').value")
    first = text.splitlines()[0]
    skipped, calls = (int(v) for v in first.split("skipped ")[1].split(" ")[0].split("/"))
    assert calls == 12 and 0 < skipped < 12 and "x)" in first
    assert "sd15 · generic · model input" in text
    stats = page.evaluate(f"() => app.graph.getNodeById({tc}).fewstepCacheStats")
    assert stats["node"] == str(tc) and stats["skipped"] == skipped
    values = page.evaluate(f"() => app.graph.getNodeById({tc}).serialize().widgets_values")
    assert values == [0.4, 0, 1, 0, "auto", "auto", "off"], "the stats display must not be saved as an input"
    page.evaluate(f"() => {{ app.canvas.centerOnNode(app.graph.getNodeById({tc})); app.canvas.setDirty(true, true); }}")
    page.screenshot(path=str(artifacts / "browser-teacache-stats.png"))
    assert page.fewstep_errors == []

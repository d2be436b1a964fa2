"""The pack in the real ComfyUI frontend, in Debian's chromium."""

import json

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from comfyui_fewstep.tools.graphs import txt2img


@pytest.fixture(scope="module")
def page_options(server) -> dict:
    """Tall enough for the whole A/B node (inputs, report and picture) in its screenshot."""
    return {"viewport": {"width": 1400, "height": 1000}}


def test_fewstep_nodes_are_registered_and_extension_loads_cleanly(page, pack_nodes):
    registered = page.evaluate("() => Object.keys(LiteGraph.registered_node_types)")
    assert set(pack_nodes) <= set(registered)
    extensions = page.evaluate("() => app.extensions.map(e => e.name)")
    assert "FewStep.Compare" in extensions
    assert page.fewstep_errors == []


def open_node_search(page):
    """Click, then double-click the empty canvas, as a user does, until the search box shows.

    A busy frontend (a toast, a dialog still closing, the canvas not yet focused) can eat the
    first double-click, and a user would simply double-click again; three tries, then fail."""
    # Frontends up to 1.3x say "Search ..."; 1.49 says "Add a node...".
    search = page.locator("input[placeholder*='Search'], input[placeholder*='Add a node'], "
                          ".comfy-vue-node-search-container input").first
    box = page.locator("canvas#graph-canvas").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for attempt in range(3):
        page.keyboard.press("Escape")
        # Focus the canvas first (1.49 ignores a double-click that only focuses it), then wait out
        # the double-click interval so the focusing click does not pair with the next one.
        page.mouse.click(x, y)
        page.wait_for_timeout(600)
        page.mouse.dblclick(x, y)
        try:
            search.wait_for(timeout=10_000)
            return search
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    return search


def test_node_search_finds_fewstep_nodes(page, artifacts):
    search = open_node_search(page)
    search.fill("FewStep")
    page.get_by_text("FewStep Compare").first.wait_for(timeout=15_000)
    page.screenshot(path=str(artifacts / "browser-node-search.png"))
    page.keyboard.press("Escape")


def test_compare_report_appears_on_the_node_after_a_run(page, artifacts):
    g, ids = txt2img("tiny-sd15.safetensors", prompt="three", seed=21, steps=8, save_prefix=None)
    fast = g.add("KSampler", model=g.out(ids["ckpt"]), seed=21, steps=2, cfg=5.0, sampler_name="euler",
                 scheduler="normal", positive=g.out(ids["positive"]), negative=g.out(ids["negative"]),
                 latent_image=g.out(ids["latent"]), denoise=1.0)
    fast_img = g.add("VAEDecode", samples=g.out(fast), vae=g.out(ids["ckpt"], 2))
    compare = g.add("FewStepCompare", reference=g.out(ids["decode"]), candidate=g.out(fast_img))
    page.evaluate(f"async () => {{ await app.loadApiJson({json.dumps(g.to_api())}, 'fewstep-test'); "
                  f"await app.queuePrompt(0, 1); }}")
    page.wait_for_function(
        """(id) => { const n = app.graph.getNodeById(Number(id));
                     const w = n && n.widgets && n.widgets.find(w => w.name === 'fewstep_report');
                     return w && String(w.value).startsWith('PSNR'); }""", arg=compare, timeout=120_000)
    values = page.evaluate(f"() => app.graph.getNodeById({compare}).widgets_values ?? null")
    assert not values, "the report widget must not be saved into the workflow's widget values"
    page.evaluate(f"() => {{ app.canvas.centerOnNode(app.graph.getNodeById({compare})); app.canvas.setDirty(true, true); }}")
    page.screenshot(path=str(artifacts / "browser-compare-report.png"))
    assert page.fewstep_errors == []


@pytest.mark.screenshot
def test_ab_test_report_and_picture_appear_on_the_node_after_a_run(page, artifacts, node_screenshot):
    """On the built-in teacher (its pictures are the README's screenshot): 30 vs 8 euler steps."""
    from comfyui_fewstep.tools.default_model import DEFAULT_CHECKPOINT
    from comfyui_fewstep.tools.graphs import ab_test
    from comfyui_fewstep.tools.teacher import prompt_for

    g, ids = ab_test(DEFAULT_CHECKPOINT, prompt=prompt_for(7), size=32, seed=7, a=(30, 5.0), b=(8, 5.0), repeats=1,
                     save_prefix=None)
    ab = ids["ab"]
    page.evaluate(f"async () => {{ await app.loadApiJson({json.dumps(g.to_api())}, 'fewstep-ab-test'); "
                  f"await app.queuePrompt(0, 1); }}")
    page.wait_for_function(
        """(id) => { const n = app.graph.getNodeById(Number(id));
                     const w = n && n.widgets && n.widgets.find(w => w.name === 'fewstep_report');
                     return w && String(w.value).startsWith('A/B test') && n.imgs && n.imgs.length > 0; }""",
        arg=ab, timeout=180_000)
    report = page.evaluate(f"() => app.graph.getNodeById({ab}).widgets.find(w => w.name === 'fewstep_report').value")
    for part in ("60 model calls/image", "16 model calls/image", "speedup B vs A", "latent PSNR", "SSIM"):
        assert part in report, (part, report)
    # what a saved workflow holds: seed (re-rolled after queueing), its control, then the rest in order
    values = page.evaluate(f"() => app.graph.serialize().nodes.find(n => n.id === {ab}).widgets_values")
    assert not any("A/B test" in str(v) for v in values), "the report must not be saved as a widget value"
    assert values[2:] == [30, 5, "euler", "normal", 8, 5, "euler", "normal", 1], values
    page.evaluate(f"() => {{ app.canvas.centerOnNode(app.graph.getNodeById({ab})); app.canvas.setDirty(true, true); }}")
    page.screenshot(path=str(artifacts / "browser-ab-test-report.png"))
    node_screenshot(page, "ab-test-report.png", f"app.graph.getNodeById({ab})")
    assert page.fewstep_errors == []


@pytest.mark.parametrize("name", ["lcm_lora_sd15", "hyper_sd15", "tcd_sd15"])
def test_a_shipped_workflow_keeps_its_sampler_links_in_the_frontend_and_the_server_takes_them(page, server, name):
    """The frontend of each ComfyUI version loads the UI workflow with the loader's
    sampler_name/scheduler outputs linked into KSampler, and the prompt it makes passes the
    server's link check (from ComfyUI 0.8.0 a "COMBO"-typed output would be refused)."""
    from comfyui_fewstep.tools.server import PromptRejected
    from comfyui_fewstep.tools.workflows import (WORKFLOWS, errors_besides_missing_model_files, load,
                                                  with_missing_model_files)

    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", load(WORKFLOWS / f"{name}.json"))
    links = page.evaluate("""() => {
        const g = app.graph, ks = g._nodes.find(n => n.type === 'KSampler');
        const link = id => (g.links.get ? g.links.get(id) : g.links[id]);  // a Map in newer frontends
        return Object.fromEntries(ks.inputs.filter(i => ['sampler_name', 'scheduler'].includes(i.name))
            .map(i => [i.name, i.link == null ? null : g.getNodeById(link(i.link).origin_id).type]));
    }""")
    assert links == {"sampler_name": "FewStepLoraLoader", "scheduler": "FewStepLoraLoader"}
    prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    ks = next(n for n in prompt.values() if n["class_type"] == "KSampler")
    assert isinstance(ks["inputs"]["sampler_name"], list) and isinstance(ks["inputs"]["scheduler"], list)
    prompt = with_missing_model_files(prompt)  # validated, never run
    with pytest.raises(PromptRejected) as refused:
        server.client().queue(prompt)
    assert refused.value.payload.get("node_errors"), refused.value.payload
    assert errors_besides_missing_model_files(prompt, refused.value.payload) == []
    page.evaluate("() => app.graph.clear()")

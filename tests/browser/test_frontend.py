"""The pack in the real ComfyUI frontend, in Debian's chromium."""

import json

from comfyui_fewstep.tools.graphs import txt2img


def test_fewstep_nodes_are_registered_and_extension_loads_cleanly(page, pack_nodes):
    registered = page.evaluate("() => Object.keys(LiteGraph.registered_node_types)")
    assert set(pack_nodes) <= set(registered)
    extensions = page.evaluate("() => app.extensions.map(e => e.name)")
    assert "FewStep.Compare" in extensions
    assert page.fewstep_errors == []


def test_node_search_finds_fewstep_nodes(page, artifacts):
    page.mouse.dblclick(700, 450)  # double-click on empty canvas opens node search
    search = page.locator("input[placeholder*='Search'], .comfy-vue-node-search-container input").first
    search.wait_for(timeout=15_000)
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

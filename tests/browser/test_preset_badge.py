"""The LoRA preset badge in the real ComfyUI frontend (Debian's chromium): pick a LoRA in
FewStepLoraLoader's combo, see the recognised preset on the node, click once to write it
into the KSamplers the node's MODEL feeds (through other model nodes too), and nothing
else changes."""

import json

import pytest

from comfyui_fewstep.tools.graphs import Graph
from comfyui_fewstep.tools.synth_loras import fewstep_metadata, tiny_sd15_lora, write_lora

TAGGED = "browser_tagged.safetensors"  # generic name: recognised by its FewStep metadata
PLAIN = "browser_plain.safetensors"  # no metadata, no known hash or name: unknown


@pytest.fixture(scope="module")
def page_options(server):
    """The LoRAs exist before the page loads: the frontend reads the LoRA list once."""
    folder = server.base / "models" / "loras"
    write_lora(folder / TAGGED, tiny_sd15_lora(seed=21), fewstep_metadata("tcd-lora", steps=6))
    write_lora(folder / PLAIN, tiny_sd15_lora(seed=22))
    return {"viewport": {"width": 1600, "height": 1000}}


def graph():
    """Loader MODEL -> KSampler A directly and -> ModelSamplingDiscrete -> KSampler B; KSampler C
    is fed by the checkpoint alone and must not change."""
    g = Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name="tiny-sd15.safetensors")
    lora = g.add("FewStepLoraLoader", model=g.out(ckpt), clip=g.out(ckpt, 1), lora_name=PLAIN, strength_model=1.0,
                 strength_clip=1.0, preset="auto", steps=-1)
    pos = g.add("CLIPTextEncode", text="seven", clip=g.out(lora, 1))
    neg = g.add("CLIPTextEncode", text="", clip=g.out(lora, 1))
    latent = g.add("EmptyLatentImage", width=64, height=64, batch_size=1)
    patched = g.add("ModelSamplingDiscrete", model=g.out(lora), sampling="eps", zsnr=False)
    ids = {"lora": lora}
    for key, model in (("a", g.out(lora)), ("b", g.out(patched)), ("c", g.out(ckpt))):
        ids[key] = g.add("KSampler", model=model, seed=1, steps=30, cfg=7.5, sampler_name="dpmpp_2m",
                         scheduler="karras", positive=g.out(pos), negative=g.out(neg), latent_image=g.out(latent),
                         denoise=1.0)
    return g, ids


def sampler_values(page, node_id):
    return page.evaluate("""(id) => Object.fromEntries(app.graph.getNodeById(id).widgets
        .filter(w => ['steps', 'cfg', 'sampler_name', 'scheduler'].includes(w.name)).map(w => [w.name, w.value]))""",
                         int(node_id))


def pick_in_combo(page, node_id, widget_name, value):
    """Click the combo widget on the canvas and choose `value` from its menu, as a user does."""
    x, y = page.evaluate(
        """([id, name]) => {
             const node = app.graph.getNodeById(id);
             app.canvas.ds.scale = 1;
             app.canvas.ds.offset = [40 - node.pos[0], 120 - node.pos[1]];
             app.canvas.setDirty(true, true);
             app.canvas.draw(true, true);
             const w = node.widgets.find(w => w.name === name);
             const [cx, cy] = app.canvas.ds.convertOffsetToCanvas(
               [node.pos[0] + node.size[0] / 2, node.pos[1] + (w.last_y ?? w.y) + 10]);
             const rect = app.canvas.canvas.getBoundingClientRect();
             return [rect.left + cx, rect.top + cy];
           }""", [int(node_id), widget_name])
    page.mouse.click(x, y)
    page.locator(".litecontextmenu .litemenu-entry", has_text=value).first.click()


def badge_text(page, node_id):
    return page.evaluate("(id) => app.graph.getNodeById(id).fewstepBadge?.text.textContent ?? null", int(node_id))


@pytest.mark.screenshot
def test_picking_a_lora_shows_the_badge_and_one_click_applies_it(page, artifacts, node_screenshot):
    g, ids = graph()
    page.evaluate(f"async () => {{ await app.loadApiJson({json.dumps(g.to_api())}, 'fewstep-badge'); }}")
    page.wait_for_function("(id) => app.graph.getNodeById(id)?.fewstepBadge?.text.textContent.startsWith('Unknown LoRA')",
                           arg=int(ids["lora"]), timeout=30_000)
    assert badge_text(page, ids["lora"]).startswith("Unknown LoRA (sd15, rank 4)")
    assert page.locator(".fewstep-apply").first.is_disabled()

    pick_in_combo(page, ids["lora"], "lora_name", TAGGED)
    page.wait_for_function("(id) => app.graph.getNodeById(id).fewstepBadge.text.textContent.startsWith('TCD LoRA')",
                           arg=int(ids["lora"]), timeout=30_000)
    assert page.evaluate(f"() => app.graph.getNodeById({ids['lora']}).widgets.find(w => w.name === 'lora_name').value") == TAGGED
    assert badge_text(page, ids["lora"]) == "TCD LoRA \u00b7 6 steps \u00b7 cfg 1 \u00b7 tcd/simple"
    badge = page.locator(".fewstep-badge").filter(has_text="TCD LoRA").first
    badge.wait_for(state="visible", timeout=10_000)
    page.screenshot(path=str(artifacts / "browser-preset-badge.png"))
    node_screenshot(page, "preset-badge.png", f"app.graph.getNodeById({ids['lora']})")

    before_c = sampler_values(page, ids["c"])
    badge.locator(".fewstep-apply").click()
    page.wait_for_function("() => [...document.querySelectorAll('.fewstep-apply')].some(b => b.textContent === 'Applied to 2 KSamplers')",
                           timeout=10_000)
    expected = {"steps": 6, "cfg": 1.0, "sampler_name": "tcd", "scheduler": "simple"}
    assert sampler_values(page, ids["a"]) == expected
    assert sampler_values(page, ids["b"]) == expected  # reached through ModelSamplingDiscrete
    assert sampler_values(page, ids["c"]) == before_c == {"steps": 30, "cfg": 7.5, "sampler_name": "dpmpp_2m",
                                                          "scheduler": "karras"}
    page.screenshot(path=str(artifacts / "browser-preset-badge-applied.png"))

    # The badge is a display: the node's saved widget values are exactly its inputs.
    saved = page.evaluate(f"() => app.graph.getNodeById({ids['lora']}).serialize().widgets_values")
    assert saved == [TAGGED, 1.0, 1.0, "auto", -1]
    assert page.fewstep_errors == []


def test_the_badge_follows_preset_and_steps_changes(page):
    g, ids = graph()
    page.evaluate(f"async () => {{ await app.loadApiJson({json.dumps(g.to_api())}, 'fewstep-badge-2'); }}")
    lora = int(ids["lora"])
    page.wait_for_function("(id) => app.graph.getNodeById(id)?.fewstepBadge", arg=lora, timeout=30_000)
    page.evaluate("""(id) => { const n = app.graph.getNodeById(id);
        const set = (name, v) => { const w = n.widgets.find(w => w.name === name); w.value = v; w.callback(v); };
        set('preset', 'lcm-lora'); set('steps', 2); }""", lora)
    page.wait_for_function("(id) => app.graph.getNodeById(id).fewstepBadge.text.textContent.startsWith('LCM-LoRA \u00b7 2 steps')",
                           arg=lora, timeout=30_000)
    page.evaluate("""(id) => { const w = app.graph.getNodeById(id).widgets.find(w => w.name === 'steps');
        w.value = 0; w.callback(0); }""", lora)
    page.wait_for_function("(id) => app.graph.getNodeById(id).fewstepBadge.text.textContent.includes('steps 0 cannot run')",
                           arg=lora, timeout=30_000)
    assert page.fewstep_errors == []


def test_a_preset_that_needs_sigmas_points_there_and_does_not_fill_ksampler(page):
    g, ids = graph()
    page.evaluate(f"async () => {{ await app.loadApiJson({json.dumps(g.to_api())}, 'fewstep-badge-3'); }}")
    lora = int(ids["lora"])
    page.wait_for_function("(id) => app.graph.getNodeById(id)?.fewstepBadge", arg=lora, timeout=30_000)
    before = sampler_values(page, ids["a"])
    page.evaluate("""(id) => { const w = app.graph.getNodeById(id).widgets.find(w => w.name === 'preset');
        w.value = 'dmd2-sdxl-1step-unet'; w.callback(w.value); }""", lora)
    page.wait_for_function("(id) => app.graph.getNodeById(id).fewstepBadge.text.textContent.startsWith('DMD2 1-step')",
                           arg=lora, timeout=30_000)
    assert badge_text(page, lora) == "DMD2 1-step UNet \u00b7 1 step \u00b7 cfg 1 \u00b7 sigmas \u2192 SamplerCustom (lcm)"
    button = page.evaluate("(id) => { const b = app.graph.getNodeById(id).fewstepBadge.button;"
                           " return {disabled: b.disabled, title: b.title}; }", lora)
    assert button["disabled"] and "SamplerCustom" in button["title"]
    assert sampler_values(page, ids["a"]) == before
    # Back to a KSampler preset: the button offers to fill KSampler again.
    page.evaluate("""(id) => { const w = app.graph.getNodeById(id).widgets.find(w => w.name === 'preset');
        w.value = 'lcm-lora'; w.callback(w.value); }""", lora)
    page.wait_for_function("(id) => !app.graph.getNodeById(id).fewstepBadge.button.disabled", arg=lora, timeout=30_000)
    assert page.fewstep_errors == []

"""The TeaCache stats reach the node in the real ComfyUI frontend (Debian's chromium)."""

import json

import pytest

from comfyui_fewstep.tools.graphs import txt2img

# The node at an execution path (root graph ids down through subgraph nodes), as the
# frontend resolves it; this is what the stats must land on.
# Ids may be numbers or strings depending on the frontend version; look up either form.
_BY_ID = "(g, id) => g.getNodeById(Number(id)) ?? g.getNodeById(String(id))"
NODE_AT = f"(path) => {{ const byId = {_BY_ID}; return byId(path.slice(0, -1).reduce((g, id) => byId(g, id).subgraph, app.graph), path.at(-1)); }}"
STATS_SHOWN = f"""(path) => {{ const n = ({NODE_AT})(path);
    const w = n && n.widgets && n.widgets.find(w => w.name === 'fewstep_cache_stats');
    return w && String(w.value).startsWith('TeaCache: skipped'); }}"""


def teacache_graph(seed, steps):
    """txt2img on the tiny checkpoint with a TeaCache node between the checkpoint and KSampler."""
    g, ids = txt2img("tiny-sd15.safetensors", prompt="seven", seed=seed, steps=steps, save_prefix=None)
    tc = g.add("FewStepTeaCache", model=g.out(ids["ckpt"]), threshold=0.4, start_percent=0.0, end_percent=1.0,
               max_consecutive_skips=0, model_family="auto", cache_device="auto", calibration="off")
    g.nodes[ids["sampler"]]["inputs"]["model"] = g.out(tc)
    g.add("PreviewImage", images=g.out(ids["decode"]))
    return g, ids, int(tc)


def stats_on(page, path):
    node = f"({NODE_AT})({json.dumps(path)})"
    return page.evaluate(f"""() => {{ const n = {node};
        const w = n.widgets && n.widgets.find(w => w.name === 'fewstep_cache_stats');
        return {{text: w ? w.value : null, stats: n.fewstepCacheStats ?? null,
                 saved: n.serialize().widgets_values}}; }}""")


def skipped_and_calls(text):
    first = text.splitlines()[0]
    skipped, calls = (int(v) for v in first.split("skipped ")[1].split(" ")[0].split("/"))
    return skipped, calls


@pytest.mark.screenshot
def test_stats_appear_on_the_teacache_node_after_a_run(page, artifacts, node_screenshot):
    g, ids, tc = teacache_graph(seed=31, steps=12)
    page.evaluate(f"async () => {{ app.graph.clear(); await app.loadApiJson({json.dumps(g.to_api())}, 'teacache-test'); "
                  f"await app.queuePrompt(0, 1); }}")
    page.wait_for_function(STATS_SHOWN, arg=[tc], timeout=180_000)
    shown = stats_on(page, [tc])
    skipped, calls = skipped_and_calls(shown["text"])
    assert calls == 12 and 0 < skipped < 12 and "x)" in shown["text"].splitlines()[0]
    assert "sd15 · generic · model input" in shown["text"]
    assert shown["stats"]["node"] == str(tc) and shown["stats"]["skipped"] == skipped
    assert shown["saved"] == [0.4, 0, 1, 0, "auto", "auto", "off"], "the stats display must not be saved as an input"
    page.evaluate(f"() => {{ app.canvas.centerOnNode(app.graph.getNodeById({tc})); app.canvas.setDirty(true, true); }}")
    page.screenshot(path=str(artifacts / "browser-teacache-stats.png"))
    node_screenshot(page, "teacache-stats.png", f"app.graph.getNodeById({tc})")
    assert page.fewstep_errors == []


def test_stats_from_inside_nested_subgraphs_land_on_that_node(page):
    """The server names the node "outer:inner:tc". A TeaCache node on the root graph that has
    the id `tc` (ids are unique only within one graph) must not receive the stats. The graph
    first runs unnested: the nested node has the same inputs, and must still report under
    its own id (ComfyUI must not reuse the first run's output, which carries the old id)."""
    g, ids, tc = teacache_graph(seed=32, steps=6)
    page.evaluate(f"async () => {{ app.graph.clear(); await app.loadApiJson({json.dumps(g.to_api())}, 'teacache-subgraph'); "
                  "await app.queuePrompt(0, 1); }")
    page.wait_for_function(STATS_SHOWN, arg=[tc], timeout=180_000)
    outer, inner, decoy = page.evaluate("""([tc, ckpt]) => {
        const g = app.graph;
        const inner = g.convertToSubgraph(new Set([g.getNodeById(tc)])).node;
        const outer = g.convertToSubgraph(new Set([inner])).node;
        const decoy = LiteGraph.createNode('FewStepTeaCache');
        decoy.id = tc;  // free on the root graph now that the original moved into the subgraph
        g.add(decoy);
        g.getNodeById(ckpt).connect(0, decoy, 0);  // a branch no output uses: it never runs
        return [outer.id, inner.id, decoy.id]; }""", [tc, int(ids["ckpt"])])
    # Newer frontends (1.49) hand node ids back as strings; the server's ids are the same text.
    outer, inner, decoy, tc = (str(i) for i in (outer, inner, decoy, tc))
    assert decoy == tc and len({outer, inner, tc}) == 3
    path = [outer, inner, tc]
    assert page.evaluate(f"() => ({NODE_AT})({json.dumps(path)}).comfyClass") == "FewStepTeaCache"
    page.evaluate("async () => { await app.queuePrompt(0, 1); }")
    page.wait_for_function(STATS_SHOWN, arg=path, timeout=180_000)
    shown = stats_on(page, path)
    assert shown["stats"]["node"] == f"{outer}:{inner}:{tc}"
    assert skipped_and_calls(shown["text"])[1] == 6
    on_decoy = stats_on(page, [tc])
    assert on_decoy["text"] is None and on_decoy["stats"] is None
    assert page.fewstep_errors == []

"""The distillation trainer's live chart in the real ComfyUI frontend (Debian's chromium):
a small real training prompt runs on the server, its "fewstep.distill" websocket events
reach the FewStepDistillTrainer node (also inside a subgraph, where the event names the
node "a:b"), and the node draws the loss curve and held-out PSNR points."""

import json
import re
import time

import pytest

from comfyui_fewstep.tools.default_model import DEFAULT_CHECKPOINT
from comfyui_fewstep.tools.graphs import Graph
from comfyui_fewstep.tools.teacher import prompt_for

ITERATIONS, SAVE_EVERY = 4, 2
TRAINER = dict(prompts="\n".join(prompt_for(d) for d in (3, 7)), negative="", width=32, height=32, teacher_steps=6,
               teacher_cfg=5.0, teacher_sampler="euler", teacher_scheduler="normal", student_steps=2,
               student_cfg=1.0, student_sampler="euler", student_scheduler="sgm_uniform", samples_per_prompt=2,
               iterations=ITERATIONS, learning_rate=1e-3, lr_schedule="constant", adapter="lora", rank=2, alpha=2.0,
               target="attention", batch_size=2, seed=0, gradient_checkpointing=True, training_dtype="fp32",
               save_every=SAVE_EVERY, resume="")


def trainer_graph(lora_name: str) -> tuple[Graph, str]:
    g = Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name=DEFAULT_CHECKPOINT)
    trainer = g.add("FewStepDistillTrainer", model=g.out(ckpt), clip=g.out(ckpt, 1), lora_name=lora_name, **TRAINER)
    return g, trainer


@pytest.fixture(scope="module")
def page_options(server) -> dict:
    return {"viewport": {"width": 1400, "height": 1000}}


@pytest.fixture(scope="module")
def page(page):
    """The tier's page, also recording every "fewstep.distill" event the frontend receives."""
    page.evaluate("""() => { window.fewstepDistillEvents = [];
        window.comfyAPI.api.api.addEventListener('fewstep.distill', (e) => window.fewstepDistillEvents.push(e.detail)); }""")
    return page


def report_of(client, lora_prefix: str, timeout: float = 60) -> str:
    """The finished run's report (the trainer's text output in /history, which the server
    stores just after the last websocket event)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in client.get_json("/history").values():
            for output in entry.get("outputs", {}).values():
                for text in output.get("text", []):
                    if text.startswith(f"FewStep Distill: {lora_prefix}_"):
                        return text
        time.sleep(0.2)
    raise AssertionError(f"no finished run of {lora_prefix} in /history")


def wait_for_done(page, locate: str):
    """`locate` is a JS expression for the trainer node."""
    page.wait_for_function(f"() => {{ const n = {locate}; return n?.fewstepDistill?.done === true; }}", timeout=240_000)
    return page.evaluate(f"() => {{ const n = {locate}; const s = n.fewstepDistill;"
                         " return {loss: s.loss, heldout: s.heldout, iterations: s.iterations, drawn: s.drawn,"
                         " widgets: n.serialize().widgets_values}; }")


def painted(page, locate: str, rgb: tuple[int, int, int]) -> int:
    """Pixels in about this colour inside the chart's plot box (labels and legend are outside)."""
    return page.evaluate(f"""([r, g, b]) => {{ const c = ({locate}).fewstepChart.canvas;
        const k = window.devicePixelRatio || 1, w = c.width / k, h = c.height / k;
        const x0 = Math.ceil(49 * k), y0 = Math.ceil(23 * k), x1 = Math.floor((w - 41) * k), y1 = Math.floor((h - 17) * k);
        const d = c.getContext('2d').getImageData(x0, y0, x1 - x0, y1 - y0).data; let n = 0;
        for (let i = 0; i < d.length; i += 4)
          if (Math.abs(d[i] - r) < 40 && Math.abs(d[i + 1] - g) < 40 && Math.abs(d[i + 2] - b) < 40 && d[i + 3] > 200) n++;
        return n; }}""", list(rgb))


def check_chart(chart, report: str):
    assert chart["iterations"] == ITERATIONS
    assert [it for it, _ in chart["loss"]] == list(range(1, ITERATIONS + 1))
    assert all(loss > 0 for _, loss in chart["loss"])
    # held-out PSNR at every save_every and at the end, the last one the report's "after"
    assert [it for it, _ in chart["heldout"]] == [SAVE_EVERY, ITERATIONS]
    after = float(re.search(r"after (-?[\d.]+) dB", report).group(1))
    assert chart["heldout"][-1][1] == pytest.approx(after, abs=0.006)
    final = float(re.search(r"final loss ([\d.]+)", report).group(1))
    assert chart["loss"][-1][1] == pytest.approx(final, abs=6e-6)
    assert chart["drawn"] == {"loss": ITERATIONS, "heldout": 2}


@pytest.mark.screenshot
def test_the_chart_draws_a_real_training_run_on_the_node(page, server, artifacts, node_screenshot):
    g, trainer = trainer_graph("browser_chart")
    page.evaluate(f"async () => {{ app.graph.clear(); await app.loadApiJson({json.dumps(g.to_api())}, 'distill-chart'); }}")
    locate = f"app.graph.getNodeById({trainer})"
    before = page.evaluate(f"() => {locate}.serialize().widgets_values")
    page.evaluate("async () => { window.fewstepDistillEvents.length = 0; await app.queuePrompt(0, 1); }")
    chart = wait_for_done(page, locate)
    check_chart(chart, report_of(server.client(), "browser_chart"))
    events = page.evaluate("() => window.fewstepDistillEvents")
    assert {e["node"] for e in events} == {trainer}
    assert chart["widgets"] == before, "the chart is a display: the node's saved inputs stay the same"
    assert painted(page, locate, (0x4E, 0xA1, 0xFF)) > 20  # the loss line
    assert painted(page, locate, (0xFF, 0xB3, 0x47)) > 20  # the held-out points
    page.evaluate(f"""() => {{ const n = {locate}; app.canvas.ds.scale = 1;
        app.canvas.ds.offset = [300 - n.pos[0], 960 - n.pos[1] - n.size[1]]; app.canvas.setDirty(true, true); }}""")
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "browser-distill-chart.png"))
    node_screenshot(page, "distill-chart.png", locate, bottom=300)  # the chart and the last inputs
    assert page.fewstep_errors == []


def test_the_chart_finds_the_trainer_inside_a_subgraph(page, server, artifacts):
    g, trainer = trainer_graph("browser_chart_sub")
    page.evaluate(f"async () => {{ app.graph.clear(); await app.loadApiJson({json.dumps(g.to_api())}, 'distill-sub'); }}")
    outer = page.evaluate(f"""() => {{ const node = app.graph.getNodeById({trainer});
        const {{ node: holder }} = app.graph.convertToSubgraph(new Set([node]));
        return String(holder.id); }}""")
    locate = f"app.graph.getNodeById({outer}).subgraph.nodes.find(n => n.comfyClass === 'FewStepDistillTrainer')"
    inner = page.evaluate(f"() => String(({locate}).id)")
    page.evaluate("async () => { window.fewstepDistillEvents.length = 0; await app.queuePrompt(0, 1); }")
    chart = wait_for_done(page, locate)
    check_chart(chart, report_of(server.client(), "browser_chart_sub"))
    events = page.evaluate("() => window.fewstepDistillEvents")
    assert {e["node"] for e in events} == {f"{outer}:{inner}"}  # the execution id of the inner node
    assert painted(page, locate, (0x4E, 0xA1, 0xFF)) > 20
    assert page.fewstep_errors == []


def test_a_resumed_run_extends_the_curve_and_a_new_run_starts_a_new_one(page):
    """The series logic of the extension itself, fed event payloads as the server sends them."""
    seen = page.evaluate("""async () => {
        const m = await import('/extensions/comfyui-fewstep/js/distill_chart.js');
        let s = null;
        for (const it of [1, 2, 3]) s = m.record(s, {node: '5', iteration: it, iterations: 10, loss: 1 / it});
        s = m.record(s, {node: '5', iteration: 4, iterations: 10, loss: null});  // a NaN loss arrives as null
        s = m.record(s, {node: '5', iteration: 5, iterations: 10, loss: 0.2});   // resumed after Cancel at 3
        const resumed = s.loss.map((p) => p[0]);
        s = m.record(s, {node: '5', iteration: 10, iterations: 10, heldout_psnr: 30.5, done: true});
        const finished = {done: s.done, heldout: s.heldout, text: m.summary(s)};
        s = m.record(s, {node: '5', iteration: 1, iterations: 6, loss: 2});      // the next run
        return {resumed, finished, next: {loss: s.loss, iterations: s.iterations, done: s.done},
                missing: m.findNode('999:1') === null && m.findNode(null) === null};
    }""")
    assert seen["resumed"] == [1, 2, 3, 5]
    assert seen["finished"] == {"done": True, "heldout": [[10, 30.5]],
                                "text": "iteration 10/10 \u00b7 loss 2.00e-1 \u00b7 held-out 30.50 dB \u00b7 done"}
    assert seen["next"] == {"loss": [[1, 2]], "iterations": 6, "done": False}
    assert seen["missing"] is True
    assert page.fewstep_errors == []

// FewStep TeaCache: show each sampling run's skipped calls and estimated speedup on the node.
// The server sends "fewstep.cache_stats" (nodes/caching.py send_stats) after every run.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { ComfyWidgets } from "../../../scripts/widgets.js";

const NODE_ID = "FewStepTeaCache";
const EVENT = "fewstep.cache_stats";
const WIDGET = "fewstep_cache_stats";

export function formatStats(s) {
  const speed = typeof s.speedup === "number" ? ` (~${s.speedup.toFixed(2)}x)` : "";
  const lines = [`TeaCache: skipped ${s.skipped}/${s.calls} model calls${speed}`];
  lines.push(`${s.architecture} · ${s.family} · ${s.indicator} · ${s.rescale}`);
  const cal = s.calibration || {};
  if (cal.status) lines.push(`calibration: ${cal.status}`);
  if (s.completed === false) lines.push("run did not complete");
  for (const note of s.notes || []) lines.push(`note: ${note}`);
  return lines.join("\n");
}

function findNode(id) {
  if (id === null || id === undefined) return null;
  const graph = app.graph;
  const key = String(id).split(":").pop(); // nodes inside subgraphs arrive as "parent:child"
  const node = graph.getNodeById(Number(key)) ?? graph.getNodeById(key);
  return node && (node.comfyClass ?? node.type) === NODE_ID ? node : null;
}

function show(node, text) {
  let widget = node.widgets?.find((w) => w.name === WIDGET);
  if (!widget) {
    widget = ComfyWidgets.STRING(node, WIDGET, ["STRING", { multiline: true }], app).widget;
    widget.inputEl.readOnly = true;
    widget.inputEl.style.opacity = 0.85;
    widget.serialize = false; // a display, not an input: saved widget values stay unchanged
  }
  widget.value = text;
  const [, height] = node.computeSize();
  node.setSize([Math.max(node.size[0], 320), Math.max(node.size[1], height + 30)]);
  node.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "FewStep.CacheStats",
  setup() {
    api.addEventListener(EVENT, ({ detail }) => {
      const node = findNode(detail?.node);
      if (!node) return;
      node.fewstepCacheStats = detail;
      show(node, formatStats(detail));
    });
  },
});

// FewStep TeaCache: show each sampling run's skipped calls and estimated speedup on the node.
// The server sends "fewstep.cache_stats" (nodes/caching.py send_stats) after every run, naming
// the node by its execution id.
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

function byId(graph, id) {
  return graph?.getNodeById(Number(id)) ?? graph?.getNodeById(id) ?? null;
}

// The server names a node inside a subgraph by its execution id: the ids of the subgraph
// nodes on the way down from the root graph, then the node's own id ("3:7", "3:5:7").
// Those ids are only unique within their own graph, so walk the path from the root graph,
// as the frontend does for its own "executed" events. (app.graph is the root graph, also while
// the canvas shows a subgraph.) Instances of one subgraph share its inner nodes, so such a
// node shows the latest run of any instance.
export function findNode(id, root = app.graph) {
  if (id === null || id === undefined) return null;
  const path = String(id).split(":").filter((part) => part.length > 0);
  if (path.length === 0) return null;
  let graph = root;
  for (const part of path.slice(0, -1)) {
    const parent = byId(graph, part);
    if (!parent?.isSubgraphNode?.() || !parent.subgraph) return null;
    graph = parent.subgraph;
  }
  const node = byId(graph, path[path.length - 1]);
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

// FewStep Distill: draw the trainer's loss (log scale) and held-out PSNR live on the node.
// The server sends "fewstep.distill" (nodes/training.py) after every training iteration:
// {node, iteration, iterations, loss, heldout_psnr?, done?}; `node` is the execution id,
// "a:b" for node b inside the subgraph node a.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const NODE_ID = "FewStepDistillTrainer";
const EVENT = "fewstep.distill";
const WIDGET = "fewstep_distill_chart";
const HEIGHT = 170;
const LOSS_COLOR = "#4ea1ff";
const PSNR_COLOR = "#ffb347";

// The node an execution id names: walk the subgraph nodes from the root graph, as the
// frontend's own getNodeByExecutionId does (app.graph is the root graph, whichever
// subgraph the canvas shows).
export function findNode(executionId, root = app.rootGraph ?? app.graph) {
  if (executionId === null || executionId === undefined || !root) return null;
  const path = String(executionId).split(":");
  let graph = root;
  for (const id of path.slice(0, -1)) {
    graph = graph.getNodeById(id)?.subgraph;
    if (!graph) return null;
  }
  const node = graph.getNodeById(path[path.length - 1]);
  return node && (node.comfyClass ?? node.type) === NODE_ID ? node : null;
}

// One run's series. A new run starts when the last one finished or the iteration goes back;
// a resumed run (iterations continuing past the last point) extends the same curve.
export function record(state, d) {
  const last = state?.loss.at(-1)?.[0] ?? 0;
  if (!state || state.done || (typeof d.iteration === "number" && d.iteration <= last && !d.done)) {
    state = { loss: [], heldout: [], iterations: 0, iteration: 0, done: false };
  }
  state.iterations = d.iterations ?? state.iterations;
  state.iteration = d.iteration ?? state.iteration;
  if (typeof d.loss === "number" && Number.isFinite(d.loss) && d.loss > 0) state.loss.push([d.iteration, d.loss]);
  if (typeof d.heldout_psnr === "number" && Number.isFinite(d.heldout_psnr)) state.heldout.push([d.iteration, d.heldout_psnr]);
  state.done = d.done === true;
  return state;
}

export function summary(s) {
  const parts = [`iteration ${s.iteration}/${s.iterations}`];
  const loss = s.loss.at(-1);
  if (loss) parts.push(`loss ${loss[1].toExponential(2)}`);
  const psnr = s.heldout.at(-1);
  if (psnr) parts.push(`held-out ${psnr[1].toFixed(2)} dB`);
  if (s.done) parts.push("done");
  return parts.join(" \u00b7 ");
}

function span(values, pad) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1e-9) { lo -= pad; hi += pad; }
  return [lo, hi];
}

// Draws the chart; returns how many loss and PSNR points were drawn (kept on the node).
export function draw(canvas, s) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(120, canvas.clientWidth || 300), height = HEIGHT;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = "rgba(0, 0, 0, 0.25)";
  ctx.fillRect(0, 0, width, height);
  ctx.font = "11px sans-serif";
  ctx.fillStyle = "#ddd";
  ctx.fillText(summary(s), 6, 13);
  const box = { left: 48, right: width - 40, top: 22, bottom: height - 16 };
  ctx.strokeStyle = "#666";
  ctx.strokeRect(box.left, box.top, box.right - box.left, box.bottom - box.top);
  const inner = { top: box.top + 6, bottom: box.bottom - 6 }; // points stay off the frame
  const xMax = Math.max(1, s.iterations, ...s.loss.map((p) => p[0]));
  const x = (it) => box.left + 6 + (it / xMax) * (box.right - box.left - 12);
  ctx.fillStyle = "#aaa";
  ctx.fillText("0", box.left, height - 3);
  ctx.fillText(String(xMax), box.right - ctx.measureText(String(xMax)).width, height - 3);
  const drawn = { loss: 0, heldout: 0 };
  if (s.loss.length) {
    const [lo, hi] = span(s.loss.map((p) => Math.log10(p[1])), 0.5);
    const y = (v) => inner.bottom - ((Math.log10(v) - lo) / (hi - lo)) * (inner.bottom - inner.top);
    ctx.fillStyle = LOSS_COLOR;
    ctx.fillText((10 ** hi).toExponential(1), 2, inner.top + 4);
    ctx.fillText((10 ** lo).toExponential(1), 2, inner.bottom + 4);
    ctx.strokeStyle = LOSS_COLOR;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.loss.forEach(([it, v], i) => (i ? ctx.lineTo(x(it), y(v)) : ctx.moveTo(x(it), y(v))));
    ctx.stroke();
    for (const [it, v] of s.loss) ctx.fillRect(x(it) - 1.5, y(v) - 1.5, 3, 3);
    drawn.loss = s.loss.length;
  }
  if (s.heldout.length) {
    const [lo, hi] = span(s.heldout.map((p) => p[1]), 1);
    const y = (db) => inner.bottom - ((db - lo) / (hi - lo)) * (inner.bottom - inner.top);
    ctx.fillStyle = PSNR_COLOR;
    ctx.fillText(`${hi.toFixed(1)} dB`, box.right + 2, inner.top + 4);
    ctx.fillText(`${lo.toFixed(1)} dB`, box.right + 2, inner.bottom + 4);
    for (const [it, db] of s.heldout) {
      ctx.beginPath();
      ctx.arc(x(it), y(db), 3.5, 0, 2 * Math.PI);
      ctx.fill();
    }
    drawn.heldout = s.heldout.length;
  }
  const legend = [["\u2014 loss (log scale)", LOSS_COLOR], ["\u25cf held-out PSNR", PSNR_COLOR]];
  let at = (box.left + box.right) / 2 - legend.reduce((w, [t]) => w + ctx.measureText(t).width + 10, 0) / 2;
  for (const [text, color] of legend) {
    ctx.fillStyle = color;
    ctx.fillText(text, at, height - 3);
    at += ctx.measureText(text).width + 10;
  }
  return drawn;
}

function chartOf(node) {
  if (node.fewstepChart) return node.fewstepChart;
  const canvas = document.createElement("canvas");
  canvas.className = "fewstep-distill-chart";
  Object.assign(canvas.style, { width: "100%", height: `${HEIGHT}px`, display: "block" });
  const widget = node.addDOMWidget(WIDGET, "fewstep-distill-chart", canvas, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => undefined,
    setValue: () => {},
    getMinHeight: () => HEIGHT + 8,
    getMaxHeight: () => HEIGHT + 8,
  });
  widget.serialize = false; // a display: the node's saved widget values stay its inputs
  node.setSize([Math.max(node.size[0], 360), Math.max(node.size[1], node.computeSize()[1])]);
  node.fewstepChart = { widget, canvas };
  return node.fewstepChart;
}

function redraw(node) {
  const { canvas } = chartOf(node);
  node.fewstepDistill.drawn = draw(canvas, node.fewstepDistill);
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "FewStep.DistillChart",
  setup() {
    api.addEventListener(EVENT, ({ detail }) => {
      const node = findNode(detail?.node);
      if (!node) return;
      node.fewstepDistill = record(node.fewstepDistill, detail);
      redraw(node);
    });
  },
});

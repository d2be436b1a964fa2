// FewStep Compare and A/B Test: show the report (PSNR, SSIM, times) on the node after it runs.
import { app } from "../../../scripts/app.js";
import { ComfyWidgets } from "../../../scripts/widgets.js";

const NODE_IDS = ["FewStepCompare", "FewStepABTest"];
const WIDGET = "fewstep_report";

// Rows the report needs at the node's width (the textarea wraps long lines): the A/B report
// has seven lines and the comparison picture below it, which would otherwise squeeze it.
function reportRows(node, text) {
  const chars = Math.max(20, Math.floor((node.size[0] - 30) / 6.5));
  return String(text).split("\n").reduce((rows, line) => rows + Math.max(1, Math.ceil(line.length / chars)), 0);
}

function showReport(node, text) {
  let widget = node.widgets?.find((w) => w.name === WIDGET);
  if (!widget) {
    widget = ComfyWidgets.STRING(node, WIDGET, ["STRING", { multiline: true }], app).widget;
    widget.inputEl.readOnly = true;
    widget.inputEl.style.opacity = 0.85;
    widget.serialize = false; // a display, not an input: keep saved widget values unchanged
    widget.options = widget.options ?? {};
    widget.options.getMinHeight = () => 14 * reportRows(node, widget.value) + 12;
  }
  widget.value = text;
  const minWidth = node.type === "FewStepABTest" ? 480 : 300;
  node.setSize([Math.max(node.size[0], minWidth), node.size[1]]);
  const [, height] = node.computeSize();
  node.setSize([node.size[0], Math.max(node.size[1], height + 40)]);
  node.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "FewStep.Compare",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODE_IDS.includes(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = message?.text?.[0];
      if (typeof text === "string") showReport(this, text);
    };
  },
});

// FewStep Compare and A/B Test: show the report (PSNR, SSIM, times) on the node after it runs.
import { app } from "../../../scripts/app.js";
import { ComfyWidgets } from "../../../scripts/widgets.js";

const NODE_IDS = ["FewStepCompare", "FewStepABTest"];
const WIDGET = "fewstep_report";

function showReport(node, text) {
  let widget = node.widgets?.find((w) => w.name === WIDGET);
  if (!widget) {
    widget = ComfyWidgets.STRING(node, WIDGET, ["STRING", { multiline: true }], app).widget;
    widget.inputEl.readOnly = true;
    widget.inputEl.style.opacity = 0.85;
    widget.serialize = false; // a display, not an input: keep saved widget values unchanged
  }
  widget.value = text;
  const [width, height] = node.computeSize();
  node.setSize([Math.max(node.size[0], node.type === "FewStepABTest" ? 420 : 300), Math.max(node.size[1], height + 40)]);
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

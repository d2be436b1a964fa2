// FewStep Compare: show the PSNR / error report on the node after it runs.
import { app } from "../../../scripts/app.js";
import { ComfyWidgets } from "../../../scripts/widgets.js";

const NODE_ID = "FewStepCompare";
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
  node.setSize([Math.max(node.size[0], 300), Math.max(node.size[1], height + 40)]);
  node.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "FewStep.Compare",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_ID) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = message?.text?.[0];
      if (typeof text === "string") showReport(this, text);
    };
  },
});

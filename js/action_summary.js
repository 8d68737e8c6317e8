// Shows the readable track summary (frames, seconds, keys held, mouse ranges) that the Matrix-Game
// action nodes return as UI text, in a read-only box on the node after it runs. The box is not a
// serialized widget: it never enters the workflow's widgets_values or the API prompt.

import { app } from "../../scripts/app.js";

const ACTION_NODES = new Set([
  "MatrixGameActionsFromJSON",
  "MatrixGameBenchmarkActions",
  "MatrixGameActionsFromFile",
  "MatrixGameConcatActions",
  "MatrixGameActionFollowing",
]);

function summaryWidget(node) {
  let w = node.widgets?.find((x) => x.name === "track_summary");
  if (w) return w;
  const box = document.createElement("textarea");
  box.readOnly = true;
  box.rows = 5;
  box.style.cssText = "width:100%;box-sizing:border-box;font:11px monospace;resize:vertical;" +
    "background:var(--comfy-input-bg,#222);color:var(--input-text,#ddd);border:1px solid #444;";
  box.placeholder = "Run the node to see what the track does.";
  w = node.addDOMWidget("track_summary", "matrix_game_summary", box, { serialize: false });
  w.serialize = false;
  w.element = box;
  return w;
}

app.registerExtension({
  name: "MatrixGame.ActionSummary",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!ACTION_NODES.has(nodeData?.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const r = onExecuted?.apply(this, arguments);
      const text = Array.isArray(message?.text) ? message.text.join("\n") : message?.text;
      if (text) {
        const w = summaryWidget(this);
        w.element.value = text;
        this.setDirtyCanvas?.(true, true);
      }
      return r;
    };
  },
});

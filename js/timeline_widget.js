// Action-timeline widget on "Matrix-Game Actions (JSON)" nodes: paint keys over frame ranges, edit
// the mouse pitch / yaw as curves, presets, undo/redo, import/export. Its state lives in the node's
// `track_json` STRING widget (hidden; "JSON" shows it), as the engine's ActionTrack JSON, so it
// survives save/load, copy/paste and API export (KJNodes' Spline Editor does the same).
// The track model is js/lib/track.js (no DOM; unit-tested with node --test).
// The editor is js/lib/timeline/ (editor, toolbar, geometry, input, drawing).

import { app } from "../../scripts/app.js";
import * as T from "./lib/track.js";
import { setWidgetHidden, TimelineEditor } from "./lib/timeline/editor.js";

const NODE_TYPE = "MatrixGameActionsFromJSON";
const TEXT_WIDGET = "track_json";

const editors = new Set();
/** The timeline editor of a node (by node id). */
const editorFor = (nodeId) => [...editors].find((e) => String(e.node.id) === String(nodeId)) || null;
window.MatrixGameTimeline = { editors, editorFor, track: T };

function chain(obj, name, fn) {
  const orig = obj[name];
  obj[name] = function (...args) {
    const r = orig?.apply(this, args);
    fn.apply(this, args);
    return r;
  };
}

app.registerExtension({
  name: "MatrixGame.ActionTimeline",
  nodeCreated(node) {
    const cls = node.comfyClass || node.constructor?.comfyClass || node.type;
    if (cls !== NODE_TYPE) return;
    const textWidget = node.widgets?.find((w) => w.name === TEXT_WIDGET);
    if (!textWidget) return;
    const editor = new TimelineEditor(node, textWidget, { app });
    setWidgetHidden(textWidget, true);
    const widget = node.addDOMWidget("timeline", "MATRIX_GAME_TIMELINE", editor.root, {
      serialize: false,
      hideOnZoom: false,
      getValue: () => undefined,
      setValue: () => {},
      getMinHeight: () => editor.totalHeight(),
      getMaxHeight: () => editor.totalHeight(),
      getHeight: () => editor.totalHeight(),
    });
    widget.serialize = false;
    editor.widget = widget;
    editors.add(editor);
    node.matrixGameTimeline = editor;
    const [w] = node.size;
    node.setSize([Math.max(w, 600), node.computeSize()[1]]);
    chain(node, "onRemoved", () => { editor.destroy(); editors.delete(editor); });
    chain(node, "onConfigure", () => {
      editor.loadFromWidget(true);
      editor.history.clear();
      editor.refreshUi();
    });
    requestAnimationFrame(() => editor.refreshUi());
  },
});

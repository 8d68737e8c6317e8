// The action-timeline editor of one "Matrix-Game Actions (JSON)" node: its track, undo history and
// the sync with the node's `track_json` widget. Drawing, input, geometry and the toolbar are in the
// other files of this folder and mixed into this class. No ComfyUI import: the widget passes `app`.

import * as T from "../track.js";
import { el, injectCss } from "../dom.js";
import { Drawing } from "./draw.js";
import { Geometry, mixin } from "./geometry.js";
import { Input } from "./input.js";
import { CSS, Toolbar } from "./toolbar.js";

/** Height of the JSON text box when shown (CSS px, about 15 lines). */
export const JSON_BOX_H = 240;

/** Hide or show a widget in the canvas and in Vue nodes (the core CreateBoundingBoxes pattern). */
export function setWidgetHidden(widget, hidden) {
  widget.hidden = hidden;
  widget.options = widget.options || {};
  widget.options.hidden = hidden;
  if (widget.element) widget.element.style.display = hidden ? "none" : "";
}

export class TimelineEditor {
  constructor(node, textWidget, { app = null } = {}) {
    this.app = app;
    this.node = node;
    this.textWidget = textWidget;
    this.track = T.emptyTrack("universal", 57);
    this.history = new T.History(200);
    this.ppf = null;                 // pixels per frame; null = fit the whole track
    this.scroll = 0;                 // first visible frame (float)
    this.snap = false;
    this.tool = "draw";              // curves: "draw" keyframes | "paint" values
    this.playhead = 0;
    this.playing = false;
    this.error = null;
    this.lastText = null;
    this.drag = null;
    this.hover = null;
    this.jsonShown = false;
    injectCss("mg-tl-css", CSS);
    this.build();
    this.loadFromWidget(true);
    this.timer = setInterval(() => this.loadFromWidget(false), 400);
  }

  // ------------------------------------------------------------------------------------ state <-> widget
  loadFromWidget(initial) {
    let text = this.textWidget.value;
    if (typeof text !== "string") text = text == null ? "" : String(text);
    if (!initial && text === this.lastText) return;
    if (!text.trim()) {
      this.track = T.emptyTrack("universal", 57);
      this.error = null;
      this.commit(false);
      return;
    }
    try {
      const t = T.parseTrack(text);
      if (!initial && !this.error) this.history.push(this.track);
      this.track = t;
      this.error = null;
    } catch (e) {
      this.error = e.message;
    }
    this.lastText = text;
    this.playhead = Math.min(this.playhead, this.track.numFrames - 1);
    this.refreshUi();
  }

  /** Write the track into the node's JSON widget (what the node runs and what the workflow saves). */
  commit(redraw = true) {
    const text = T.serializeTrack(this.track);
    this.lastText = text;
    this.error = null;
    const w = this.textWidget;
    w.value = text;
    if (w.element && "value" in w.element && w.element.value !== text) w.element.value = text;
    w.callback?.(text);
    this.node.setDirtyCanvas?.(true, true);
    this.app?.graph?.setDirtyCanvas?.(true, true);
    this.captureGraphState();
    if (redraw) this.refreshUi();
  }

  /** Make this edit one step of ComfyUI's own undo (Ctrl+Z on the graph): the tracker otherwise records
   *  on mouseup, which a canvas drag never sends (pointerdown's preventDefault), so several strokes
   *  became one step. A no-op while ComfyUI loads a graph or restores an undo state. */
  captureGraphState() {
    const tracker = this.app?.extensionManager?.workflow?.activeWorkflow?.changeTracker;
    const capture = tracker?.captureCanvasState ?? tracker?.checkState;
    try {
      capture?.call(tracker);
    } catch (e) {
      console.warn("MatrixGame timeline: ComfyUI's change tracker refused the edit", e);
    }
  }

  /** Apply an edit (fn mutates or returns the track) with an undo step. */
  edit(fn) {
    if (this.error) return;
    this.history.push(this.track);
    const out = fn(this.track);
    if (out) this.track = out;
    this.commit();
  }

  undo() {
    const prev = this.history.undo(this.track);
    if (prev) { this.track = prev; this.commit(); }
  }

  redo() {
    const next = this.history.redo(this.track);
    if (next) { this.track = next; this.commit(); }
  }

  setLength(n) {
    const want = T.nearestValidLength(n);
    if (want === this.track.numFrames) { this.refreshUi(); return; }
    this.edit((t) => T.resizeTrack(t, want));
    this.playhead = Math.min(this.playhead, this.track.numFrames - 1);
  }

  applyPreset() {
    const name = this.presetSel.value;
    if (!name) return;
    this.error = null;            // a preset replaces the whole track, also JSON text that is not a valid track
    this.edit((t) => T.applyPreset(t, name, { seed: Math.max(0, Math.floor(Number(this.seedIn.value) || 0)) }));
  }

  importFile() {
    const f = this.fileIn.files?.[0];
    if (!f) return;
    f.text().then((text) => {
      try {
        const t = T.parseTrack(text);
        this.history.push(this.track);
        this.track = t;
        this.commit();
      } catch (e) {
        this.showStatus(`Import failed: ${e.message}`, true);
      }
      this.fileIn.value = "";
    });
  }

  exportFile() {
    const blob = new Blob([T.serializeTrack(this.track)], { type: "application/json" });
    const a = el("a", { href: URL.createObjectURL(blob), download: `matrix_game_${this.track.mode}_${this.track.numFrames}f.json` });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  toggleJson() {
    this.jsonShown = !this.jsonShown;
    setWidgetHidden(this.textWidget, !this.jsonShown);
    // the text box gets room for a track (ComfyUI's multiline default is about 4 lines)
    const opts = (this.textWidget.options = this.textWidget.options || {});
    opts.getMinHeight = () => JSON_BOX_H;
    const node = this.node;
    const want = node.computeSize?.();
    if (want) node.setSize([node.size[0], want[1]]);
    node.setDirtyCanvas?.(true, true);
  }

  destroy() {
    clearInterval(this.timer);
    this.playing = false;
  }
}


mixin(TimelineEditor, Geometry, Input, Drawing, Toolbar);

// Action-timeline widget on "Matrix-Game Actions (JSON)" nodes: paint keys over frame ranges, edit
// the mouse pitch / yaw as curves, presets, undo/redo, import/export. Its state lives in the node's
// `track_json` STRING widget (hidden; "JSON" shows it), as the engine's ActionTrack JSON, so it
// survives save/load, copy/paste and API export (KJNodes' Spline Editor does the same).
// The track model is js/lib/track.js (no DOM; unit-tested with node --test).

import { app } from "../../scripts/app.js";
import { el, injectCss } from "./lib/dom.js";
import * as T from "./lib/track.js";

const NODE_TYPE = "MatrixGameActionsFromJSON";
const TEXT_WIDGET = "track_json";
const LABEL_W = 70;
const RULER_H = 32;
const KEY_H = 20;
const CURVE_H = 76;
const GAP = 6;
const SCROLL_H = 10;
const BAR_H = 24;
const STATUS_H = 18;
const VALUE_STEP = T.CAM_VALUE / 20;         // curve values snap to 0.005 (hold Ctrl for free values)

const SHORTCUTS = [
  "Keys: drag = hold the key over frames · right-drag, Shift- or Alt-drag = erase",
  "Curves: click = add keyframe · drag = move it · right-click = delete · right-drag = delete keyframes in range",
  "Paint tool (P): drag = paint per-frame values · right-drag = paint 0",
  "Ruler: click/drag = move the playhead · Space = play/pause · ←/→ = 1 frame (Shift: 1 block)",
  "Ctrl+Z undo · Ctrl+Shift+Z / Ctrl+Y redo · B snap to blocks · + / − / 0 zoom in / out / fit",
  "Wheel = scroll · Ctrl+wheel = zoom · Ctrl while dragging a curve = unsnapped values",
].join("\n");

const editors = new Set();
/** The timeline editor of a node (by node id). */
const editorFor = (nodeId) => [...editors].find((e) => String(e.node.id) === String(nodeId)) || null;
window.MatrixGameTimeline = { editors, editorFor, track: T };

const CSS = `
.mg-tl { display:flex; flex-direction:column; gap:3px; font:11px/1.2 system-ui, sans-serif; color:#ddd; box-sizing:border-box; min-width:0; user-select:none; }
.mg-tl .mg-bar { display:flex; gap:4px; align-items:center; height:${BAR_H}px; white-space:nowrap; overflow-x:auto; overflow-y:hidden; scrollbar-width:thin; }
.mg-tl button, .mg-tl select, .mg-tl input { font:11px system-ui, sans-serif; background:#2b2b2b; color:#ddd; border:1px solid #555; border-radius:4px; height:20px; padding:0 5px; box-sizing:border-box; }
.mg-tl button:hover:not(:disabled) { background:#3a3a3a; }
.mg-tl button:disabled { opacity:.4; }
.mg-tl button.on { background:#3d5a80; border-color:#6c9bd2; }
.mg-tl input[type=number] { width:58px; }
.mg-tl .mg-info { color:#9aa; margin-left:2px; }
.mg-tl canvas { display:block; width:100%; border-radius:4px; outline:none; cursor:crosshair; touch-action:none; }
.mg-tl canvas:focus { box-shadow:0 0 0 1px #6c9bd2; }
.mg-tl .mg-status { height:${STATUS_H}px; color:#9aa; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.mg-tl .mg-status.err { color:#ff8a80; }
`;



function chain(obj, name, fn) {
  const orig = obj[name];
  obj[name] = function (...args) {
    const r = orig?.apply(this, args);
    fn.apply(this, args);
    return r;
  };
}

/** Hide or show a widget in the canvas and in Vue nodes (the core CreateBoundingBoxes pattern). */
function setWidgetHidden(widget, hidden) {
  widget.hidden = hidden;
  widget.options = widget.options || {};
  widget.options.hidden = hidden;
  if (widget.element) widget.element.style.display = hidden ? "none" : "";
}

const fmtVal = (v) => (v === 0 ? "0" : (v > 0 ? "+" : "") + T.formatNumber(v));

class TimelineEditor {
  constructor(node, textWidget) {
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

  // ------------------------------------------------------------------------------------ DOM
  build() {
    const b = (text, title, on, extra = {}) => el("button", { textContent: text, title, onclick: (e) => { e.preventDefault(); on(e); this.canvas.focus(); }, ...extra });
    this.modeSel = el("select", { title: "Model mode: sets the key lanes (universal W/S/A/D + mouse; gta_drive W/S + steering yaw; templerun 7 keys, no mouse)", onchange: () => this.edit((t) => T.setMode(t, this.modeSel.value)) },
      T.MODES.map((m) => el("option", { value: m, textContent: m })));
    this.lenIn = el("input", { type: "number", min: 1, step: 4, title: "Length in video frames, always 1 + 4n (n + 1 latent frames)", onchange: () => this.setLength(Number(this.lenIn.value)) });
    this.fpsIn = el("input", { type: "number", min: 1, step: 1, title: "Playback rate (frames per second) of the time axis; stored in the track", onchange: () => {
      const v = Number(this.fpsIn.value);
      if (v > 0 && Number.isFinite(v)) this.edit((t) => { t.fps = v; return t; });
    } });
    this.info = el("span", { className: "mg-info" });
    this.presetSel = el("select", { title: "Presets (replace the whole track; Undo brings it back)", onchange: () => this.updatePresetUi() });
    this.seedIn = el("input", { type: "number", min: 0, step: 1, value: 0, title: "Seed of the official random benchmark track" });
    this.undoBtn = b("↶", "Undo (Ctrl+Z)", () => this.undo());
    this.redoBtn = b("↷", "Redo (Ctrl+Shift+Z, Ctrl+Y)", () => this.redo());
    this.snapBtn = b("Snap", "Snap painted key ranges to whole blocks (B)", () => { this.snap = !this.snap; this.refreshUi(); });
    this.paintBtn = b("✎ Paint", "Curve tool (P): off = click/drag keyframes, on = paint per-frame values", () => { this.tool = this.tool === "paint" ? "draw" : "paint"; this.refreshUi(); });
    this.fileIn = el("input", { type: "file", accept: ".json,application/json", style: { display: "none" }, onchange: () => this.importFile() });
    this.bar1 = el("div", { className: "mg-bar" }, [
      this.modeSel,
      el("span", { textContent: "frames" }), this.lenIn,
      b("−", "4 frames shorter (one latent frame)", () => this.setLength(this.track.numFrames - 4)),
      b("+", "4 frames longer (one latent frame)", () => this.setLength(this.track.numFrames + 4)),
      el("span", { textContent: "fps" }), this.fpsIn, this.info,
    ]);
    this.bar2 = el("div", { className: "mg-bar" }, [
      this.presetSel, this.seedIn, b("Apply", "Replace the track with the preset", () => this.applyPreset()),
      this.undoBtn, this.redoBtn, this.snapBtn, this.paintBtn,
      b("−", "Zoom out (−, Ctrl+wheel)", () => this.zoomBy(1 / 1.5)), b("Fit", "Show the whole track (0)", () => { this.ppf = null; this.scroll = 0; this.draw(); }),
      b("+", "Zoom in (+, Ctrl+wheel)", () => this.zoomBy(1.5)),
      b("Import", "Load a track .json file", () => this.fileIn.click()),
      b("Export", "Save the track as a .json file", () => this.exportFile()),
      b("JSON", "Show / hide the track's JSON text (what the node runs)", () => this.toggleJson()),
      el("span", { textContent: " ? ", title: SHORTCUTS, className: "mg-info", style: { cursor: "help", border: "1px solid #555", borderRadius: "8px", padding: "0 4px" } }),
      this.fileIn,
    ]);
    this.canvas = el("canvas", { tabIndex: 0, title: SHORTCUTS });
    this.status = el("div", { className: "mg-status" });
    this.root = el("div", { className: "mg-tl" }, [this.bar1, this.bar2, this.canvas, this.status]);
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => this.onDown(e));
    c.addEventListener("pointermove", (e) => this.onMove(e));
    c.addEventListener("pointerup", (e) => this.onUp(e));
    c.addEventListener("pointercancel", (e) => this.onUp(e));
    c.addEventListener("pointerleave", () => { this.hover = null; if (!this.drag) this.draw(); });
    c.addEventListener("contextmenu", (e) => { e.preventDefault(); e.stopPropagation(); });
    c.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    c.addEventListener("keydown", (e) => this.onKey(e));
    for (const ev of ["keyup", "keypress"]) c.addEventListener(ev, (e) => e.stopPropagation());
    new ResizeObserver(() => this.draw()).observe(c);
  }

  /** Height of the canvas for the current mode (CSS px). */
  canvasHeight() {
    const K = T.KEYS[this.track.mode].length;
    return RULER_H + K * KEY_H + (this.track.mouse ? GAP + 2 * CURVE_H + GAP : 0) + SCROLL_H + 4;
  }

  totalHeight() {
    return 2 * BAR_H + this.canvasHeight() + STATUS_H + 4 * 3 + 4;
  }

  layout() {
    const h = this.canvasHeight();
    if (this.canvas.style.height !== `${h}px`) {
      this.canvas.style.height = `${h}px`;
      this.root.style.height = `${this.totalHeight()}px`;
      const node = this.node;
      if (node?.setSize && node.computeSize) {
        const want = node.computeSize();
        node.setSize([Math.max(node.size[0], want[0]), Math.max(want[1], 0)]);
        node.setDirtyCanvas?.(true, true);
      }
    }
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
    app.graph?.setDirtyCanvas?.(true, true);
    if (redraw) this.refreshUi();
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
    const node = this.node;
    const want = node.computeSize?.();
    if (want) node.setSize([node.size[0], want[1]]);
    node.setDirtyCanvas?.(true, true);
  }

  updatePresetUi() {
    this.seedIn.style.display = this.presetSel.value === "bench" ? "" : "none";
  }

  refreshUi() {
    const t = this.track;
    this.modeSel.value = t.mode;
    this.lenIn.value = t.numFrames;
    this.fpsIn.value = t.fps;
    const blocks = T.blockRanges(t.numFrames).length;
    this.info.textContent = `${(t.numFrames / t.fps).toFixed(2)} s · ${T.latentFrames(t.numFrames)} latent · ${blocks} block${blocks === 1 ? "" : "s"}`;
    const cur = this.presetSel.value;
    this.presetSel.replaceChildren(el("option", { value: "", textContent: "Preset…" }),
      ...Object.entries(T.PRESETS).filter(([, p]) => p.modes.includes(t.mode)).map(([k, p]) => el("option", { value: k, textContent: p.label })));
    this.presetSel.value = [...this.presetSel.options].some((o) => o.value === cur) ? cur : "";
    this.updatePresetUi();
    this.undoBtn.disabled = !this.history.canUndo;
    this.redoBtn.disabled = !this.history.canRedo;
    this.snapBtn.classList.toggle("on", this.snap);
    this.paintBtn.classList.toggle("on", this.tool === "paint");
    this.paintBtn.disabled = !t.mouse;
    this.layout();
    this.draw();
  }

  showStatus(text, isErr = false) {
    this.status.textContent = text;
    this.status.classList.toggle("err", isErr);
  }

  // ------------------------------------------------------------------------------------ geometry
  width() { return this.canvas.clientWidth || 500; }

  fitPpf() { return Math.max(0.5, (this.width() - LABEL_W - 6) / this.track.numFrames); }

  get pxPerFrame() { return this.ppf ?? this.fitPpf(); }

  visibleFrames() { return (this.width() - LABEL_W - 6) / this.pxPerFrame; }

  clampScroll() {
    const maxS = Math.max(0, this.track.numFrames - this.visibleFrames());
    this.scroll = Math.max(0, Math.min(maxS, this.scroll));
  }

  xOf(f) { return LABEL_W + (f - this.scroll) * this.pxPerFrame; }

  frameAt(x) { return Math.floor((x - LABEL_W) / this.pxPerFrame + this.scroll); }

  lanes() {
    const out = [{ kind: "ruler", y: 0, h: RULER_H }];
    let y = RULER_H;
    T.KEYS[this.track.mode].forEach((k, i) => { out.push({ kind: "key", key: k, index: i, label: T.KEY_LABELS[this.track.mode][i], y, h: KEY_H }); y += KEY_H; });
    if (this.track.mouse) {
      y += GAP;
      for (const ch of T.CHANNELS) { out.push({ kind: "curve", ch, y, h: CURVE_H }); y += CURVE_H + GAP; }
    }
    out.push({ kind: "scroll", y: this.canvasHeight() - SCROLL_H - 2, h: SCROLL_H });
    return out;
  }

  laneAt(y) { return this.lanes().find((l) => y >= l.y && y < l.y + l.h) || null; }

  curveRange(ch) {
    let m = 0;
    for (const v of this.track.mouse[ch].values) m = Math.max(m, Math.abs(v));
    if (this.drag?.range && this.drag.ch === ch) return this.drag.range;
    return m <= 0.2 ? 0.2 : m <= 0.5 ? 0.5 : 1;
  }

  yOfValue(lane, v) {
    const R = this.curveRange(lane.ch);
    return lane.y + lane.h / 2 - (v / R) * (lane.h / 2 - 5);
  }

  valueAt(lane, y, free) {
    const R = this.curveRange(lane.ch);
    let v = ((lane.y + lane.h / 2 - y) / (lane.h / 2 - 5)) * R;
    if (!free) v = Math.round(v / VALUE_STEP) * VALUE_STEP;
    return T.clampMouse(v);
  }

  local(e) {
    const r = this.canvas.getBoundingClientRect();
    const sx = r.width / (this.canvas.clientWidth || r.width || 1);
    const sy = r.height / (this.canvas.clientHeight || r.height || 1);
    return { x: (e.clientX - r.left) / sx, y: (e.clientY - r.top) / sy };
  }

  /** Test / automation hooks: client coordinates of a frame's centre, a lane's centre, a curve value. */
  clientX(f) {
    const r = this.canvas.getBoundingClientRect();
    return r.left + (this.xOf(f) + this.pxPerFrame / 2) * (r.width / this.canvas.clientWidth);
  }

  clientY(name, value = null) {
    const r = this.canvas.getBoundingClientRect();
    const lane = this.lanes().find((l) => l.key === name || l.ch === name || l.kind === name || l.label === name);
    if (!lane) throw new Error(`no lane ${name}`);
    const y = value !== null && lane.kind === "curve" ? this.yOfValue(lane, value) : lane.y + lane.h / 2;
    return r.top + y * (r.height / this.canvas.clientHeight);
  }

  // ------------------------------------------------------------------------------------ input
  onDown(e) {
    e.stopPropagation();
    this.canvas.focus();
    if (this.error) return;
    const p = this.local(e);
    const lane = this.laneAt(p.y);
    if (!lane) return;
    const erase = e.button === 2 || e.shiftKey || e.altKey;
    if (e.button !== 0 && e.button !== 2) return;
    e.preventDefault();
    this.canvas.setPointerCapture?.(e.pointerId);
    const f = Math.max(0, Math.min(this.track.numFrames - 1, this.frameAt(p.x)));
    if (lane.kind === "scroll") {
      this.drag = { kind: "scroll", x0: p.x, scroll0: this.scroll };
      return;
    }
    if (p.x < LABEL_W) {
      if (lane.kind === "curve" && e.button === 0) {
        const ch = this.track.mouse[lane.ch];
        this.edit((t) => T.setInterp(t, lane.ch, ch.points && ch.interp === "step" ? "linear" : "step"));
      }
      return;
    }
    if (lane.kind === "ruler") {
      this.drag = { kind: "ruler" };
      this.setPlayhead(f);
      return;
    }
    const before = T.cloneTrack(this.track);
    if (lane.kind === "key") {
      this.drag = { kind: "key", lane, f0: f, erase, before };
      this.applyKeyDrag(f);
      return;
    }
    if (lane.kind === "curve") {
      const free = e.ctrlKey || e.metaKey;
      const range = this.curveRange(lane.ch);
      if (this.tool === "paint") {
        const v = erase ? 0 : this.valueAt(lane, p.y, free);
        T.paintStroke(this.track, lane.ch, f, v, f, v);
        this.drag = { kind: "paint", lane, ch: lane.ch, f0: f, last: [f, v], erase, before, range };
      } else if (erase) {
        const hit = this.hitPoint(lane, p);
        if (hit >= 0) {
          T.removeCurvePoint(this.track, lane.ch, hit);
          this.drag = { kind: "none", before };
        } else {
          this.drag = { kind: "cut", lane, ch: lane.ch, f0: f, before, range };
          this.applyCutDrag(f);
        }
      } else {
        let hit = this.hitPoint(lane, p);
        if (hit < 0) hit = T.addCurvePoint(this.track, lane.ch, f, this.valueAt(lane, p.y, free));
        this.drag = { kind: "point", lane, ch: lane.ch, index: hit, before, range };
      }
      this.draw();
    }
  }

  onMove(e) {
    const p = this.local(e);
    const f = Math.max(0, Math.min(this.track.numFrames - 1, this.frameAt(p.x)));
    this.hover = { f, lane: this.laneAt(p.y) };
    const d = this.drag;
    if (!d) { this.draw(); return; }
    e.stopPropagation();
    if (d.kind === "scroll") {
      const total = this.track.numFrames * this.pxPerFrame;
      const trackW = this.width() - LABEL_W - 6;
      this.scroll = d.scroll0 + (p.x - d.x0) * (total / trackW) / this.pxPerFrame;
      this.clampScroll();
    } else if (d.kind === "ruler") {
      this.setPlayhead(f);
    } else if (d.kind === "key") {
      this.applyKeyDrag(f);
    } else if (d.kind === "cut") {
      this.applyCutDrag(f);
    } else if (d.kind === "paint") {
      const v = d.erase ? 0 : this.valueAt(d.lane, p.y, e.ctrlKey || e.metaKey);
      T.paintStroke(this.track, d.ch, d.last[0], d.last[1], f, v);
      d.last = [f, v];
    } else if (d.kind === "point") {
      d.index = T.moveCurvePoint(this.track, d.ch, d.index, f, this.valueAt(d.lane, p.y, e.ctrlKey || e.metaKey));
    }
    this.draw();
  }

  onUp(e) {
    const d = this.drag;
    this.drag = null;
    if (!d) return;
    e.stopPropagation();
    this.canvas.releasePointerCapture?.(e.pointerId);
    if (d.before) {
      this.history.push(d.before);
      this.commit();
    } else {
      this.draw();
    }
  }

  applyKeyDrag(f) {
    const d = this.drag;
    this.track.keyboard[d.lane.index].set(d.before.keyboard[d.lane.index]);
    let s = Math.min(d.f0, f), e = Math.max(d.f0, f) + 1;
    if (this.snap) [s, e] = T.snapRangeToBlocks(s, e, this.track.numFrames);
    T.paintKey(this.track, d.lane.index, s, e, !d.erase);
    d.range = [s, e];
  }

  applyCutDrag(f) {
    const d = this.drag;
    const src = d.before.mouse[d.ch];
    const ch = this.track.mouse[d.ch];
    ch.values = new Float32Array(src.values);
    ch.points = src.points ? src.points.map((q) => [q[0], q[1]]) : null;
    ch.interp = src.interp;
    const s = Math.min(d.f0, f), e = Math.max(d.f0, f) + 1;
    if (ch.points) T.removeCurvePointsIn(this.track, d.ch, s, e);
    else T.paintValues(this.track, d.ch, s, e, 0);
    d.cut = [s, e];
  }

  hitPoint(lane, p) {
    const pts = this.track.mouse[lane.ch].points;
    if (!pts) return -1;
    let best = -1, bestD = 8;
    pts.forEach(([f, v], i) => {
      const dx = this.xOf(f) + this.pxPerFrame / 2 - p.x, dy = this.yOfValue(lane, v) - p.y;
      const dist = Math.hypot(dx, dy);
      if (dist < bestD) { best = i; bestD = dist; }
    });
    return best;
  }

  onWheel(e) {
    e.preventDefault();
    e.stopPropagation();
    const p = this.local(e);
    if (e.ctrlKey || e.metaKey) {
      const f = (p.x - LABEL_W) / this.pxPerFrame + this.scroll;
      this.zoomBy(e.deltaY < 0 ? 1.25 : 0.8, f, p.x);
    } else {
      const delta = Math.abs(e.deltaX) > Math.abs(e.deltaY) ? e.deltaX : e.deltaY;
      this.scroll += delta / this.pxPerFrame / 2;
      this.clampScroll();
      this.draw();
    }
  }

  zoomBy(k, anchorFrame = null, anchorX = null) {
    const fit = this.fitPpf();
    const ppf = Math.max(fit, Math.min(60, this.pxPerFrame * k));
    const f = anchorFrame ?? this.scroll + this.visibleFrames() / 2;
    const x = anchorX ?? LABEL_W + (this.width() - LABEL_W) / 2;
    this.ppf = ppf <= fit + 1e-9 ? null : ppf;
    this.scroll = f - (x - LABEL_W) / this.pxPerFrame;
    this.clampScroll();
    this.draw();
  }

  onKey(e) {
    e.stopPropagation();           // the timeline owns the keyboard while focused (no ComfyUI shortcuts)
    const k = e.key, ctrl = e.ctrlKey || e.metaKey;
    let handled = true;
    if (ctrl && (k === "z" || k === "Z") && !e.shiftKey) this.undo();
    else if (ctrl && ((k === "z" || k === "Z") && e.shiftKey || k === "y" || k === "Y")) this.redo();
    else if (ctrl) handled = false;
    else if (k === "+" || k === "=") this.zoomBy(1.5);
    else if (k === "-" || k === "_") this.zoomBy(1 / 1.5);
    else if (k === "0") { this.ppf = null; this.scroll = 0; this.draw(); }
    else if (k === "b" || k === "B") { this.snap = !this.snap; this.refreshUi(); }
    else if ((k === "p" || k === "P") && this.track.mouse) { this.tool = this.tool === "paint" ? "draw" : "paint"; this.refreshUi(); }
    else if (k === " ") this.togglePlay();
    else if (k === "ArrowLeft" || k === "ArrowRight") this.setPlayhead(this.playhead + (k === "ArrowLeft" ? -1 : 1) * (e.shiftKey ? T.BLOCK_FRAMES : 1));
    else if (k === "Home") this.setPlayhead(0);
    else if (k === "End") this.setPlayhead(this.track.numFrames - 1);
    else handled = false;
    if (handled) e.preventDefault();
  }

  setPlayhead(f) {
    this.playhead = Math.max(0, Math.min(this.track.numFrames - 1, Math.round(f)));
    const x = this.xOf(this.playhead);
    if (x < LABEL_W || x > this.width() - 10) { this.scroll = this.playhead - this.visibleFrames() / 2; this.clampScroll(); }
    this.draw();
  }

  togglePlay() {
    this.playing = !this.playing;
    if (!this.playing) return;
    let last = performance.now();
    let acc = 0;
    const step = (now) => {
      if (!this.playing || !this.root.isConnected) { this.playing = false; this.draw(); return; }
      acc += (now - last) * this.track.fps / 1000;
      last = now;
      if (acc >= 1) {
        const n = Math.floor(acc);
        acc -= n;
        this.playhead = (this.playhead + n) % this.track.numFrames;
        this.setPlayhead(this.playhead);
      }
      requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }

  // ------------------------------------------------------------------------------------ drawing
  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const W = this.width(), H = this.canvasHeight();
    if (c.width !== Math.round(W * dpr) || c.height !== Math.round(H * dpr)) {
      c.width = Math.round(W * dpr);
      c.height = Math.round(H * dpr);
    }
    this.clampScroll();
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    g.fillStyle = "#181a1f";
    g.fillRect(0, 0, W, H);
    const t = this.track;
    const ppf = this.pxPerFrame;
    const f0 = Math.max(0, Math.floor(this.scroll)), f1 = Math.min(t.numFrames, Math.ceil(this.scroll + this.visibleFrames()) + 1);
    const x0 = LABEL_W, x1 = Math.min(W - 6, this.xOf(t.numFrames));
    const lanes = this.lanes();
    g.font = "10px system-ui, sans-serif";
    g.textBaseline = "middle";

    g.save();
    g.beginPath();
    g.rect(LABEL_W, 0, W - LABEL_W, H);
    g.clip();
    // lanes' backgrounds
    for (const l of lanes) {
      if (l.kind === "key") { g.fillStyle = l.index % 2 ? "#20232a" : "#1c1f25"; g.fillRect(x0, l.y, x1 - x0, l.h); }
      if (l.kind === "curve") { g.fillStyle = "#1d2026"; g.fillRect(x0, l.y, x1 - x0, l.h); }
    }
    // latent-frame and block grid
    const bottom = lanes[lanes.length - 1].y - 2;
    for (let f = 1; f < t.numFrames; f += 4) {
      if (f < f0 - 4 || f > f1 + 4) continue;
      const x = Math.round(this.xOf(f)) + 0.5;
      if (ppf * 4 >= 6) { g.strokeStyle = "#2a2e36"; g.beginPath(); g.moveTo(x, RULER_H); g.lineTo(x, bottom); g.stroke(); }
    }
    for (const [b, [s]] of T.blockRanges(t.numFrames).entries()) {
      const x = Math.round(this.xOf(s)) + 0.5;
      g.strokeStyle = b === 0 ? "#555" : "#4d5a70";
      g.beginPath(); g.moveTo(x, 12); g.lineTo(x, bottom); g.stroke();
      g.fillStyle = "#7f95b5";
      if (ppf * (b === 0 ? 9 : 12) > 18) g.fillText(`B${b}`, x + 3, 6);
    }
    // ruler: frames and seconds
    const stepF = [1, 2, 4, 8, 12, 24, 48, 96, 240, 480, 960, 2400].find((s) => s * ppf >= 34) || 4800;
    g.fillStyle = "#aab";
    for (let f = Math.ceil(f0 / stepF) * stepF; f <= f1; f += stepF) {
      const x = Math.round(this.xOf(f)) + 0.5;
      g.strokeStyle = "#666"; g.beginPath(); g.moveTo(x, 13); g.lineTo(x, 18); g.stroke();
      g.fillText(String(f), x + 2, 17);
    }
    const secStep = [0.04, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600].find((s) => s * t.fps * ppf >= 40) || 1200;
    g.fillStyle = "#8a9";
    for (let s = Math.ceil(f0 / t.fps / secStep) * secStep; s * t.fps <= f1; s += secStep) {
      const x = Math.round(this.xOf(s * t.fps)) + 0.5;
      g.fillText(`${Number(s.toFixed(2))}s`, x + 2, 27);
      g.strokeStyle = "#4a5"; g.beginPath(); g.moveTo(x, 23); g.lineTo(x, RULER_H); g.stroke();
    }
    // key ranges
    for (const l of lanes.filter((q) => q.kind === "key")) {
      g.fillStyle = "#5b9bd5";
      for (const [s, e] of T.keyRanges(t, l.index)) {
        if (e < f0 || s > f1) continue;
        g.fillRect(this.xOf(s), l.y + 3, Math.max(1, (e - s) * ppf), l.h - 6);
      }
      const d = this.drag;
      if (d && d.kind === "key" && d.lane.index === l.index && d.range) {
        g.strokeStyle = d.erase ? "#ff8a80" : "#fff";
        g.strokeRect(this.xOf(d.range[0]) + 0.5, l.y + 1.5, (d.range[1] - d.range[0]) * ppf - 1, l.h - 3);
      }
    }
    // curves
    for (const l of lanes.filter((q) => q.kind === "curve")) {
      const ch = t.mouse[l.ch];
      const R = this.curveRange(l.ch);
      const yMid = this.yOfValue(l, 0);
      g.strokeStyle = "#3a3f4a";
      g.beginPath(); g.moveTo(x0, Math.round(yMid) + 0.5); g.lineTo(x1, Math.round(yMid) + 0.5); g.stroke();
      g.setLineDash([3, 3]);
      for (const v of [T.CAM_VALUE, -T.CAM_VALUE]) {
        const y = Math.round(this.yOfValue(l, v)) + 0.5;
        g.strokeStyle = "#3f4a3f"; g.beginPath(); g.moveTo(x0, y); g.lineTo(x1, y); g.stroke();
      }
      g.setLineDash([]);
      if (this.drag?.kind === "cut" && this.drag.ch === l.ch && this.drag.cut) {
        g.fillStyle = "rgba(255,138,128,0.15)";
        g.fillRect(this.xOf(this.drag.cut[0]), l.y, (this.drag.cut[1] - this.drag.cut[0]) * ppf, l.h);
      }
      g.strokeStyle = l.ch === "pitch" ? "#e0a458" : "#7bc96f";
      g.lineWidth = 1.5;
      g.beginPath();
      for (let f = f0; f < f1; f++) {
        const y = this.yOfValue(l, Math.max(-R, Math.min(R, ch.values[f])));
        if (f === f0) g.moveTo(this.xOf(f), y); else g.lineTo(this.xOf(f), y);
        g.lineTo(this.xOf(f + 1), y);
      }
      g.stroke();
      g.lineWidth = 1;
      if (ch.points) {
        for (const [f, v] of ch.points) {
          if (f < f0 - 1 || f > f1) continue;
          g.fillStyle = "#fff";
          g.beginPath(); g.arc(this.xOf(f) + ppf / 2, this.yOfValue(l, v), 3.5, 0, Math.PI * 2); g.fill();
        }
      }
    }
    // playhead
    const px = this.xOf(this.playhead) + ppf / 2;
    g.strokeStyle = "#ff5a5a";
    g.beginPath(); g.moveTo(Math.round(px) + 0.5, 0); g.lineTo(Math.round(px) + 0.5, bottom); g.stroke();
    g.fillStyle = "#ff5a5a";
    g.beginPath(); g.moveTo(px - 4, 0); g.lineTo(px + 4, 0); g.lineTo(px, 6); g.fill();
    // hover
    if (this.hover && !this.drag && this.hover.lane && this.hover.lane.kind !== "scroll") {
      g.fillStyle = "rgba(255,255,255,0.06)";
      g.fillRect(this.xOf(this.hover.f), RULER_H, ppf, bottom - RULER_H);
    }
    g.restore();

    // labels (left column) and axes
    const state = T.frameState(t, this.playhead);
    g.fillStyle = "#181a1f";
    g.fillRect(0, 0, LABEL_W, H);
    g.fillStyle = "#aab";
    g.fillText("frame", 4, 17);
    g.fillStyle = "#8a9";
    g.fillText(`s @${t.fps}fps`, 4, 27);
    for (const l of lanes) {
      if (l.kind === "key") {
        const held = state.keys.includes(l.key);
        g.fillStyle = held ? "#5b9bd5" : "#2b2f38";
        g.fillRect(3, l.y + 3, 16, l.h - 6);
        g.fillStyle = held ? "#fff" : "#cdd";
        g.fillText(l.label, 7, l.y + l.h / 2);
        g.fillStyle = "#99a";
        g.fillText(l.key.replace("_", " "), 23, l.y + l.h / 2);
      } else if (l.kind === "curve") {
        const ch = t.mouse[l.ch];
        const R = this.curveRange(l.ch);
        g.fillStyle = l.ch === "pitch" ? "#e0a458" : "#7bc96f";
        g.fillText(l.ch === "pitch" ? "pitch ↑+" : "yaw →+", 4, l.y + 9);
        g.fillStyle = "#99a";
        g.fillText(ch.points ? `${ch.interp} ⇄` : "painted", 4, l.y + 21);
        g.fillStyle = "#778";
        g.fillText(`±${T.formatNumber(R)} shown`, 4, l.y + l.h - 8);
        // value axis: labels inside the plot's left edge (official units; 0.1 = one camera step per frame)
        g.fillStyle = "rgba(150,170,150,0.9)";
        for (const v of [R, T.CAM_VALUE, 0, -T.CAM_VALUE, -R]) {
          const y = this.yOfValue(l, v);
          if (Math.abs(v) === R && R <= 0.2) continue;
          g.fillText(fmtVal(v), LABEL_W + 3, Math.max(l.y + 6, Math.min(l.y + l.h - 6, y - 6)));
        }
      }
    }
    // scrollbar
    const sb = lanes[lanes.length - 1];
    const trackW = W - LABEL_W - 6;
    const vis = Math.min(1, this.visibleFrames() / t.numFrames);
    g.fillStyle = "#23262d";
    g.fillRect(LABEL_W, sb.y, trackW, sb.h);
    g.fillStyle = vis >= 1 ? "#2f333b" : "#555c68";
    g.fillRect(LABEL_W + (this.scroll / t.numFrames) * trackW, sb.y + 1, Math.max(12, vis * trackW), sb.h - 2);

    if (this.error) {
      g.fillStyle = "rgba(40,0,0,0.75)";
      g.fillRect(0, 0, W, H);
      g.fillStyle = "#ff8a80";
      g.fillText("The JSON text is not a valid action track (see below); fix it with the JSON button or pick a preset.", 8, H / 2);
    }
    this.updateStatus();
  }

  updateStatus() {
    if (this.error) { this.showStatus(this.error, true); return; }
    const t = this.track;
    const f = this.hover?.f ?? this.playhead;
    const s = T.frameState(t, f);
    const where = this.hover ? "frame" : "playhead";
    let text = `${where} ${f} (${(f / t.fps).toFixed(2)} s) · block ${T.blockOfFrame(f)} · latent ${Math.floor((f + 3) / 4)}`;
    text += ` · keys ${s.keys.length ? s.keys.map((k) => T.KEY_LABELS[t.mode][T.KEYS[t.mode].indexOf(k)]).join("+") : "none"}`;
    if (t.mouse) text += ` · pitch ${fmtVal(s.pitch)} yaw ${fmtVal(s.yaw)}`;
    if (this.snap) text += " · snap";
    if (this.tool === "paint") text += " · paint";
    this.showStatus(text);
  }

  destroy() {
    clearInterval(this.timer);
    this.playing = false;
  }
}

app.registerExtension({
  name: "MatrixGame.ActionTimeline",
  nodeCreated(node) {
    const cls = node.comfyClass || node.constructor?.comfyClass || node.type;
    if (cls !== NODE_TYPE) return;
    const textWidget = node.widgets?.find((w) => w.name === TEXT_WIDGET);
    if (!textWidget) return;
    const editor = new TimelineEditor(node, textWidget);
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

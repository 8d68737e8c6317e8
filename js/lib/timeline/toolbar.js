// Timeline toolbar and DOM: the two button rows, the canvas and the status line, their CSS and the
// shortcut help. Methods of TimelineEditor (see editor.js). The rows wrap by groups, so every control
// stays reachable at any node width (the node grows taller instead of hiding buttons).

import * as T from "../track.js";
import { el } from "../dom.js";
import { STATUS_H } from "./geometry.js";

export const SHORTCUTS = [
  "Keys: drag = hold the key over frames · right-drag, Shift- or Alt-drag = erase",
  "Curves: click = add keyframe · drag = move it · right-click = delete · right-drag = delete keyframes in range",
  "Paint tool (P): drag = paint per-frame values · right-drag = paint 0",
  "Ruler: click/drag = move the playhead · Space = play/pause · ←/→ = 1 frame (Shift: 1 block)",
  "Ctrl+Z undo · Ctrl+Shift+Z / Ctrl+Y redo · B snap to blocks · + / − / 0 zoom in / out / fit",
  "Wheel = scroll · Ctrl+wheel = zoom · Ctrl while dragging a curve = unsnapped values",
].join("\n");

export const CSS = `
.mg-tl { display:flex; flex-direction:column; gap:3px; font:11px/1.2 system-ui, sans-serif; color:#ddd; box-sizing:border-box; min-width:0; user-select:none; }
.mg-tl .mg-bar { display:flex; flex-wrap:wrap; gap:3px 8px; align-items:center; min-width:0; }
.mg-tl .mg-grp { display:inline-flex; gap:3px; align-items:center; white-space:nowrap; min-height:22px; }
.mg-tl button, .mg-tl select, .mg-tl input { font:11px system-ui, sans-serif; background:#2b2b2b; color:#ddd; border:1px solid #555; border-radius:4px; height:20px; padding:0 5px; box-sizing:border-box; }
.mg-tl button:hover:not(:disabled) { background:#3a3a3a; }
.mg-tl button:disabled, .mg-tl select:disabled, .mg-tl input:disabled { opacity:.4; }
.mg-tl button.on { background:#3d5a80; border-color:#6c9bd2; }
.mg-tl input[type=number] { width:52px; }
.mg-tl select.mg-preset { max-width:120px; }
.mg-tl .mg-info { color:#9aa; }
.mg-tl .mg-info.err { color:#ff8a80; }
.mg-tl .mg-help { color:#9aa; cursor:help; border:1px solid #555; border-radius:8px; padding:0 5px; }
.mg-tl canvas { display:block; width:100%; border-radius:4px; outline:none; cursor:crosshair; touch-action:none; }
.mg-tl canvas:focus { box-shadow:0 0 0 1px #6c9bd2; }
.mg-tl .mg-status { height:${STATUS_H}px; color:#9aa; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.mg-tl .mg-status.err { color:#ff8a80; }
`;

/** What the first row shows for a track, or for JSON text that is not a valid track (`error`):
 *  then no length / fps of an older track, and the length and mode controls are off. */
export function toolbarState(track, error = null) {
  if (error) return { frames: "", fps: "", info: "⚠ invalid track JSON", editable: false };
  const blocks = T.blockRanges(track.numFrames).length;
  return {
    frames: String(track.numFrames), fps: String(track.fps), editable: true,
    info: `${(track.numFrames / track.fps).toFixed(2)} s · ${T.latentFrames(track.numFrames)} latent · ${blocks} block${blocks === 1 ? "" : "s"}`,
  };
}

export class Toolbar {
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
    this.presetSel = el("select", { className: "mg-preset", title: "Presets (replace the whole track; Undo brings it back)", onchange: () => this.updatePresetUi() });
    this.seedIn = el("input", { type: "number", min: 0, step: 1, value: 0, title: "Seed of the official random benchmark track" });
    this.undoBtn = b("↶", "Undo (Ctrl+Z)", () => this.undo());
    this.redoBtn = b("↷", "Redo (Ctrl+Shift+Z, Ctrl+Y)", () => this.redo());
    this.snapBtn = b("Snap", "Snap painted key ranges to whole blocks (B)", () => { this.snap = !this.snap; this.refreshUi(); });
    this.paintBtn = b("✎ Paint", "Curve tool (P): off = click/drag keyframes, on = paint per-frame values", () => { this.tool = this.tool === "paint" ? "draw" : "paint"; this.refreshUi(); });
    this.fileIn = el("input", { type: "file", accept: ".json,application/json", style: { display: "none" }, onchange: () => this.importFile() });
    const grp = (...kids) => el("span", { className: "mg-grp" }, kids);
    this.lessBtn = b("−", "4 frames shorter (one latent frame)", () => this.setLength(this.track.numFrames - 4));
    this.moreBtn = b("+", "4 frames longer (one latent frame)", () => this.setLength(this.track.numFrames + 4));
    this.bar1 = el("div", { className: "mg-bar" }, [
      grp(this.modeSel, el("span", { textContent: "frames" }), this.lenIn, this.lessBtn, this.moreBtn,
        el("span", { textContent: "fps" }), this.fpsIn),
      grp(this.info),
    ]);
    this.bar2 = el("div", { className: "mg-bar" }, [
      grp(this.presetSel, this.seedIn, b("Apply", "Replace the track with the preset", () => this.applyPreset())),
      grp(this.undoBtn, this.redoBtn, this.snapBtn, this.paintBtn),
      grp(b("−", "Zoom out (−, Ctrl+wheel)", () => this.zoomBy(1 / 1.5)), b("Fit", "Show the whole track (0)", () => { this.ppf = null; this.scroll = 0; this.draw(); }),
        b("+", "Zoom in (+, Ctrl+wheel)", () => this.zoomBy(1.5))),
      grp(b("Import", "Load a track .json file", () => this.fileIn.click()),
        b("Export", "Save the track as a .json file", () => this.exportFile()),
        b("JSON", "Show / hide the track's JSON text (what the node runs)", () => this.toggleJson()),
        el("span", { textContent: "?", title: SHORTCUTS, className: "mg-help" })),
      this.fileIn,
    ]);
    this.canvas = el("canvas", { tabIndex: 0, title: SHORTCUTS });
    // ComfyUI's change tracker (a window keydown listener) leaves Ctrl+Z / Ctrl+Y alone while the focus is
    // on an element with its own history: an <input>, or one whose `type` is "textarea". So while the
    // timeline has the focus these keys undo and redo the timeline only (onKey), one edit per press.
    this.canvas.type = "textarea";
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
    const rows = new ResizeObserver(() => this.layout());       // rows wrap or unwrap: the node's height follows
    rows.observe(this.bar1);
    rows.observe(this.bar2);
  }

  updatePresetUi() {
    this.seedIn.style.display = this.presetSel.value === "bench" ? "" : "none";
  }

  refreshUi() {
    const t = this.track;
    const st = toolbarState(t, this.error);
    this.modeSel.value = t.mode;
    this.lenIn.value = st.frames;
    this.fpsIn.value = st.fps;
    this.info.textContent = st.info;
    this.info.classList.toggle("err", !st.editable);
    for (const c of [this.modeSel, this.lenIn, this.fpsIn, this.lessBtn, this.moreBtn]) c.disabled = !st.editable;
    const cur = this.presetSel.value;
    this.presetSel.replaceChildren(el("option", { value: "", textContent: "Preset…" }),
      ...Object.entries(T.PRESETS).filter(([, p]) => p.modes.includes(t.mode)).map(([k, p]) => el("option", { value: k, textContent: p.label })));
    this.presetSel.value = [...this.presetSel.options].some((o) => o.value === cur) ? cur : "";
    this.updatePresetUi();
    this.undoBtn.disabled = !this.history.canUndo;
    this.redoBtn.disabled = !this.history.canRedo;
    this.snapBtn.classList.toggle("on", this.snap);
    this.paintBtn.classList.toggle("on", this.tool === "paint");
    this.paintBtn.disabled = !t.mouse || !st.editable;
    this.layout();
    this.draw();
  }

  showStatus(text, isErr = false) {
    this.status.textContent = text;
    this.status.classList.toggle("err", isErr);
  }
}

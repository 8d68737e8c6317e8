// Timeline geometry: lane layout, frame <-> x and value <-> y mapping, zoom/scroll state, and the
// test hooks (client coordinates of a frame / lane / value). Methods of TimelineEditor (see editor.js).

import * as T from "../track.js";

export const LABEL_W = 70;
export const RULER_H = 32;
export const KEY_H = 20;
export const CURVE_H = 76;
export const GAP = 6;
export const SCROLL_H = 10;
export const BAR_H = 24;
export const STATUS_H = 18;
export const VALUE_STEP = T.CAM_VALUE / 20;         // curve values snap to 0.005 (hold Ctrl for free values)


/** Copy the methods and accessors of `parts` (classes) onto `cls.prototype` (the editor is one class
 *  written in several files, one concern each). */
export function mixin(cls, ...parts) {
  for (const p of parts) {
    const d = Object.getOwnPropertyDescriptors(p.prototype);
    delete d.constructor;
    Object.defineProperties(cls.prototype, d);
  }
  return cls;
}

export class Geometry {
  /** Height of the canvas for the current mode (CSS px). */
  canvasHeight() {
    const K = T.KEYS[this.track.mode].length;
    return RULER_H + K * KEY_H + (this.track.mouse ? GAP + 2 * CURVE_H + GAP : 0) + SCROLL_H + 4;
  }

  /** Height of the two toolbar rows as laid out now (they wrap at narrow widths). */
  barsHeight() {
    const h = (this.bar1?.offsetHeight || 0) + (this.bar2?.offsetHeight || 0);
    return h > 0 ? h : 2 * BAR_H;
  }

  totalHeight() {
    return this.barsHeight() + this.canvasHeight() + STATUS_H + 4 * 3 + 4;
  }

  /** Size the canvas for the mode and the node for the toolbar rows + canvas (when either changed). */
  layout() {
    const h = this.canvasHeight(), total = this.totalHeight();
    if (this.canvas.style.height === `${h}px` && this.root.style.height === `${total}px`) return;
    this.canvas.style.height = `${h}px`;
    this.root.style.height = `${total}px`;
    const node = this.node;
    if (node?.setSize && node.computeSize) {
      const want = node.computeSize();
      node.setSize([Math.max(node.size[0], want[0]), Math.max(want[1], 0)]);
      node.setDirtyCanvas?.(true, true);
    }
  }

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
}

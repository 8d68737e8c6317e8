// Timeline input: pointer drags on key lanes / curves / ruler / scrollbar, wheel zoom and scroll,
// keyboard shortcuts, playhead and playback. Methods of TimelineEditor (see editor.js).

import * as T from "../track.js";
import { LABEL_W } from "./geometry.js";

/** "undo" / "redo" for the keyboard's undo and redo combos (Ctrl/Cmd+Z; Ctrl/Cmd+Shift+Z, Ctrl/Cmd+Y;
 *  never with Alt, as ComfyUI's own tracker reads them), else null. */
export function undoKey(e) {
  if (!(e.ctrlKey || e.metaKey) || e.altKey) return null;
  const k = String(e.key).toLowerCase();
  if (k === "z") return e.shiftKey ? "redo" : "undo";
  if (k === "y" && !e.shiftKey) return "redo";
  return null;
}

export class Input {
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
    const hist = undoKey(e);
    let handled = true;
    if (hist === "undo") this.undo();
    else if (hist === "redo") this.redo();
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
}

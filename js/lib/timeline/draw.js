// Timeline drawing: the canvas (grid, ruler, key ranges, curves, playhead, labels, scrollbar) and the
// status line. Methods of TimelineEditor (see editor.js).

import * as T from "../track.js";
import { LABEL_W, RULER_H } from "./geometry.js";

export const fmtVal = (v) => (v === 0 ? "0" : (v > 0 ? "+" : "") + T.formatNumber(v));

export class Drawing {
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
}

// Editing: every function mutates the track in place and returns it (the widget snapshots with
// cloneTrack before an edit for undo).

import { CHANNELS, KEYS, MOUSE_LIMIT, MOUSE_MODES, TrackError } from "./constants.js";
import { short } from "./errors.js";
import { f32 } from "./numbers.js";
import { blockOfFrame, blockRange, checkMode, keyIndex, nearestValidLength, refreshChannel, runs, zeroChannel } from "./model.js";

const clampFrame = (track, f) => Math.max(0, Math.min(track.numFrames, Math.round(f)));
export const clampMouse = (v) => f32(Math.max(-MOUSE_LIMIT, Math.min(MOUSE_LIMIT, v)));

/** Hold (on = true) or release key over the half-open frame range [start, end). */
export function paintKey(track, key, start, end, on = true) {
  const k = keyIndex(track, key);
  const s = clampFrame(track, Math.min(start, end)), e = clampFrame(track, Math.max(start, end));
  track.keyboard[k].fill(on ? 1 : 0, s, e);
  return track;
}

export const eraseKey = (track, key, start, end) => paintKey(track, key, start, end, false);

/** Extend [start, end) outwards to whole blocks (snapping). */
export function snapRangeToBlocks(start, end, T) {
  const s = blockRange(blockOfFrame(Math.max(0, start)))[0];
  const e = end <= 0 ? 0 : blockRange(blockOfFrame(end - 1))[1];
  return [s, Math.min(T, e)];
}

function channel(track, ch) {
  if (!track.mouse) throw new TrackError(`mode ${track.mode} has no mouse input.`);
  if (!CHANNELS.includes(ch)) throw new TrackError(`unknown mouse channel ${short(ch)}; channels are pitch and yaw.`);
  return track.mouse[ch];
}

/** Make a channel keyframed: keep its points, or turn its values into one point per run (step). */
export function toPoints(track, ch) {
  const c = channel(track, ch);
  if (!c.points) {
    c.points = runs(c.values).map(([s, v]) => [s, v]);
    c.interp = "step";
  }
  return c.points;
}

/** Replace a channel's keyframes (frames sorted and deduplicated, values clamped to +-1). */
export function setCurvePoints(track, ch, points, interp = null) {
  const c = channel(track, ch);
  const byFrame = new Map();
  for (const [f, v] of points) {
    const ff = Math.round(f);
    if (ff >= 0 && ff < track.numFrames) byFrame.set(ff, clampMouse(v));
  }
  c.points = [...byFrame.entries()].sort((a, b) => a[0] - b[0]);
  if (interp) c.interp = interp;
  refreshChannel(c, track.numFrames);
  return track;
}

/** Add (or replace) the keyframe at a frame; returns its index. */
export function addCurvePoint(track, ch, frame, value) {
  const pts = toPoints(track, ch).slice();
  const f = Math.max(0, Math.min(track.numFrames - 1, Math.round(frame)));
  const i = pts.findIndex((p) => p[0] === f);
  if (i >= 0) pts[i] = [f, value]; else pts.push([f, value]);
  setCurvePoints(track, ch, pts);
  return track.mouse[ch].points.findIndex((p) => p[0] === f);
}

/** Move keyframe i (its frame stays strictly between its neighbours'); returns its new index. */
export function moveCurvePoint(track, ch, i, frame, value) {
  const c = channel(track, ch);
  const pts = toPoints(track, ch);
  if (i < 0 || i >= pts.length) throw new TrackError(`no keyframe ${i} on ${ch}.`);
  const lo = i > 0 ? pts[i - 1][0] + 1 : 0;
  const hi = i + 1 < pts.length ? pts[i + 1][0] - 1 : track.numFrames - 1;
  const f = Math.max(lo, Math.min(hi, Math.round(frame)));
  pts[i] = [f, clampMouse(value)];
  refreshChannel(c, track.numFrames);
  return i;
}

export function removeCurvePoint(track, ch, i) {
  const c = channel(track, ch);
  const pts = toPoints(track, ch);
  if (i >= 0 && i < pts.length) pts.splice(i, 1);
  refreshChannel(c, track.numFrames);
  return track;
}

/** Remove the keyframes with frames in [start, end). */
export function removeCurvePointsIn(track, ch, start, end) {
  const c = channel(track, ch);
  const s = Math.min(start, end), e = Math.max(start, end);
  c.points = toPoints(track, ch).filter(([f]) => f < s || f >= e);
  refreshChannel(c, track.numFrames);
  return track;
}

export function setInterp(track, ch, interp) {
  if (interp !== "step" && interp !== "linear") throw new TrackError(`interp is "step" or "linear" (got ${short(interp)}).`);
  const c = channel(track, ch);
  toPoints(track, ch);
  c.interp = interp;
  refreshChannel(c, track.numFrames);
  return track;
}

/** Paint per-frame values over [start, end) (value clamped to +-1): the channel becomes painted. */
export function paintValues(track, ch, start, end, value) {
  const c = channel(track, ch);
  c.points = null;
  const s = clampFrame(track, Math.min(start, end)), e = clampFrame(track, Math.max(start, end));
  c.values.fill(clampMouse(value), s, e);
  return track;
}

/** Paint a freehand stroke segment: frames f0..f1 (inclusive) get values on the line v0 -> v1. */
export function paintStroke(track, ch, f0, v0, f1, v1) {
  const c = channel(track, ch);
  c.points = null;
  if (f1 < f0) [f0, v0, f1, v1] = [f1, v1, f0, v0];
  for (let f = Math.max(0, f0); f <= Math.min(track.numFrames - 1, f1); f++) {
    c.values[f] = clampMouse(f1 === f0 ? v1 : v0 + (v1 - v0) * (f - f0) / (f1 - f0));
  }
  return track;
}

/**
 * Change the length to the nearest 1 + 4n frames (returned track's numFrames). New frames: keys up;
 * keyframed channels go on with their last keyframe's value (keyframes past the end are dropped);
 * painted channels get 0.
 */
export function resizeTrack(track, n) {
  const T = nearestValidLength(n);
  const old = track.numFrames;
  track.keyboard = track.keyboard.map((col) => {
    const c = new Uint8Array(T);
    c.set(col.subarray(0, Math.min(old, T)));
    return c;
  });
  if (track.mouse) {
    for (const ch of CHANNELS) {
      const c = track.mouse[ch];
      if (c.points) {
        c.points = c.points.filter(([f]) => f < T);
        refreshChannel(c, T);
      } else {
        const v = new Float32Array(T);
        v.set(c.values.subarray(0, Math.min(old, T)));
        c.values = v;
      }
    }
  }
  track.numFrames = T;
  return track;
}

/** Switch the mode: keys with the same name are kept, the mouse is kept (universal <-> gta_drive),
 *  dropped (templerun) or added as no motion. */
export function setMode(track, mode) {
  checkMode(mode);
  if (mode === track.mode) return track;
  const T = track.numFrames;
  const oldNames = KEYS[track.mode];
  track.keyboard = KEYS[mode].map((k) => {
    const i = oldNames.indexOf(k);
    return i >= 0 ? new Uint8Array(track.keyboard[i]) : new Uint8Array(T);
  });
  if (!MOUSE_MODES.has(mode)) track.mouse = null;
  else if (!track.mouse) track.mouse = { pitch: zeroChannel(T), yaw: zeroChannel(T) };
  track.mode = mode;
  return track;
}

/** Keys held and mouse values at a frame (for the playhead read-out). */
export function frameState(track, f) {
  const ff = Math.max(0, Math.min(track.numFrames - 1, f));
  return {
    keys: KEYS[track.mode].filter((_, k) => track.keyboard[k][ff]),
    pitch: track.mouse ? track.mouse.pitch.values[ff] : 0,
    yaw: track.mouse ? track.mouse.yaw.values[ff] : 0,
  };
}

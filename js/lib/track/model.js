// The track object: lengths (1 + 4n), blocks, keyframed channels, creating / cloning / comparing
// tracks and reading keys and channels.

import { BLOCK_FRAMES, CHANNELS, DEFAULT_FPS, FIRST_BLOCK_FRAMES, KEYS, KEY_LABELS, MAX_FRAMES, MODES, MOUSE_MODES, TrackError } from "./constants.js";
import { short } from "./errors.js";
import { pyJsonDumps } from "./numbers.js";

// ============================================================================================ lengths
/** True when n = 1 + 4k (k >= 0), the lengths the model takes. */
export function isValidLength(n) {
  return Number.isInteger(n) && n >= 1 && (n - 1) % 4 === 0;
}

/** The nearest 1 + 4k length (ties go up), clamped to 1..MAX_FRAMES. */
export function nearestValidLength(n) {
  n = Number(n);
  if (!Number.isFinite(n) || n <= 1) return 1;
  const k = Math.floor((n - 1) / 4 + 0.5);
  return Math.min(1 + 4 * k, 1 + 4 * Math.floor((MAX_FRAMES - 1) / 4));
}

/** Latent frames a track of T video frames drives: 1 + (T - 1) // 4. */
export const latentFrames = (T) => 1 + Math.floor((T - 1) / 4);

/** Half-open video-frame ranges [start, end) of the blocks covering T frames (last one cut at T):
 *  block 0 = [0, 9), block b = [12b - 3, 12b + 9). */
export function blockRanges(T) {
  const out = [];
  let s = 0, e = FIRST_BLOCK_FRAMES;
  while (s < T) {
    out.push([s, Math.min(e, T)]);
    s = e;
    e += BLOCK_FRAMES;
  }
  return out;
}

/** Index of the block a video frame belongs to. */
export function blockOfFrame(f) {
  return f < FIRST_BLOCK_FRAMES ? 0 : 1 + Math.floor((f - FIRST_BLOCK_FRAMES) / BLOCK_FRAMES);
}

/** [start, end) of block b (not cut to any track length). */
export function blockRange(b) {
  return b === 0 ? [0, FIRST_BLOCK_FRAMES] : [BLOCK_FRAMES * b - 3, BLOCK_FRAMES * b + 9];
}

// ============================================================================================ channels
export function zeroChannel(T) {
  return { values: new Float32Array(T), points: null, interp: "step" };
}

/** Per-frame values of keyframes (ActionTrack.from_json's rule: before the first point 0; step =
 *  hold until the next point; linear = v0 + (v1 - v0) * (f - f0) / (f1 - f0) in float64, then
 *  float32; from the last point on its value holds). */
export function evalPoints(points, interp, T) {
  const out = new Float32Array(T);
  for (let i = 0; i < points.length; i++) {
    const [f0, v0] = points[i];
    const f1 = i + 1 < points.length ? points[i + 1][0] : T;
    const linear = interp === "linear" && i + 1 < points.length;
    for (let f = f0; f < Math.min(f1, T); f++) {
      out[f] = linear ? v0 + (points[i + 1][1] - v0) * (f - f0) / (f1 - f0) : v0;
    }
  }
  return out;
}

/** Runs of equal consecutive values: [[start, value], ...]. */
export function runs(values) {
  const out = [];
  for (let i = 0; i < values.length; i++) {
    if (!out.length || values[i] !== out[out.length - 1][1]) out.push([i, values[i]]);
  }
  return out;
}

export function refreshChannel(ch, T) {
  if (ch.points) ch.values = evalPoints(ch.points, ch.interp, T);
  return ch;
}

// ============================================================================================ track
export function checkMode(mode) {
  if (!MODES.includes(mode)) throw new TrackError(`Unknown mode ${short(mode)}; choose one of ${MODES.join(", ")}.`);
  return mode;
}

/** All keys up, no camera motion. */
export function emptyTrack(mode = "universal", numFrames = 57, fps = DEFAULT_FPS) {
  checkMode(mode);
  const T = numFrames;
  return {
    mode, numFrames: T, fps, meta: {},
    keyboard: KEYS[mode].map(() => new Uint8Array(T)),
    mouse: MOUSE_MODES.has(mode) ? { pitch: zeroChannel(T), yaw: zeroChannel(T) } : null,
  };
}

export function cloneTrack(t) {
  const ch = (c) => ({ values: new Float32Array(c.values), points: c.points ? c.points.map((p) => [p[0], p[1]]) : null, interp: c.interp });
  return {
    mode: t.mode, numFrames: t.numFrames, fps: t.fps, meta: JSON.parse(JSON.stringify(t.meta || {})),
    keyboard: t.keyboard.map((k) => new Uint8Array(k)),
    mouse: t.mouse ? { pitch: ch(t.mouse.pitch), yaw: ch(t.mouse.yaw) } : null,
  };
}

/** True when two tracks have the same mode, fps, meta and per-frame values. */
export function tracksEqual(a, b) {
  if (a.mode !== b.mode || a.numFrames !== b.numFrames || Number(a.fps) !== Number(b.fps)) return false;
  if (pyJsonDumps(a.meta || {}) !== pyJsonDumps(b.meta || {})) return false;
  for (let k = 0; k < a.keyboard.length; k++) {
    for (let f = 0; f < a.numFrames; f++) if (a.keyboard[k][f] !== b.keyboard[k][f]) return false;
  }
  if (!a.mouse !== !b.mouse) return false;
  if (a.mouse) {
    for (const c of CHANNELS) {
      for (let f = 0; f < a.numFrames; f++) if (a.mouse[c].values[f] !== b.mouse[c].values[f]) return false;
    }
  }
  return true;
}

export function keyIndex(track, key) {
  if (typeof key === "number") {
    if (key < 0 || key >= track.keyboard.length) throw new TrackError(`no key ${key} in mode ${track.mode}.`);
    return key;
  }
  let i = KEYS[track.mode].indexOf(key);
  if (i < 0) i = KEY_LABELS[track.mode].indexOf(String(key).toUpperCase());
  if (i < 0) throw new TrackError(`unknown key ${short(key)} for mode ${track.mode}; keys are ${KEYS[track.mode].join(", ")}.`);
  return i;
}

/** Half-open ranges [start, end) where key k is held. */
export function keyRanges(track, key) {
  const col = track.keyboard[keyIndex(track, key)];
  const out = [];
  let start = -1;
  for (let i = 0; i < col.length; i++) {
    if (col[i] && start < 0) start = i;
    else if (!col[i] && start >= 0) { out.push([start, i]); start = -1; }
  }
  if (start >= 0) out.push([start, col.length]);
  return out;
}

/** Per-frame values of a mouse channel (Float32Array; zeros of length T for templerun). */
export function channelValues(track, ch) {
  if (!track.mouse) return new Float32Array(track.numFrames);
  return track.mouse[ch].values;
}

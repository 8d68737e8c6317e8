// Presets: whole tracks built for a mode and length (walk, strafe, look around, ..., the benchmark).

import { CAM_VALUE, KEYS, TrackError } from "./constants.js";
import { short } from "./errors.js";
import { emptyTrack, isValidLength, nearestValidLength } from "./model.js";
import { paintKey, setCurvePoints } from "./edit.js";
import { benchTrack } from "./bench.js";

const hold = (track, key, s = 0, e = track.numFrames) => {
  if (KEYS[track.mode].includes(key)) paintKey(track, key, s, e);
};

/** Presets: label, the modes they apply to, and a builder that fills a fresh track of the same
 *  mode/length. "bench" takes {seed}. */
export const PRESETS = {
  walk_forward: {
    label: "Walk forward", modes: ["universal", "gta_drive", "templerun"],
    build(t) { hold(t, t.mode === "templerun" ? "nomove" : "forward"); return t; },
  },
  strafe: {
    label: "Strafe left, then right", modes: ["universal", "templerun"],
    build(t) {
      const mid = Math.floor(t.numFrames / 2);
      hold(t, t.mode === "templerun" ? "left_side" : "left", 0, mid);
      hold(t, t.mode === "templerun" ? "right_side" : "right", mid);
      return t;
    },
  },
  look_around: {
    label: "Look around (yaw sweep, then up/down)", modes: ["universal", "gta_drive"],
    build(t) {
      const T = t.numFrames, q = (x) => Math.min(T - 1, Math.round(x * (T - 1)));
      setCurvePoints(t, "yaw", [[0, 0], [q(0.15), CAM_VALUE], [q(0.4), -CAM_VALUE], [q(0.6), 0]], "linear");
      setCurvePoints(t, "pitch", [[0, 0], [q(0.6), 0], [q(0.72), CAM_VALUE / 2], [q(0.86), -CAM_VALUE / 2], [T - 1, 0]], "linear");
      return t;
    },
  },
  orbit: {
    label: "Orbit (strafe right, turn left)", modes: ["universal"],
    build(t) {
      hold(t, "right");
      setCurvePoints(t, "yaw", [[0, -CAM_VALUE / 2]], "step");
      return t;
    },
  },
  drive_curve: {
    label: "Drive and steer", modes: ["gta_drive"],
    build(t) {
      hold(t, "forward");
      const T = t.numFrames, q = (x) => Math.min(T - 1, Math.round(x * (T - 1)));
      setCurvePoints(t, "yaw", [[0, 0], [q(0.3), CAM_VALUE], [q(0.6), -CAM_VALUE], [q(0.9), 0]], "linear");
      return t;
    },
  },
  bench: {
    label: "Official benchmark (random, seeded)", modes: ["universal", "gta_drive", "templerun"],
    build(t, { seed = 0 } = {}) { return benchTrack(t.mode, t.numFrames, seed, t.fps); },
  },
  clear: {
    label: "Clear (no action)", modes: ["universal", "gta_drive", "templerun"],
    build(t) { return t; },
  },
};

/** A new track: preset `name` for the mode, length and fps of `track` (meta kept). */
export function applyPreset(track, name, opts = {}) {
  const p = PRESETS[name];
  if (!p) throw new TrackError(`unknown preset ${short(name)}; presets are ${Object.keys(PRESETS).join(", ")}.`);
  if (!p.modes.includes(track.mode)) throw new TrackError(`preset "${p.label}" is not for mode ${track.mode}.`);
  const T = isValidLength(track.numFrames) ? track.numFrames : nearestValidLength(track.numFrames);
  const fresh = emptyTrack(track.mode, T, track.fps);
  const out = p.build(fresh, opts);
  out.meta = JSON.parse(JSON.stringify(track.meta || {}));
  return out;
}

// Reading (parseTrack) and writing (canonicalJSON = ActionTrack.to_json(), serializeTrack = the
// widget's value with keyframes kept) the engine's ActionTrack JSON, version 1.

import { CAM_VALUE, CHANNELS, DEFAULT_FPS, KEYS, MAX_FRAMES, MODES, MOUSE_LIMIT, MOUSE_MODES, SCHEMA_VERSION, TrackError } from "./constants.js";
import { err, short } from "./errors.js";
import { f32, formatNumber, pyFloatRepr, pyJsonDumps } from "./numbers.js";
import { checkMode, isValidLength, keyRanges, nearestValidLength, refreshChannel, runs } from "./model.js";

const TOP_COMPACT = ["version", "mode", "num_frames", "fps", "keyboard", "mouse", "meta"];
const TOP_ALL = new Set([...TOP_COMPACT, "keyboard_rows", "mouse_rows", "$schema"]);

function isNum(v) { return typeof v === "number" && Number.isFinite(v); }

function frameNum(v, path, lo, hi, hiName) {
  if (!Number.isInteger(v)) throw err(path, `expected a whole video-frame number, got ${short(v)}.`);
  if (v < lo || v > hi) throw err(path, `frame ${v} is outside 0..${hi} (${hiName}).`);
  return v;
}

function mouseNum(v, path) {
  if (typeof v !== "number") throw err(path, `expected a number, got ${short(v)}.`);
  if (!Number.isFinite(v)) throw err(path, `${v} is not a finite number.`);
  const x = f32(v);
  if (!Number.isFinite(x)) throw err(path, `${v} is out of range.`);
  if (Math.abs(x) > MOUSE_LIMIT) {
    throw err(path, `${v} is beyond the mouse limit +-${MOUSE_LIMIT} per frame (official units: ${CAM_VALUE} = one camera step per frame); scale it down.`);
  }
  return x;
}

function parseChannel(v, T, path) {
  if (typeof v === "number") {
    const x = mouseNum(v, path);
    return { values: new Float32Array(T).fill(x), points: null, interp: "step" };
  }
  if (Array.isArray(v)) {
    if (v.length !== T) throw err(path, `a list of per-frame values needs num_frames = ${T} values, got ${v.length}.`);
    return { values: Float32Array.from(v.map((x, i) => mouseNum(x, `${path}[${i}]`))), points: null, interp: "step" };
  }
  if (v && typeof v === "object") {
    const unknown = Object.keys(v).filter((k) => k !== "points" && k !== "interp").sort();
    if (unknown.length) throw err(`${path}.${unknown[0]}`, 'unknown field; a keyframe curve has "points" and "interp".');
    if (!("points" in v)) throw err(path, 'missing "points": [[frame, value], ...].');
    const interp = "interp" in v ? v.interp : "step";
    if (interp !== "step" && interp !== "linear") throw err(`${path}.interp`, `${short(interp)} is not "step" or "linear".`);
    if (!Array.isArray(v.points)) throw err(`${path}.points`, "expected a list of [frame, value] pairs.");
    const points = [];
    v.points.forEach((p, i) => {
      const pp = `${path}.points[${i}]`;
      if (!(Array.isArray(p) && p.length === 2)) throw err(pp, `expected [frame, value], got ${short(p)}.`);
      const f = frameNum(p[0], `${pp}[0]`, 0, T - 1, "num_frames - 1");
      if (points.length && f <= points[points.length - 1][0]) {
        throw err(`${pp}[0]`, `frame ${f} must be after the previous point's frame ${points[points.length - 1][0]} (points strictly increasing).`);
      }
      points.push([f, mouseNum(p[1], `${pp}[1]`)]);
    });
    return refreshChannel({ values: null, points, interp }, T);
  }
  throw err(path, 'a mouse channel is a number, a list of per-frame values, or {"points": [[frame, value], ...], "interp": "step"}.');
}

function parseRows(rows, width, path, kind, T) {
  if (!Array.isArray(rows)) throw err(path, `expected a list of [${width}-value] rows.`);
  if (T !== null && rows.length !== T) throw err(path, `has ${rows.length} rows but num_frames is ${T}.`);
  return rows.map((r, t) => {
    const rp = `${path}[${t}]`;
    if (!(Array.isArray(r) && r.length === width)) throw err(rp, `expected a row of ${width} ${kind} values, got ${short(r)}.`);
    return r.map((x, i) => {
      if (kind === "key") {
        if (x !== 0 && x !== 1) throw err(`${rp}[${i}]`, `keys are 0 (up) or 1 (held), got ${short(x)}.`);
        return x;
      }
      return mouseNum(x, `${rp}[${i}]`);
    });
  });
}

/**
 * Parse an action track (JSON text or an already parsed object; compact or dense form), with the
 * checks of ActionTrack.from_json. Throws TrackError naming the JSON path and the fix.
 * @param {{anyLength?: boolean}} opts anyLength: accept any T >= 1 instead of 1 + 4n.
 */
export function parseTrack(input, { anyLength = false } = {}) {
  let d = input;
  if (typeof input === "string") {
    try { d = JSON.parse(input); } catch (e) {
      throw new TrackError(`action track JSON is not valid JSON: ${e.message}; fix the syntax (quotes around names, no trailing commas).`);
    }
  }
  if (!d || typeof d !== "object" || Array.isArray(d)) throw err("$", 'an action track is a JSON object {"version": 1, "mode": ..., ...}.');
  const unknown = Object.keys(d).filter((k) => !TOP_ALL.has(k)).sort();
  if (unknown.length) throw err(`$.${unknown[0]}`, `unknown field; fields are ${TOP_COMPACT.join(", ")} (or keyboard_rows / mouse_rows).`);
  if (!("version" in d)) throw err("$", `missing "version"; add "version": ${SCHEMA_VERSION}.`);
  if (!Number.isInteger(d.version)) throw err("$.version", `must be the number ${SCHEMA_VERSION}, got ${short(d.version)}.`);
  if (d.version > SCHEMA_VERSION) throw err("$.version", `version ${d.version} was written by a newer ComfyUI-MatrixGame (this one reads version ${SCHEMA_VERSION}); update the pack.`);
  if (d.version !== SCHEMA_VERSION) throw err("$.version", `unsupported version ${d.version}; this pack reads version ${SCHEMA_VERSION}.`);
  if (!("mode" in d)) throw err("$", `missing "mode"; one of ${MODES.map((m) => `"${m}"`).join(", ")}.`);
  const mode = d.mode;
  if (!MODES.includes(mode)) throw err("$.mode", `unknown mode ${short(mode)}; choose one of ${MODES.join(", ")}.`);
  const names = KEYS[mode];
  let T = null;
  if ("num_frames" in d) {
    T = d.num_frames;
    if (!Number.isInteger(T) || T < 1 || T > MAX_FRAMES) throw err("$.num_frames", `must be a whole number in 1..${MAX_FRAMES}, got ${short(T)}.`);
  }
  let fps = DEFAULT_FPS;
  if ("fps" in d) {
    if (!isNum(d.fps) || d.fps <= 0) throw err("$.fps", `must be a positive number, got ${short(d.fps)}.`);
    fps = d.fps;
  }
  const meta = "meta" in d ? d.meta : {};
  if (!meta || typeof meta !== "object" || Array.isArray(meta)) throw err("$.meta", "must be a JSON object.");

  // keyboard
  if (("keyboard" in d) === ("keyboard_rows" in d)) {
    throw err("$", 'give exactly one of "keyboard" (key -> [[start, end], ...] ranges) or "keyboard_rows" (one 0/1 row per frame).');
  }
  let keyboard;
  if ("keyboard_rows" in d) {
    const rows = parseRows(d.keyboard_rows, names.length, "$.keyboard_rows", "key", T);
    if (T === null) T = rows.length;
    if (T < 1) throw err("$.keyboard_rows", "needs at least one row.");
    keyboard = names.map((_, k) => Uint8Array.from(rows, (r) => r[k]));
  } else {
    if (T === null) throw err("$", 'missing "num_frames" (the number of video frames, 1 + 4n).');
    const kd = d.keyboard;
    if (!kd || typeof kd !== "object" || Array.isArray(kd)) throw err("$.keyboard", "expected an object {key: [[start, end], ...]}.");
    keyboard = names.map(() => new Uint8Array(T));
    for (const [k, ranges] of Object.entries(kd)) {
      const kp = `$.keyboard.${k}`;
      const col = names.indexOf(k);
      if (col < 0) throw err(kp, `unknown key ${JSON.stringify(k)} for mode '${mode}'; keys are ${names.join(", ")}.`);
      if (!Array.isArray(ranges)) throw err(kp, "expected a list of [start, end] frame ranges (end exclusive).");
      ranges.forEach((r, i) => {
        const rp = `${kp}[${i}]`;
        if (!(Array.isArray(r) && r.length === 2)) throw err(rp, `expected [start, end] (end exclusive), got ${short(r)}.`);
        const s = frameNum(r[0], `${rp}[0]`, 0, T - 1, "num_frames - 1");
        const e = frameNum(r[1], `${rp}[1]`, 1, T, "num_frames");
        if (e <= s) throw err(rp, `empty range [${s}, ${e}); end must be greater than start (end exclusive).`);
        keyboard[col].fill(1, s, e);
      });
    }
  }

  // mouse
  const hasMouse = "mouse" in d || "mouse_rows" in d;
  let mouse = null;
  if (!MOUSE_MODES.has(mode)) {
    if (hasMouse) throw err("mouse" in d ? "$.mouse" : "$.mouse_rows", `mode '${mode}' has no mouse input; remove it.`);
  } else {
    if (!hasMouse) throw err("$", `mode '${mode}' needs "mouse" (pitch/yaw per frame); add "mouse": {"pitch": 0, "yaw": 0} for no camera motion.`);
    if ("mouse" in d && "mouse_rows" in d) throw err("$", 'give only one of "mouse" and "mouse_rows".');
    if ("mouse_rows" in d) {
      const rows = parseRows(d.mouse_rows, 2, "$.mouse_rows", "mouse", T);
      mouse = {
        pitch: { values: Float32Array.from(rows, (r) => r[0]), points: null, interp: "step" },
        yaw: { values: Float32Array.from(rows, (r) => r[1]), points: null, interp: "step" },
      };
    } else {
      const md = d.mouse;
      if (!md || typeof md !== "object" || Array.isArray(md)) throw err("$.mouse", 'expected an object {"pitch": ..., "yaw": ...}.');
      const unknownCh = Object.keys(md).filter((c) => !CHANNELS.includes(c)).sort();
      if (unknownCh.length) throw err(`$.mouse.${unknownCh[0]}`, "unknown channel; channels are pitch (up +) and yaw (right +).");
      mouse = {};
      for (const c of CHANNELS) mouse[c] = parseChannel(c in md ? md[c] : 0, T, `$.mouse.${c}`);
    }
  }
  if (!anyLength && (T - 1) % 4 !== 0) {
    throw err("$.num_frames", `${T} video frames is not 1 + 4n (n + 1 latent frames); use ${nearestValidLength(T)} frames.`);
  }
  return { mode, numFrames: T, fps, meta, keyboard, mouse };
}

// ============================================================================================ writing
function dumpValue(v) {
  // v: number (already formatted as text via {num}), array, object, string
  if (v && typeof v === "object" && "num" in v) return v.num;
  if (typeof v === "number") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(dumpValue).join(", ") + "]";
  return "{" + Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${dumpValue(x)}`).join(", ") + "}";
}

const num = (x) => ({ num: formatNumber(x) });

/** ActionTrack's canonical value of a channel: number | step points | per-frame list. */
function canonicalChannel(values) {
  const r = runs(values);
  const T = values.length;
  if (r.length === 1) return num(r[0][1]);
  if (2 * r.length <= T) return { points: r.map(([s, v]) => [s, num(v)]), interp: "step" };
  return Array.from(values, num);
}

function fpsText(fps) {
  return Number.isInteger(fps) ? String(fps) : pyFloatRepr(fps);
}

function writeJSON(track, channelValue) {
  const T = track.numFrames;
  const lines = ["{"];
  const items = [
    ["version", String(SCHEMA_VERSION)],
    ["mode", JSON.stringify(track.mode)],
    ["num_frames", String(T)],
    ["fps", fpsText(Number(track.fps))],
  ];
  const names = KEYS[track.mode];
  const kb = names.map((k, i) => `    ${JSON.stringify(k)}: ${dumpValue(keyRanges(track, i))}`);
  items.push(["keyboard", null, kb]);
  if (track.mouse) {
    items.push(["mouse", null, CHANNELS.map((c) => `    ${JSON.stringify(c)}: ${dumpValue(channelValue(track.mouse[c]))}`)]);
  }
  const meta = track.meta || {};
  if (Object.keys(meta).length) items.push(["meta", pyJsonDumps(meta)]);
  items.forEach(([k, text, sub], j) => {
    const comma = j < items.length - 1 ? "," : "";
    if (sub) {
      lines.push(`  ${JSON.stringify(k)}: {`);
      sub.forEach((s, i) => lines.push(s + (i < sub.length - 1 ? "," : "")));
      lines.push("  }" + comma);
    } else {
      lines.push(`  ${JSON.stringify(k)}: ${text}${comma}`);
    }
  });
  lines.push("}");
  return lines.join("\n") + "\n";
}

/** Exactly ActionTrack.to_json() of the same track (any T >= 1). */
export function canonicalJSON(track) {
  validateTrack(track, { anyLength: true });
  return writeJSON(track, (ch) => canonicalChannel(ch.values));
}

/** The widget's value: canonicalJSON, except keyframed mouse channels keep their keyframes. */
export function serializeTrack(track) {
  validateTrack(track, { anyLength: true });
  return writeJSON(track, (ch) => (ch.points ? { points: ch.points.map(([f, v]) => [f, num(v)]), interp: ch.interp } : canonicalChannel(ch.values)));
}

/** Throws TrackError when the in-memory track could not be written as valid JSON. */
export function validateTrack(track, { anyLength = false } = {}) {
  checkMode(track.mode);
  const T = track.numFrames;
  if (!Number.isInteger(T) || T < 1 || T > MAX_FRAMES) throw new TrackError(`num_frames must be a whole number in 1..${MAX_FRAMES} (got ${T}).`);
  if (!anyLength && !isValidLength(T)) throw new TrackError(`${T} video frames is not 1 + 4n; use ${nearestValidLength(T)}.`);
  if (!isNum(Number(track.fps)) || Number(track.fps) <= 0) throw new TrackError(`fps must be a positive number (got ${track.fps}).`);
  if (track.keyboard.length !== KEYS[track.mode].length) throw new TrackError(`mode ${track.mode} needs ${KEYS[track.mode].length} key lanes.`);
  if (!!track.mouse !== MOUSE_MODES.has(track.mode)) throw new TrackError(`mode ${track.mode} ${track.mouse ? "has no" : "needs"} mouse input.`);
  if (track.mouse) {
    for (const c of CHANNELS) {
      const ch = track.mouse[c];
      if (ch.values.length !== T) throw new TrackError(`mouse ${c} has ${ch.values.length} values, expected ${T}.`);
      for (const v of ch.values) if (!Number.isFinite(v) || Math.abs(v) > MOUSE_LIMIT) throw new TrackError(`mouse ${c} value ${v} is beyond +-${MOUSE_LIMIT}.`);
      if (ch.points) {
        let prev = -1;
        for (const [f, v] of ch.points) {
          if (!Number.isInteger(f) || f <= prev || f >= T) throw new TrackError(`mouse ${c} keyframes must have increasing whole frames in 0..${T - 1}.`);
          if (!Number.isFinite(v) || Math.abs(v) > MOUSE_LIMIT) throw new TrackError(`mouse ${c} keyframe value ${v} is beyond +-${MOUSE_LIMIT}.`);
          prev = f;
        }
      }
    }
  }
  return track;
}

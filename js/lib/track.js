// Action-track model of the timeline widget: a plain ES module with no DOM dependency (Node's test
// runner imports it as is; the browser imports it from the widget and the live panel).
//
// The JSON it reads and writes is the engine's ActionTrack format (matrix_game_core/actions.py,
// version 1). canonicalJSON(track) reproduces ActionTrack.to_json() byte for byte; serializeTrack
// (the widget's value) writes the same text except that a mouse channel edited as keyframes keeps
// its keyframes ({"points": ..., "interp": "step" | "linear"}) so that curves stay editable after
// save/load. Both forms are valid input for ActionTrack.from_json, and serializeTrack(parseTrack(t))
// === t for every canonical text t.
//
// Track object (plain data; clone with cloneTrack):
//   { mode, numFrames, fps, meta,
//     keyboard: [Uint8Array(T) per key of the mode (0 up / 1 held)],
//     mouse: null (templerun) | { pitch: Channel, yaw: Channel } }
//   Channel = { values: Float32Array(T)  per-frame value, official units (0.1 = one camera step),
//               points: null (painted values) | [[frame, value], ...] keyframes (frames increasing),
//               interp: "step" | "linear" }          values are derived from points when points != null

export const SCHEMA_VERSION = 1;
export const CAM_VALUE = 0.1;
export const MOUSE_LIMIT = 1.0;
export const MAX_FRAMES = 1000000;
export const DEFAULT_FPS = 25;
export const MODES = ["universal", "gta_drive", "templerun"];
export const KEYS = {
  universal: ["forward", "back", "left", "right"],
  gta_drive: ["forward", "back"],
  templerun: ["nomove", "jump", "slide", "turn_left", "turn_right", "left_side", "right_side"],
};
export const KEY_LABELS = {
  universal: ["W", "S", "A", "D"],
  gta_drive: ["W", "S"],
  templerun: ["Q", "W", "S", "Z", "C", "A", "D"],
};
export const MOUSE_MODES = new Set(["universal", "gta_drive"]);
export const CHANNELS = ["pitch", "yaw"];
/** Video frames of the first block (3 latent frames -> 1 + 4*2) and of every later block. */
export const FIRST_BLOCK_FRAMES = 9;
export const BLOCK_FRAMES = 12;

const TOP_COMPACT = ["version", "mode", "num_frames", "fps", "keyboard", "mouse", "meta"];
const TOP_ALL = new Set([...TOP_COMPACT, "keyboard_rows", "mouse_rows", "$schema"]);

export class TrackError extends Error {
  constructor(message) {
    super(message);
    this.name = "TrackError";
  }
}

const err = (path, msg) => new TrackError(`action track JSON, ${path}: ${msg}`);
const short = (v) => {
  let s;
  try { s = JSON.stringify(v); } catch { s = String(v); }
  return (s === undefined ? String(v) : s).slice(0, 40);
};

// ============================================================================================ numbers
export const f32 = Math.fround;

/** Decimal digits and point position of a finite double's exact value: x = 0.D * 10^point. */
function exactDecimal(x) {
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, Math.abs(x));
  const hi = buf.getUint32(0), lo = buf.getUint32(4);
  const bexp = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let e2;
  if (bexp === 0) e2 = -1074;
  else { mant |= 1n << 52n; e2 = bexp - 1075; }
  let digits, point;
  if (e2 >= 0) {
    digits = (mant << BigInt(e2)).toString();
    point = digits.length;
  } else {
    digits = (mant * 5n ** BigInt(-e2)).toString();
    point = digits.length - -e2;
  }
  const stripped = digits.replace(/^0+/, "");
  point -= digits.length - stripped.length;
  return { digits: stripped, point };
}

/** Round exact decimal digits to p significant digits, half to even (C printf "%.*g" rounding). */
function roundDigits({ digits, point }, p) {
  if (digits.length <= p) return { digits, point };
  let head = digits.slice(0, p);
  const rest = digits.slice(p);
  let up;
  if (rest[0] > "5") up = true;
  else if (rest[0] < "5") up = false;
  else if (/[1-9]/.test(rest.slice(1))) up = true;
  else up = (Number(head[head.length - 1]) % 2) === 1;   // exact tie: to even
  if (up) {
    const n = (BigInt(head) + 1n).toString();
    if (n.length > head.length) { head = n.slice(0, p); point += 1; } else head = n;
  }
  return { digits: head, point };
}

/** Positional text of 0.D * 10^point (no exponent, no trailing zeros). */
function positional(digits, point, neg) {
  digits = digits.replace(/0+$/, "");
  if (!digits) return "0";
  let s;
  if (point >= digits.length) s = digits + "0".repeat(point - digits.length);
  else if (point > 0) s = digits.slice(0, point) + "." + digits.slice(point);
  else s = "0." + "0".repeat(-point) + digits;
  return (neg ? "-" : "") + s;
}

/**
 * Canonical JSON text of a float32 value (actions.format_number): the correctly rounded decimal
 * with the fewest significant digits (1..9) that reads back (as a double, then rounded to float32)
 * as the same float32; positional notation; integral values without a fraction; -0 as "0".
 */
export function formatNumber(x) {
  x = Number(x);
  if (x === 0) return "0";
  if (!Number.isFinite(x)) throw new TrackError(`cannot write ${x} into an action track; values must be finite.`);
  const v = f32(x);
  const exact = exactDecimal(v);
  let best = null;
  for (let p = 1; p <= 9; p++) {
    const r = roundDigits(exact, p);
    const cand = Number(`${v < 0 ? "-" : ""}0.${r.digits}e${r.point}`);
    if (f32(cand) === v) { best = r; break; }
  }
  if (best === null) best = roundDigits(exact, 17);
  return positional(best.digits, best.point, v < 0);
}

/** Python's repr() of a float (shortest round-trip digits; exponent form outside 1e-4 <= |x| < 1e16). */
export function pyFloatRepr(x) {
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "Infinity" : "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [m, e] = Math.abs(x).toExponential().split("e");
  const digits = m.replace(".", "");
  const exp = parseInt(e, 10);
  const sign = x < 0 ? "-" : "";
  if (exp < -4 || exp >= 16) {
    const mm = digits[0] + (digits.length > 1 ? "." + digits.slice(1) : "");
    return `${sign}${mm}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  let s;
  if (exp >= 0) {
    const ip = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
    const fp = digits.slice(exp + 1) || "0";
    s = ip + "." + fp;
  } else {
    s = "0." + "0".repeat(-exp - 1) + digits;
  }
  return sign + s;
}

/** Python json.dumps(v, sort_keys=True, separators=(", ", ": "), ensure_ascii=False). */
export function pyJsonDumps(v) {
  if (v === null || v === undefined) return "null";
  if (v === true) return "true";
  if (v === false) return "false";
  if (typeof v === "number") return Number.isInteger(v) ? String(BigInt(v)) : pyFloatRepr(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(pyJsonDumps).join(", ") + "]";
  if (typeof v === "object") {
    const keys = Object.keys(v).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return "{" + keys.map((k) => `${JSON.stringify(k)}: ${pyJsonDumps(v[k])}`).join(", ") + "}";
  }
  throw new TrackError(`cannot write a ${typeof v} into an action track's meta.`);
}

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
function zeroChannel(T) {
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

function refresh(ch, T) {
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

// ============================================================================================ parsing
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
    return refresh({ values: null, points, interp }, T);
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

// ============================================================================================ editing
// Every editing function mutates the track in place and returns it (the widget snapshots with
// cloneTrack before an edit for undo).

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
  refresh(c, track.numFrames);
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
  refresh(c, track.numFrames);
  return i;
}

export function removeCurvePoint(track, ch, i) {
  const c = channel(track, ch);
  const pts = toPoints(track, ch);
  if (i >= 0 && i < pts.length) pts.splice(i, 1);
  refresh(c, track.numFrames);
  return track;
}

/** Remove the keyframes with frames in [start, end). */
export function removeCurvePointsIn(track, ch, start, end) {
  const c = channel(track, ch);
  const s = Math.min(start, end), e = Math.max(start, end);
  c.points = toPoints(track, ch).filter(([f]) => f < s || f >= e);
  refresh(c, track.numFrames);
  return track;
}

export function setInterp(track, ch, interp) {
  if (interp !== "step" && interp !== "linear") throw new TrackError(`interp is "step" or "linear" (got ${short(interp)}).`);
  const c = channel(track, ch);
  toPoints(track, ch);
  c.interp = interp;
  refresh(c, track.numFrames);
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
        refresh(c, T);
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

// ============================================================================================ bench
/** CPython's random.Random (MT19937, init_by_array seeding, getrandbits-based randbelow). */
export class PyRandom {
  constructor(seed = 0) {
    this.mt = new Uint32Array(624);
    this.index = 624;
    let n = BigInt(seed);
    if (n < 0n) n = -n;
    const key = [];
    while (n > 0n) { key.push(Number(n & 0xffffffffn)); n >>= 32n; }
    if (!key.length) key.push(0);
    this.initByArray(key);
  }

  initGenrand(s) {
    const mt = this.mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < 624; i++) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
    this.index = 624;
  }

  initByArray(key) {
    const mt = this.mt;
    this.initGenrand(19650218);
    let i = 1, j = 0;
    for (let k = Math.max(624, key.length); k; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1664525)) + key[j] + j) >>> 0;
      i++; j++;
      if (i >= 624) { mt[0] = mt[623]; i = 1; }
      if (j >= key.length) j = 0;
    }
    for (let k = 623; k; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1566083941)) - i) >>> 0;
      i++;
      if (i >= 624) { mt[0] = mt[623]; i = 1; }
    }
    mt[0] = 0x80000000;
    this.index = 624;
  }

  genrandUint32() {
    const mt = this.mt;
    if (this.index >= 624) {
      for (let kk = 0; kk < 624; kk++) {
        const y = (mt[kk] & 0x80000000) | (mt[(kk + 1) % 624] & 0x7fffffff);
        mt[kk] = mt[(kk + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.index = 0;
    }
    let y = mt[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  getrandbits(k) {
    if (k <= 0 || k > 32) throw new RangeError("getrandbits: 1..32 bits supported");
    return this.genrandUint32() >>> (32 - k);
  }

  /** random.randint(a, b) (b - a < 2**32). */
  randint(a, b) {
    const n = b - a + 1;
    const k = Math.floor(Math.log2(n)) + 1;   // n.bit_length()
    let r = this.getrandbits(k);
    while (r >= n) r = this.getrandbits(k);
    return a + r;
  }
}

/** The official benchmark action pool of a mode: [[name, keys, [pitch, yaw]], ...] in order. */
export function benchPool(mode) {
  checkMode(mode);
  const cams = { camera_l: [0, -CAM_VALUE], camera_r: [0, CAM_VALUE] };
  const keysOf = { forward: ["forward"], back: ["back"], left: ["left"], right: ["right"],
    forward_left: ["forward", "left"], forward_right: ["forward", "right"] };
  const entry = (name) => {
    let move = name, cam = null;
    for (const c of Object.keys(cams)) {
      if (name === c) { move = null; cam = c; } else if (name.endsWith("_" + c)) { move = name.slice(0, -c.length - 1); cam = c; }
    }
    return [name, move ? keysOf[move] : [], cam ? cams[cam] : [0, 0]];
  };
  const rep = (a, n) => Array.from({ length: n }, () => a).flat();
  if (mode === "universal") {
    const moves = ["forward", "left", "right"], doubles = ["forward_left", "forward_right"], camNames = Object.keys(cams);
    const names = [...rep(doubles, 5), ...rep(camNames, 5), ...rep(moves, 5)];
    for (const a of [...moves, ...doubles]) for (const c of camNames) names.push(`${a}_${c}`);
    return names.map(entry);
  }
  if (mode === "gta_drive") {
    const moves = ["forward", "back"], camNames = Object.keys(cams);
    const names = [...rep(camNames, 2), ...rep(moves, 2)];
    for (const a of moves) for (const c of camNames) names.push(`${a}_${c}`);
    return names.map(entry);
  }
  const official = ["jump", "slide", "leftside", "rightside", "turnleft", "turnright", "nomove"];
  const ours = { leftside: "left_side", rightside: "right_side", turnleft: "turn_left", turnright: "turn_right" };
  return official.map((n) => [n, [ours[n] || n], [0, 0]]);
}

/** The official random benchmark track (actions.bench_actions(mode, T, seed)), same draws as CPython. */
export function benchTrack(mode, numFrames, seed = 0, fps = DEFAULT_FPS) {
  if (!isValidLength(numFrames)) throw new TrackError(`the benchmark track needs 1 + 4n frames (got ${numFrames}).`);
  const rng = new PyRandom(seed);
  const pool = benchPool(mode);
  const track = emptyTrack(mode, numFrames, fps);
  const names = KEYS[mode];
  const selections = [12];
  let t = 0;
  while (t < numFrames) {
    let length = selections[rng.randint(0, selections.length - 1)];
    const [, keys, m] = pool[rng.randint(0, pool.length - 1)];
    length = t === 0 ? 1 : Math.min(length, numFrames - t);
    for (const k of keys) track.keyboard[names.indexOf(k)].fill(1, t, t + length);
    if (track.mouse) {
      track.mouse.pitch.values.fill(f32(m[0]), t, t + length);
      track.mouse.yaw.values.fill(f32(m[1]), t, t + length);
    }
    t += length;
  }
  return track;
}

// ============================================================================================ presets
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

// ============================================================================================ history
/** Undo/redo of track snapshots (cloned on the way in and out). */
export class History {
  constructor(limit = 100) {
    this.limit = limit;
    this.undoStack = [];
    this.redoStack = [];
  }

  /** Record the state before an edit. */
  push(track) {
    this.undoStack.push(cloneTrack(track));
    if (this.undoStack.length > this.limit) this.undoStack.shift();
    this.redoStack.length = 0;
  }

  get canUndo() { return this.undoStack.length > 0; }
  get canRedo() { return this.redoStack.length > 0; }

  /** The state to go back to (current is kept for redo), or null. */
  undo(current) {
    if (!this.undoStack.length) return null;
    this.redoStack.push(cloneTrack(current));
    return cloneTrack(this.undoStack.pop());
  }

  redo(current) {
    if (!this.redoStack.length) return null;
    this.undoStack.push(cloneTrack(current));
    return cloneTrack(this.redoStack.pop());
  }

  clear() {
    this.undoStack.length = 0;
    this.redoStack.length = 0;
  }
}

// The live panel's logic without the DOM (Node's test runner imports it as is): keyboard/mouse
// accumulation, the binary frame messages, frame pacing, FPS and key-press -> frame latency.
//
// Accumulation follows pygame-style game loops (and Daydream Scope's controller): keys = latest
// state, mouse = summed deltas. Mouse deltas are scaled to official units here (`sensitivity` per
// pixel; 0.1 = one official camera step per frame) and the server sums every delta that arrives
// between two blocks into the next block's per-frame camera value (nodes/interactive.py).

import { CAM_VALUE, KEYS, MOUSE_LIMIT, MOUSE_MODES } from "./track.js";

/** KeyboardEvent.code -> {key: index into KEYS[mode]} or {look: [pitch, yaw] per frame while held}.
 *  The official terminal demo's keys (Matrix-Game-2 get_current_action), plus arrow keys to look. */
export const KEY_CODES = {
  universal: {
    KeyW: { key: 0 }, KeyS: { key: 1 }, KeyA: { key: 2 }, KeyD: { key: 3 },
    KeyI: { look: [CAM_VALUE, 0] }, KeyK: { look: [-CAM_VALUE, 0] }, KeyJ: { look: [0, -CAM_VALUE] }, KeyL: { look: [0, CAM_VALUE] },
    ArrowUp: { look: [CAM_VALUE, 0] }, ArrowDown: { look: [-CAM_VALUE, 0] }, ArrowLeft: { look: [0, -CAM_VALUE] }, ArrowRight: { look: [0, CAM_VALUE] },
  },
  gta_drive: {
    KeyW: { key: 0 }, KeyS: { key: 1 },
    KeyA: { look: [0, -CAM_VALUE] }, KeyD: { look: [0, CAM_VALUE] },
    ArrowLeft: { look: [0, -CAM_VALUE] }, ArrowRight: { look: [0, CAM_VALUE] },
  },
  templerun: {
    KeyQ: { key: 0 }, KeyW: { key: 1 }, KeyS: { key: 2 }, KeyZ: { key: 3 }, KeyC: { key: 4 }, KeyA: { key: 5 }, KeyD: { key: 6 },
  },
};

/** One line per mode for the panel's help text. */
export function keyHelp(mode) {
  if (mode === "universal") return "W/S/A/D move · mouse (click to lock) or I/J/K/L, arrows look · Esc releases the mouse";
  if (mode === "gta_drive") return "W/S throttle/brake · A/D or mouse steer (click to lock) · Esc releases the mouse";
  return "Q run · W jump · S slide · Z/C turn · A/D side step";
}

const clamp = (v, lim) => Math.max(-lim, Math.min(lim, v));

/** The capture state of one session: held keys, camera-key rate, summed mouse deltas. */
export class InputState {
  constructor(mode, { sensitivity = 0.0025 } = {}) {
    if (!KEYS[mode]) throw new Error(`unknown mode ${mode}`);
    this.mode = mode;
    this.codes = KEY_CODES[mode];
    this.sensitivity = sensitivity;
    this.held = new Set();
    this.keys = KEYS[mode].map(() => 0);
    this.look = [0, 0];
    this.mouse = [0, 0];
    this.nextId = 1;
    this.dirty = false;
    this.hasMouse = MOUSE_MODES.has(mode);
  }

  handles(code) { return code in this.codes; }

  _recompute() {
    const keys = KEYS[this.mode].map(() => 0);
    const look = [0, 0];
    for (const code of this.held) {
      const c = this.codes[code];
      if (c.key !== undefined) keys[c.key] = 1;
      if (c.look && this.hasMouse) { look[0] += c.look[0]; look[1] += c.look[1]; }
    }
    const changed = keys.some((v, i) => v !== this.keys[i]) || look[0] !== this.look[0] || look[1] !== this.look[1];
    this.keys = keys;
    this.look = [clamp(look[0], MOUSE_LIMIT), clamp(look[1], MOUSE_LIMIT)];
    if (changed) this.dirty = true;
    return changed;
  }

  /** A key went down; true when the state changed (auto-repeat does not). */
  keyDown(code) {
    if (!this.handles(code) || this.held.has(code)) return false;
    this.held.add(code);
    return this._recompute();
  }

  keyUp(code) {
    if (!this.held.delete(code)) return false;
    return this._recompute();
  }

  /** Everything up (focus lost). */
  releaseAll() {
    if (!this.held.size) return false;
    this.held.clear();
    return this._recompute();
  }

  /** Pointer movement in CSS pixels (movementX/Y): right = yaw +, up (negative dy) = pitch +. */
  mouseMove(dx, dy) {
    if (!this.hasMouse || (!dx && !dy)) return;
    this.mouse[0] += -dy * this.sensitivity;
    this.mouse[1] += dx * this.sensitivity;
    this.dirty = true;
  }

  get anyHeld() { return this.held.size > 0; }

  /** The next wire message ({"type": "input", ...}); hands the summed mouse over (and resets it). */
  message(t) {
    const msg = { type: "input", id: this.nextId++, keys: this.keys.slice(), t };
    if (this.hasMouse) {
      msg.mouse = [Number(this.mouse[0].toFixed(6)), Number(this.mouse[1].toFixed(6))];
      msg.look = this.look.slice();
    }
    this.mouse = [0, 0];
    this.dirty = false;
    return msg;
  }
}

/** A binary frame message -> {header, jpeg} (uint32 BE header length | header JSON | JPEG). */
export function decodeFrame(buffer) {
  const view = new DataView(buffer);
  const n = view.getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
  return { header, jpeg: new Uint8Array(buffer, 4 + n) };
}

/** Frames to show, paced at the video's fps; when more than maxLag frames wait, old ones are
 *  skipped so the view stays live. */
export class FrameQueue {
  constructor({ fps = 25, maxLag = 18 } = {}) {
    this.fps = fps;
    this.maxLag = maxLag;
    this.items = [];
    this.lastShown = -Infinity;
    this.dropped = 0;
  }

  push(item) { this.items.push(item); }

  get length() { return this.items.length; }

  /** The frame to show at time `now` (ms), or null (none due yet). */
  next(now) {
    if (!this.items.length || now - this.lastShown < 1000 / this.fps - 1) return null;
    if (this.items.length > this.maxLag) {
      const drop = this.items.length - this.maxLag;
      this.items.splice(0, drop);
      this.dropped += drop;
    }
    this.lastShown = now;
    return this.items.shift();
  }

  clear() { this.items.length = 0; }
}

/** Frames per second over a sliding window. */
export class RateMeter {
  constructor(windowMs = 2000) {
    this.windowMs = windowMs;
    this.times = [];
  }

  tick(t, n = 1) {
    for (let i = 0; i < n; i++) this.times.push(t);
    while (this.times.length && t - this.times[0] > this.windowMs) this.times.shift();
  }

  rate(t) {
    while (this.times.length && t - this.times[0] > this.windowMs) this.times.shift();
    if (this.times.length < 2) return 0;
    const span = Math.max(t - this.times[0], 1);
    return (this.times.length - 1) * 1000 / span;
  }
}

/** Key press -> first shown frame conditioned on it (frames carry the last input id their block used). */
export class LatencyMeter {
  constructor(keep = 20) {
    this.pending = new Map();
    this.samples = [];
    this.keep = keep;
    this.last = null;
  }

  press(id, t) { this.pending.set(id, t); }

  /** A frame whose block used inputs up to `actionId` is shown at `t`: returns the latency (ms) of
   *  the earliest press it answers, or null. */
  frame(actionId, t) {
    if (actionId === null || actionId === undefined) return null;
    let first = null;
    for (const [id, tp] of [...this.pending]) {
      if (id <= actionId) {
        if (first === null) first = t - tp;
        this.pending.delete(id);
      }
    }
    if (first !== null) {
      this.last = first;
      this.samples.push(first);
      if (this.samples.length > this.keep) this.samples.shift();
    }
    return first;
  }

  get mean() {
    return this.samples.length ? this.samples.reduce((a, b) => a + b, 0) / this.samples.length : null;
  }
}

/** ws:// URL of a session's websocket for an API path such as "/api/matrix_game/session/<id>/ws". */
export function wsUrl(path, location) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}${path}`;
}

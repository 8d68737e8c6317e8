// The official random benchmark track (Bench_actions_<mode>), seeded: CPython's random.Random
// re-implemented so the same seed gives the same track as the official code.

import { CAM_VALUE, DEFAULT_FPS, KEYS, TrackError } from "./constants.js";
import { f32 } from "./numbers.js";
import { checkMode, emptyTrack, isValidLength } from "./model.js";

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

// Numbers as Python writes them: float32 values, repr() of floats, json.dumps of meta
// (ActionTrack JSON is byte-identical to the engine's only if every number is written the same way).

import { TrackError } from "./constants.js";

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

// Error helpers shared by the track modules (not part of the public API; TrackError is).

import { TrackError } from "./constants.js";

export const err = (path, msg) => new TrackError(`action track JSON, ${path}: ${msg}`);
export const short = (v) => {
  let s;
  try { s = JSON.stringify(v); } catch { s = String(v); }
  return (s === undefined ? String(v) : s).slice(0, 40);
};

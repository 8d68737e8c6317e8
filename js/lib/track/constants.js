// Constants of the action-track model (modes, keys, limits, block sizes) and its error type.

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

export class TrackError extends Error {
  constructor(message) {
    super(message);
    this.name = "TrackError";
  }
}

// Unit tests of the timeline editor's pure parts (js/lib/timeline/): the keyboard undo/redo combos and
// what the toolbar shows for a track or for malformed JSON.
import { test } from "node:test";
import assert from "node:assert/strict";

import { undoKey } from "../lib/timeline/input.js";
import { toolbarState } from "../lib/timeline/toolbar.js";
import { emptyTrack, parseTrack } from "../lib/track.js";

const key = (k, mods = {}) => ({ key: k, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, ...mods });

test("undo / redo combos: Ctrl or Cmd + Z, Ctrl+Shift+Z and Ctrl+Y; nothing else", () => {
  assert.equal(undoKey(key("z", { ctrlKey: true })), "undo");
  assert.equal(undoKey(key("Z", { metaKey: true })), "undo");
  assert.equal(undoKey(key("Z", { ctrlKey: true, shiftKey: true })), "redo");
  assert.equal(undoKey(key("y", { ctrlKey: true })), "redo");
  assert.equal(undoKey(key("z")), null);
  assert.equal(undoKey(key("z", { ctrlKey: true, altKey: true })), null);
  assert.equal(undoKey(key("Y", { ctrlKey: true, shiftKey: true })), null);
  assert.equal(undoKey(key("s", { ctrlKey: true })), null);
});

test("the toolbar shows the track's length, fps and duration", () => {
  const st = toolbarState(emptyTrack("universal", 57, 25));
  assert.deepEqual(st, { frames: "57", fps: "25", editable: true, info: "2.28 s · 15 latent · 5 blocks" });
  assert.equal(toolbarState(emptyTrack("templerun", 9, 25)).info, "0.36 s · 3 latent · 1 block");
});

test("malformed JSON: no frame count or fps of the older track, the length controls are off", () => {
  let message = null;
  try { parseTrack('{"version": 1, "mode": "universal", "num_frames": 10'); } catch (e) { message = e.message; }
  assert.ok(message);
  const st = toolbarState(emptyTrack("universal", 57), message);
  assert.equal(st.frames, "");
  assert.equal(st.fps, "");
  assert.equal(st.editable, false);
  assert.match(st.info, /invalid track JSON/);
});

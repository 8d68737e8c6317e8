// Unit tests of js/lib/track.js (run: cd js && node --test tests/). The shared fixtures are written
// by the Python engine (tests/fixtures/); the Python tests read the same files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import * as T from "../lib/track.js";

const fixture = (name) => readFileSync(new URL(`../../tests/fixtures/${name}`, import.meta.url), "utf8");
const CASES = JSON.parse(fixture("track_cases.json"));
const ROUNDTRIP = fixture("action_track_roundtrip.json");

test("shared round-trip fixture: parse then serialize gives the same bytes", () => {
  const t = T.parseTrack(ROUNDTRIP);
  assert.equal(t.mode, "universal");
  assert.equal(t.numFrames, 33);
  assert.equal(T.canonicalJSON(t), ROUNDTRIP);
  assert.equal(T.serializeTrack(t), ROUNDTRIP);
  // and the values are what the JSON says
  assert.deepEqual(T.keyRanges(t, "right"), [[8, 14], [25, 33]]);
  assert.equal(t.mouse.pitch.values[5], Math.fround(0.1));
  assert.equal(t.mouse.pitch.values[12], Math.fround(-0.05));
  assert.equal(t.mouse.yaw.values[1], Math.fround(0.029688476));
});

test("canonicalJSON equals the engine's ActionTrack.to_json on every shared case", () => {
  assert.ok(CASES.cases.length >= 8);
  for (const c of CASES.cases) {
    const t = T.parseTrack(c.input);
    assert.equal(T.canonicalJSON(t), c.canonical, c.name);
    // canonical text reads back to the same values and writes identically (widget form too)
    const back = T.parseTrack(c.canonical);
    assert.ok(T.tracksEqual(t, back), c.name);
    assert.equal(T.serializeTrack(back), c.canonical, c.name);
  }
});

test("formatNumber matches actions.format_number on float32 values", () => {
  assert.ok(CASES.numbers.length > 300);
  for (const [value, text] of CASES.numbers) assert.equal(T.formatNumber(Number(value)), text, value);
  assert.equal(T.formatNumber(-0), "0");
  assert.equal(T.formatNumber(0.1), "0.1");
  assert.equal(T.formatNumber(Math.fround(1e-5)), "0.00001");
  assert.throws(() => T.formatNumber(NaN), T.TrackError);
});

test("official benchmark track: same draws as CPython's random.Random", () => {
  for (const b of CASES.bench) {
    assert.equal(T.canonicalJSON(T.benchTrack(b.mode, b.num_frames, b.seed)), b.canonical, `${b.mode} seed ${b.seed}`);
  }
  const p = T.applyPreset(T.emptyTrack("universal", 57), "bench", { seed: 42 });
  assert.equal(T.canonicalJSON(p), CASES.bench.find((b) => b.mode === "universal" && b.seed === 42 && b.num_frames === 57).canonical);
});

test("painting and erasing keys over frame ranges", () => {
  const t = T.emptyTrack("universal", 57);
  T.paintKey(t, "forward", 0, 25);
  assert.deepEqual(T.keyRanges(t, "forward"), [[0, 25]]);
  T.paintKey(t, "W", 30, 40);                  // by label, backwards ranges are fine too
  T.paintKey(t, 0, 45, 41);
  assert.deepEqual(T.keyRanges(t, 0), [[0, 25], [30, 40], [41, 45]]);
  T.eraseKey(t, "forward", 10, 35);
  assert.deepEqual(T.keyRanges(t, "forward"), [[0, 10], [35, 40], [41, 45]]);
  T.paintKey(t, "right", -5, 1000);            // clamped to the track
  assert.deepEqual(T.keyRanges(t, "right"), [[0, 57]]);
  T.eraseKey(t, "right", 0, 57);
  const json = JSON.parse(T.serializeTrack(t));
  assert.deepEqual(json.keyboard, { forward: [[0, 10], [35, 40], [41, 45]], back: [], left: [], right: [] });
  assert.throws(() => T.paintKey(t, "jump", 0, 3), /unknown key/);
});

test("snapping a painted range to whole blocks (first block 9 frames, then 12)", () => {
  assert.deepEqual(T.blockRanges(57), [[0, 9], [9, 21], [21, 33], [33, 45], [45, 57]]);
  assert.deepEqual(T.blockRanges(13), [[0, 9], [9, 13]]);
  assert.equal(T.blockOfFrame(8), 0);
  assert.equal(T.blockOfFrame(9), 1);
  assert.equal(T.blockOfFrame(33), 3);
  assert.deepEqual(T.snapRangeToBlocks(3, 10, 57), [0, 21]);
  assert.deepEqual(T.snapRangeToBlocks(22, 23, 57), [21, 33]);
  assert.deepEqual(T.snapRangeToBlocks(50, 57, 57), [45, 57]);
});

test("mouse curves: keyframes with step / linear interpolation, moving, deleting", () => {
  const t = T.emptyTrack("universal", 21);
  const i = T.addCurvePoint(t, "yaw", 10, 0.1);
  assert.equal(i, 1);                           // the constant 0 became the point [0, 0]
  assert.deepEqual(t.mouse.yaw.points, [[0, 0], [10, Math.fround(0.1)]]);
  assert.equal(t.mouse.yaw.values[9], 0);
  assert.equal(t.mouse.yaw.values[10], Math.fround(0.1));
  assert.equal(t.mouse.yaw.values[20], Math.fround(0.1));
  T.setInterp(t, "yaw", "linear");
  assert.equal(t.mouse.yaw.values[5], Math.fround(0 + (Math.fround(0.1) - 0) * 5 / 10));
  // the widget keeps the keyframes in its JSON; the engine reads the same values
  const json = JSON.parse(T.serializeTrack(t));
  assert.deepEqual(json.mouse.yaw, { points: [[0, 0], [10, 0.1]], interp: "linear" });
  const back = T.parseTrack(T.serializeTrack(t));
  assert.ok(T.tracksEqual(back, t));
  // moving a point stays between its neighbours and within +-1
  T.addCurvePoint(t, "yaw", 15, -0.05);
  const j = T.moveCurvePoint(t, "yaw", 1, 30, 5);
  assert.equal(j, 1);
  assert.deepEqual(t.mouse.yaw.points[1], [14, 1]);
  T.removeCurvePoint(t, "yaw", 1);
  assert.deepEqual(t.mouse.yaw.points.map((p) => p[0]), [0, 15]);
  T.removeCurvePointsIn(t, "yaw", 10, 21);
  assert.deepEqual(t.mouse.yaw.points, [[0, 0]]);
  assert.ok(t.mouse.yaw.values.every((v) => v === 0));
  assert.throws(() => T.setInterp(t, "yaw", "cubic"), T.TrackError);
  assert.throws(() => T.addCurvePoint(T.emptyTrack("templerun", 9), "yaw", 1, 0.1), /no mouse/);
});

test("painted curve values become the canonical per-frame form", () => {
  const t = T.emptyTrack("universal", 9);
  T.paintStroke(t, "pitch", 0, 0, 8, 0.08);
  assert.equal(t.mouse.pitch.points, null);
  assert.equal(t.mouse.pitch.values[4], Math.fround(0.04));
  const json = JSON.parse(T.serializeTrack(t));
  assert.equal(json.mouse.pitch.length, 9);
  T.paintValues(t, "pitch", 0, 9, 3);           // clamped to the limit
  assert.equal(JSON.parse(T.serializeTrack(t)).mouse.pitch, 1);
  T.paintValues(t, "pitch", 0, 9, 0);
  assert.equal(JSON.parse(T.serializeTrack(t)).mouse.pitch, 0);
});

test("length changes keep 1 + 4n frames", () => {
  for (const [n, want] of [[0, 1], [1, 1], [2, 1], [3, 5], [5, 5], [6, 5], [7, 9], [56, 57], [58, 57], [59, 61], [1e9, 999997]]) {
    assert.equal(T.nearestValidLength(n), want, `nearest to ${n}`);
  }
  const t = T.emptyTrack("universal", 33);
  T.paintKey(t, "forward", 20, 33);
  T.setCurvePoints(t, "yaw", [[0, 0.1], [30, -0.1]], "step");
  T.paintValues(t, "pitch", 0, 33, 0.05);
  T.resizeTrack(t, 46);
  assert.equal(t.numFrames, 45);
  assert.ok(T.isValidLength(t.numFrames));
  assert.deepEqual(T.keyRanges(t, "forward"), [[20, 33]]);           // new frames: keys up
  assert.equal(t.mouse.yaw.values[44], Math.fround(-0.1));           // keyframes: last value holds
  assert.equal(t.mouse.pitch.values[44], 0);                         // painted: new frames 0
  T.resizeTrack(t, 25);
  assert.equal(t.numFrames, 25);
  assert.deepEqual(T.keyRanges(t, "forward"), [[20, 25]]);
  assert.deepEqual(t.mouse.yaw.points, [[0, Math.fround(0.1)]]);     // the point at 30 is gone
  for (const n of [1, 2, 3, 4, 5, 17, 100]) {
    const r = T.resizeTrack(T.emptyTrack("templerun", 9), n);
    assert.ok(T.isValidLength(r.numFrames));
    assert.equal(T.parseTrack(T.serializeTrack(r)).numFrames, r.numFrames);
  }
});

test("mode switch keeps shared keys and adds/drops the mouse", () => {
  const t = T.emptyTrack("universal", 13);
  T.paintKey(t, "forward", 0, 5);
  T.paintKey(t, "left", 0, 5);
  T.paintValues(t, "yaw", 0, 13, 0.1);
  T.setMode(t, "gta_drive");
  assert.deepEqual(T.KEYS[t.mode], ["forward", "back"]);
  assert.deepEqual(T.keyRanges(t, "forward"), [[0, 5]]);
  assert.equal(t.mouse.yaw.values[3], Math.fround(0.1));
  T.setMode(t, "templerun");
  assert.equal(t.mouse, null);
  assert.equal(t.keyboard.length, 7);
  assert.ok(!("mouse" in JSON.parse(T.serializeTrack(t))));
  T.setMode(t, "universal");
  assert.ok(t.mouse.pitch.values.every((v) => v === 0));
});

test("presets for each mode, and their JSON is valid", () => {
  for (const mode of T.MODES) {
    for (const [name, p] of Object.entries(T.PRESETS)) {
      const base = T.emptyTrack(mode, 57);
      if (!p.modes.includes(mode)) {
        assert.throws(() => T.applyPreset(base, name), /not for mode/);
        continue;
      }
      const t = T.applyPreset(base, name, { seed: 3 });
      assert.equal(t.mode, mode);
      assert.equal(t.numFrames, 57);
      assert.ok(T.tracksEqual(T.parseTrack(T.serializeTrack(t)), t), `${mode} ${name}`);
    }
  }
  const walk = T.applyPreset(T.emptyTrack("universal", 57), "walk_forward");
  assert.deepEqual(T.keyRanges(walk, "forward"), [[0, 57]]);
  const look = T.applyPreset(T.emptyTrack("universal", 57), "look_around");
  assert.ok(Math.max(...look.mouse.yaw.values) <= Math.fround(0.1) + 1e-9);
  assert.equal(Math.max(...look.mouse.yaw.values), Math.fround(0.1));
  const orbit = T.applyPreset(T.emptyTrack("universal", 57), "orbit");
  assert.deepEqual(T.keyRanges(orbit, "right"), [[0, 57]]);
  assert.ok(orbit.mouse.yaw.values.every((v) => v === Math.fround(-0.05)));
});

test("undo / redo", () => {
  const h = new T.History(3);
  let t = T.emptyTrack("universal", 9);
  h.push(t); T.paintKey(t, "forward", 0, 3);
  h.push(t); T.paintKey(t, "back", 0, 3);
  assert.ok(h.canUndo && !h.canRedo);
  t = h.undo(t);
  assert.deepEqual(T.keyRanges(t, "back"), []);
  assert.deepEqual(T.keyRanges(t, "forward"), [[0, 3]]);
  t = h.undo(t);
  assert.deepEqual(T.keyRanges(t, "forward"), []);
  assert.equal(h.undo(t), null);
  t = h.redo(t);
  assert.deepEqual(T.keyRanges(t, "forward"), [[0, 3]]);
  t = h.redo(t);
  assert.deepEqual(T.keyRanges(t, "back"), [[0, 3]]);
  assert.equal(h.redo(t), null);
  h.push(t); T.paintKey(t, "left", 0, 1);       // a new edit clears the redo stack
  t = h.undo(t);
  h.push(t);
  assert.ok(!h.canRedo);
  for (let i = 0; i < 10; i++) h.push(t);      // bounded
  assert.equal(h.undoStack.length, 3);
});

test("parse errors name the JSON path, like the engine", () => {
  const bad = [
    ['{"version": 2, "mode": "universal"}', /\$\.version.*newer/],
    ['{"version": 1, "mode": "walk"}', /\$\.mode: unknown mode/],
    ['{"version": 1, "mode": "universal", "num_frames": 10, "keyboard": {}, "mouse": {}}', /10 video frames is not 1 \+ 4n.*use 9/],
    ['{"version": 1, "mode": "universal", "num_frames": 9, "keyboard": {"jump": []}, "mouse": {}}', /\$\.keyboard\.jump: unknown key/],
    ['{"version": 1, "mode": "universal", "num_frames": 9, "keyboard": {"left": [[4, 4]]}, "mouse": {}}', /empty range/],
    ['{"version": 1, "mode": "universal", "num_frames": 9, "keyboard": {}, "mouse": {"yaw": 2}}', /beyond the mouse limit/],
    ['{"version": 1, "mode": "universal", "num_frames": 9, "keyboard": {}}', /needs "mouse"/],
    ['{"version": 1, "mode": "templerun", "num_frames": 9, "keyboard": {}, "mouse": {}}', /no mouse input/],
    ['{"version": 1, "mode": "universal", "num_frames": 9, "keyboard": {}, "mouse": {"yaw": {"points": [[3, 0], [2, 0]]}}}', /strictly increasing/],
    ['{"version": 1, "mode": "universal", "num_frames": 9, "keyboard": {}, "mouse": {}, "extra": 1}', /\$\.extra: unknown field/],
    ["{nope", /not valid JSON/],
  ];
  for (const [text, re] of bad) assert.throws(() => T.parseTrack(text), re, text);
  assert.equal(T.parseTrack('{"version": 1, "mode": "universal", "num_frames": 10, "keyboard": {}, "mouse": {}}', { anyLength: true }).numFrames, 10);
});

test("pyFloatRepr / pyJsonDumps follow Python", () => {
  for (const [x, s] of [[29.97, "29.97"], [12.5, "12.5"], [1e16, "1e+16"], [1.5e-5, "1.5e-05"], [0.0001, "0.0001"], [123.0, "123.0"], [-2.5e-7, "-2.5e-07"]]) {
    assert.equal(T.pyFloatRepr(x), s);
  }
  assert.equal(T.pyJsonDumps({ b: [1, 2.5, "x\t"], a: { z: null, é: true } }), '{"a": {"z": null, "é": true}, "b": [1, 2.5, "x\\t"]}');
});

// Unit tests of js/lib/live.js: key/mouse accumulation, frame messages, pacing, FPS, latency.
import { test } from "node:test";
import assert from "node:assert/strict";

import { InputState, decodeFrame, FrameQueue, RateMeter, LatencyMeter, KEY_CODES, wsUrl } from "../lib/live.js";

test("keys are the latest state; auto-repeat and unmapped keys change nothing", () => {
  const s = new InputState("universal");
  assert.equal(s.keyDown("KeyW"), true);
  assert.equal(s.keyDown("KeyW"), false);        // auto-repeat
  assert.equal(s.keyDown("KeyX"), false);        // not a key of the mode
  assert.equal(s.keyDown("KeyD"), true);
  assert.deepEqual(s.keys, [1, 0, 0, 1]);
  assert.equal(s.keyUp("KeyW"), true);
  assert.deepEqual(s.keys, [0, 0, 0, 1]);
  s.keyDown("KeyL");                             // camera key: a per-frame look rate while held
  assert.deepEqual(s.look, [0, 0.1]);
  assert.equal(s.releaseAll(), true);
  assert.deepEqual(s.keys, [0, 0, 0, 0]);
  assert.deepEqual(s.look, [0, 0]);
  const t = new InputState("templerun");
  t.keyDown("KeyQ"); t.keyDown("KeyC");
  assert.deepEqual(t.keys, [1, 0, 0, 0, 1, 0, 0]);
  assert.ok(!("mouse" in t.message(0)));
  const g = new InputState("gta_drive");
  g.keyDown("KeyA");                             // gta: A/D steer through the yaw
  assert.deepEqual(g.keys, [0, 0]);
  assert.deepEqual(g.look, [0, -0.1]);
  assert.equal(Object.keys(KEY_CODES.templerun).length, 7);
});

test("mouse deltas are summed in official units until a message takes them", () => {
  const s = new InputState("universal", { sensitivity: 0.001 });
  s.mouseMove(30, 0);
  s.mouseMove(20, -10);                          // right 50 px, up 10 px
  assert.ok(s.dirty);
  const m = s.message(123.5);
  assert.deepEqual(m, { type: "input", id: 1, keys: [0, 0, 0, 0], t: 123.5, mouse: [0.01, 0.05], look: [0, 0] });
  assert.equal(s.dirty, false);
  const m2 = s.message(124);
  assert.deepEqual(m2.mouse, [0, 0]);
  assert.equal(m2.id, 2);
});

test("binary frame messages decode to header + JPEG bytes", () => {
  const header = { block: 2, index: 3, frame: 24, action_id: 7, t: 1.5 };
  const h = new TextEncoder().encode(JSON.stringify(header));
  const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xd9]);
  const buf = new ArrayBuffer(4 + h.length + jpeg.length);
  new DataView(buf).setUint32(0, h.length);
  new Uint8Array(buf, 4).set(h);
  new Uint8Array(buf, 4 + h.length).set(jpeg);
  const d = decodeFrame(buf);
  assert.deepEqual(d.header, header);
  assert.deepEqual([...d.jpeg], [...jpeg]);
});

test("frames are paced at the video fps and skipped when the view lags", () => {
  const q = new FrameQueue({ fps: 25, maxLag: 5 });
  for (let i = 0; i < 3; i++) q.push(i);
  assert.equal(q.next(1000), 0);
  assert.equal(q.next(1010), null);              // 40 ms per frame at 25 fps
  assert.equal(q.next(1040), 1);
  for (let i = 3; i < 12; i++) q.push(i);
  assert.equal(q.next(1080), 7);                 // 10 waiting > 5: skip to the newest 5
  assert.equal(q.dropped, 5);
  assert.equal(q.length, 4);
});

test("FPS over a sliding window and key-press -> frame latency", () => {
  const r = new RateMeter(1000);
  for (let t = 0; t <= 1000; t += 40) r.tick(t);
  assert.ok(Math.abs(r.rate(1000) - 25) < 0.01);
  assert.equal(r.rate(5000), 0);
  const l = new LatencyMeter();
  l.press(3, 100);
  l.press(4, 150);
  assert.equal(l.frame(null, 200), null);        // no input behind this frame yet
  assert.equal(l.frame(2, 300), null);           // conditioned on an older input
  assert.equal(l.frame(4, 1100), 1000);          // answers press 3 (first) and 4
  assert.equal(l.frame(4, 1200), null);          // already answered
  assert.equal(l.last, 1000);
  assert.equal(l.mean, 1000);
});

test("websocket URL follows the page's scheme and host", () => {
  assert.equal(wsUrl("/api/matrix_game/session/ab/ws", { protocol: "http:", host: "127.0.0.1:8188" }), "ws://127.0.0.1:8188/api/matrix_game/session/ab/ws");
  assert.equal(wsUrl("/x", { protocol: "https:", host: "h" }), "wss://h/x");
});

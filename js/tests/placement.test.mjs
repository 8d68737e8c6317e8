// Unit tests of js/lib/placement.js: where "→ Timeline" puts its new node.
import { test } from "node:test";
import assert from "node:assert/strict";

import { freeSpotBeside, overlaps } from "../lib/placement.js";

const live = [0, 0, 400, 500];

test("an empty right side: the new node goes right of the anchor, top-aligned", () => {
  assert.deepEqual(freeSpotBeside(live, [600, 300], [live]), [440, 0]);
});

test("a node in the way on the right: the new node moves down past it, overlapping nothing", () => {
  const blocker = [450, -20, 300, 200];
  const spot = freeSpotBeside(live, [600, 300], [live, blocker]);
  assert.deepEqual(spot, [440, 220]);
  assert.ok(![live, blocker].some((r) => overlaps([...spot, 600, 300], r)));
});

test("the right side taken for more than the anchor's height: below the anchor instead", () => {
  const tall = [450, -100, 500, 640];          // reaches y = 540: the right column frees only at 580
  const spot = freeSpotBeside(live, [600, 300], [live, tall]);
  assert.deepEqual(spot, [0, 540]);
});

test("both sides crowded: the nearest free spot, never an overlap", () => {
  const rects = [live, [420, -100, 500, 1400], [-50, 520, 1500, 900]];
  const spot = freeSpotBeside(live, [600, 300], rects);
  assert.ok(!rects.some((r) => overlaps([...spot, 600, 300], r)), String(spot));
});

test("touching edges are not an overlap", () => {
  assert.equal(overlaps([0, 0, 10, 10], [10, 0, 10, 10]), false);
  assert.equal(overlaps([0, 0, 10, 10], [9, 9, 10, 10]), true);
});

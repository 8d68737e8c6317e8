// Where to put a new node next to an existing one without covering other nodes (pure geometry; the
// live panel's "→ Timeline" uses it). Rectangles are [x, y, width, height] in graph units, title
// bar included.

/** True when rectangles a and b overlap (touching edges do not). */
export function overlaps(a, b) {
  return a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3];
}

/** Slide rect r along one axis (1 = y, 0 = x) past every rect it overlaps until it overlaps none. */
function slide(r, rects, axis, gap) {
  const out = [...r];
  for (let i = 0; i <= rects.length; i++) {
    const hit = rects.filter((q) => overlaps(out, q));
    if (!hit.length) return out;
    out[axis] = Math.max(...hit.map((q) => q[axis] + q[axis + 2])) + gap;
  }
  return out;
}

/**
 * Top-left corner for a new rect of `size` [w, h] beside `anchor`: to its right (moved down past
 * whatever is in the way), or below it (moved right) when the right side is taken for more than the
 * anchor's height; never overlapping any of `rects` (the other nodes, title bars included).
 * @returns {[number, number]}
 */
export function freeSpotBeside(anchor, size, rects, gap = 40) {
  const [ax, ay, aw, ah] = anchor;
  const [w, h] = size;
  const others = rects.filter((q) => q !== anchor);
  const right = slide([ax + aw + gap, ay, w, h], others, 1, gap);
  if (right[1] - ay <= ah) return [right[0], right[1]];
  const below = slide([ax, ay + ah + gap, w, h], others, 0, gap);
  if (below[0] - ax <= aw) return [below[0], below[1]];
  const d = (r) => Math.hypot(r[0] - (ax + aw), r[1] - ay);
  const best = d(right) <= d(below) ? right : below;
  return [best[0], best[1]];
}

// Small DOM helpers shared by the pack's widgets (browser only; no ComfyUI import).

/** Add a <style> element with `css` once per page (keyed by `id`). */
export function injectCss(id, css) {
  if (document.getElementById(id)) return;
  const s = document.createElement("style");
  s.id = id;
  s.textContent = css;
  document.head.appendChild(s);
}

/** Create an element: `props` sets properties, `style` / `dataset` objects, and `on<event>` listeners. */
export function el(tag, props = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "style") Object.assign(e.style, v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

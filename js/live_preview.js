// Live view of "Matrix-Game Live Session" nodes: shows every streamed frame on the node (and on an
// optional floating panel), captures the mode's keys and the pointer-locked mouse while focused,
// and sends them to the session (keys = latest state, mouse = summed deltas in official units).
// The server side is nodes/interactive.py; the DOM-free logic is js/lib/live.js.

import { app } from "../../scripts/app.js";
import { el, injectCss } from "./lib/dom.js";
import { api } from "../../scripts/api.js";
import { FrameQueue, InputState, LatencyMeter, RateMeter, decodeFrame, keyHelp, wsUrl } from "./lib/live.js";
import { KEY_LABELS, KEYS } from "./lib/track.js";
import { freeSpotBeside } from "./lib/placement.js";

const NODE_TYPE = "MatrixGameLiveSession";
const JSON_NODE = "MatrixGameActionsFromJSON";
const EVENT = "matrix_game.session";
const HEARTBEAT_MS = 1000;          // while keys are held, their state is re-sent this often

const views = new Set();
/** The live view of a node (by node id or execution id such as "5:3"). */
function viewFor(nodeId) {
  if (nodeId === null || nodeId === undefined) return null;
  const id = String(nodeId);
  const last = id.split(":").pop();
  for (const v of views) if (String(v.node.id) === id) return v;
  for (const v of views) if (String(v.node.id) === last) return v;
  return null;
}
window.MatrixGameLive = { views, viewFor };
/** Frames narrower than this are drawn scaled up by a whole factor (the embedded model's 112 px). */
const MIN_CANVAS_WIDTH = 640;

const CSS = `
.mg-live { display:flex; flex-direction:column; gap:4px; height:100%; min-height:260px; box-sizing:border-box; font:11px/1.3 system-ui, sans-serif; color:#ddd; }
.mg-live .mg-screen, .mg-panel .mg-screen { position:relative; flex:1 1 auto; min-height:150px; background:#000; border-radius:4px; overflow:hidden; }
.mg-screen canvas { position:absolute; inset:0; width:100%; height:100%; object-fit:contain; outline:none; cursor:pointer; }
.mg-screen canvas:focus { box-shadow:inset 0 0 0 2px #6c9bd2; }
.mg-screen .mg-hint { position:absolute; left:0; right:0; bottom:0; padding:4px 6px; background:rgba(0,0,0,.6); color:#eee; pointer-events:none; text-align:center; }
.mg-hud { white-space:nowrap; overflow:hidden; text-overflow:ellipsis; color:#9ab; height:15px; }
.mg-live .mg-bar { display:flex; gap:4px; flex-wrap:nowrap; overflow-x:auto; }
.mg-live button, .mg-panel button { font:11px system-ui, sans-serif; background:#2b2b2b; color:#ddd; border:1px solid #555; border-radius:4px; height:22px; padding:0 7px; }
.mg-live button:hover:not(:disabled), .mg-panel button:hover { background:#3a3a3a; }
.mg-live button:disabled { opacity:.4; }
.mg-panel { position:fixed; right:24px; bottom:24px; width:700px; height:440px; min-width:320px; min-height:220px; z-index:10000; display:flex; flex-direction:column; gap:4px;
  background:#1b1d22; border:1px solid #555; border-radius:6px; padding:6px; box-shadow:0 6px 24px rgba(0,0,0,.5); resize:both; overflow:hidden; font:11px system-ui, sans-serif; color:#ddd; }
.mg-panel .mg-head { display:flex; align-items:center; gap:6px; cursor:move; user-select:none; }
.mg-panel .mg-head span { flex:1; font-weight:600; }
`;



function chain(obj, name, fn) {
  const orig = obj[name];
  obj[name] = function (...args) {
    const r = orig?.apply(this, args);
    fn.apply(this, args);
    return r;
  };
}

class LiveView {
  constructor(node) {
    injectCss("mg-live-css", CSS);
    this.node = node;
    this.info = null;          // the session (server info)
    this.state = "idle";       // idle | connecting | waiting | running | ended | disconnected
    this.ws = null;
    this.input = null;
    this.queue = new FrameQueue({ fps: 25 });
    this.shownRate = new RateMeter(2000);
    this.genRate = new RateMeter(5000);
    this.latency = new LatencyMeter();
    this.decoding = Promise.resolve();
    this.framesReceived = 0;
    this.framesShown = 0;
    this.blocks = 0;
    this.lastSent = 0;
    this.trackJson = null;
    this.endReason = null;
    this.message = "";
    this.lastBitmap = null;
    this.surfaces = [];
    this.panel = null;
    this.build();
    this.alive = true;
    const loop = (now) => {
      if (!this.alive) return;
      this.tick(now);
      requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
    this.timer = setInterval(() => this.flush(false), 50);
    this.onPointerMove = (e) => this.pointerMove(e);
    document.addEventListener("mousemove", this.onPointerMove);
  }

  // ------------------------------------------------------------------------------------ DOM
  build() {
    const b = (text, title, on) => el("button", { textContent: text, title, onclick: (e) => { e.preventDefault(); e.stopPropagation(); on(); } });
    this.runBtn = b("▶ Run", "Queue this node (what it needs, and the outputs fed by it): opens a new live session", () => this.run());
    this.stopBtn = b("■ Stop", "End the session; the node outputs the frames played and the recorded track", () => this.stop());
    this.panelBtn = b("Panel", "Open a larger floating live view (also captures keys and mouse)", () => this.togglePanel());
    this.timelineBtn = b("→ Timeline", "Put the recorded track into a new Actions (JSON) timeline node, to edit it and re-render offline", () => this.toTimeline());
    const screen = this.makeScreen();
    this.hud = el("div", { className: "mg-hud" });
    this.root = el("div", { className: "mg-live" }, [screen.wrap, this.hud, el("div", { className: "mg-bar" }, [this.runBtn, this.stopBtn, this.panelBtn, this.timelineBtn])]);
    this.canvas = screen.canvas;
    this.refresh();
  }

  makeScreen() {
    const canvas = el("canvas", { tabIndex: 0, width: 640, height: 352, title: "Click to play: keys and (pointer-locked) mouse go to the live session" });
    const hint = el("div", { className: "mg-hint" });
    const wrap = el("div", { className: "mg-screen" }, [canvas, hint]);
    const surface = { canvas, hint };
    this.surfaces.push(surface);
    canvas.addEventListener("keydown", (e) => this.key(e, true));
    canvas.addEventListener("keyup", (e) => this.key(e, false));
    canvas.addEventListener("keypress", (e) => e.stopPropagation());
    canvas.addEventListener("blur", () => { if (this.input?.releaseAll()) this.flush(true); this.refresh(); });
    canvas.addEventListener("focus", () => this.refresh());
    canvas.addEventListener("pointerdown", (e) => {
      e.stopPropagation();
      canvas.focus();
      if (this.input?.hasMouse && this.live && e.button === 0 && document.pointerLockElement !== canvas) {
        try {
          const p = canvas.requestPointerLock?.();
          p?.catch?.(() => {});
        } catch { /* no pointer lock here: dragging moves the camera instead */ }
      }
    });
    canvas.addEventListener("contextmenu", (e) => { e.preventDefault(); e.stopPropagation(); });
    canvas.addEventListener("wheel", (e) => e.stopPropagation(), { passive: true });
    return { canvas, hint, wrap };
  }

  get live() { return this.state === "waiting" || this.state === "running"; }

  // ------------------------------------------------------------------------------------ session
  attach(info) {
    if (this.info && this.info.session === info.session && this.ws) return;
    this.closeSocket();
    this.info = info;
    this.input = new InputState(info.mode);
    this.queue.clear();
    if (info.fps > 0) this.queue.fps = info.fps;   // the model's frame rate (17.5 for the embedded ViZDoom model)
    this.latency = new LatencyMeter();
    this.framesReceived = this.framesShown = this.blocks = 0;
    this.trackJson = null;
    this.endReason = null;
    this.message = "";
    this.state = "connecting";
    const ws = new WebSocket(wsUrl(api.apiURL(`/matrix_game/session/${info.session}/ws`), window.location));
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { if (this.ws === ws) { this.state = "waiting"; this.refresh(); } };
    ws.onmessage = (e) => { if (this.ws === ws) (typeof e.data === "string" ? this.onText(JSON.parse(e.data)) : this.onFrame(e.data)); };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.live || this.state === "connecting") this.state = "disconnected";
      this.refresh();
    };
    this.ws = ws;
    this.refresh();
    // take the keyboard for the session unless the user is typing somewhere else
    const a = document.activeElement;
    const typing = a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.isContentEditable);
    if (!typing && a !== this.activeCanvas()) this.activeCanvas().focus({ preventScroll: true });
  }

  onText(msg) {
    if (msg.type === "session") {
      this.info = { ...this.info, ...msg };
      if (msg.state === "running") this.state = "running";
    } else if (msg.type === "block") {
      this.state = "running";
      this.blocks = msg.block + 1;
      this.lastBlock = msg;
    } else if (msg.type === "ended") {
      this.ended(msg);
    } else if (msg.type === "error") {
      this.message = msg.message;
    }
    this.refresh();
  }

  onFrame(buffer) {
    const { header, jpeg } = decodeFrame(buffer);
    this.framesReceived += 1;
    this.genRate.tick(performance.now());
    const blob = new Blob([jpeg], { type: "image/jpeg" });
    this.decoding = this.decoding.then(() => createImageBitmap(blob)).then((bmp) => this.queue.push({ header, bmp })).catch(() => {});
  }

  ended(msg) {
    clearTimeout(this.endTimer);
    if (this.state === "ended" && this.endReason) return;
    this.state = "ended";
    this.endReason = msg.reason;
    if (msg.track) this.trackJson = msg.track;
    this.blocks = msg.block ?? this.blocks;
    this.input = null;
    if (this.surfaces.some((s) => document.pointerLockElement === s.canvas)) document.exitPointerLock?.();
    this.refresh();
  }

  /** ComfyUI's websocket says the session ended: our own socket still delivers its last frames and
   *  its own "ended" message, so wait for it (briefly) before closing the view's session. */
  endedElsewhere(detail) {
    if (this.info && detail.session !== this.info.session) return;
    if (this.ws && this.ws.readyState <= 1) {
      clearTimeout(this.endTimer);
      this.endTimer = setTimeout(() => this.ended(detail), 5000);
    } else {
      this.ended(detail);
    }
  }

  closeSocket() {
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= 1) ws.close();
  }

  /** Send the input state when it changed (or, while keys are held, every HEARTBEAT_MS). */
  flush(force, press = false) {
    const ws = this.ws, inp = this.input;
    if (!ws || ws.readyState !== 1 || !inp || !this.live) return;
    const now = performance.now();
    if (!(force || inp.dirty || (inp.anyHeld && now - this.lastSent > HEARTBEAT_MS))) return;
    const msg = inp.message(now);
    if (press) this.latency.press(msg.id, now);
    ws.send(JSON.stringify(msg));
    this.lastSent = now;
  }

  key(e, down) {
    if (!this.input || !this.live) return;
    e.stopPropagation();                 // no ComfyUI shortcuts while playing
    if (!this.input.handles(e.code)) return;
    e.preventDefault();
    const changed = down ? this.input.keyDown(e.code) : this.input.keyUp(e.code);
    if (changed) this.flush(true, down);
    this.refresh();
  }

  pointerMove(e) {
    if (!this.input || !this.live) return;
    const locked = this.surfaces.some((s) => document.pointerLockElement === s.canvas);
    const dragging = (e.buttons & 1) && this.surfaces.some((s) => s.canvas === document.activeElement && s.canvas.contains(e.target));
    if (locked || dragging) this.input.mouseMove(e.movementX || 0, e.movementY || 0);
  }

  /** This node and the output nodes downstream of it (e.g. the Save Video of the played frames). */
  runTargets() {
    const graph = this.node.graph || app.graph;
    const ids = new Set([String(this.node.id)]);
    const seen = new Set();
    const stack = [this.node];
    while (stack.length) {
      const n = stack.pop();
      if (!n || seen.has(n.id)) continue;
      seen.add(n.id);
      if (n !== this.node && n.constructor?.nodeData?.output_node && n.mode === 0) ids.add(String(n.id));
      for (const out of n.outputs || []) {
        for (const linkId of out.links || []) {
          const link = graph.links?.get?.(linkId) ?? graph.links?.[linkId];
          if (link) stack.push(graph.getNodeById(link.target_id));
        }
      }
    }
    return [...ids];
  }

  async run() {
    try {
      await app.queuePrompt(0, 1, this.runTargets());
    } catch {
      await app.queuePrompt(0, 1);
    }
  }

  async stop() {
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify({ type: "stop" }));
    else if (this.info && this.live) await api.fetchApi(`/matrix_game/session/${this.info.session}/stop`, { method: "POST" });
  }

  toTimeline() {
    if (!this.trackJson) return;
    const LG = window.LiteGraph;
    const n = LG.createNode(JSON_NODE);
    if (!n) return;
    app.graph.add(n);
    const w = n.widgets?.find((x) => x.name === "track_json");
    if (w) w.value = this.trackJson;
    n.title = `Played track (${this.info?.mode ?? ""})`;
    // free space beside the live node (the new node's size is known once it is in the graph)
    const title = LG.NODE_TITLE_HEIGHT || 30;
    const rect = (q) => [q.pos[0], q.pos[1] - title, q.size[0], q.size[1] + title];
    const others = app.graph.nodes.filter((q) => q !== n && q !== this.node).map(rect);
    const [x, y] = freeSpotBeside(rect(this.node), [n.size[0], n.size[1] + title], others);
    n.pos = [x, y + title];
    app.graph.setDirtyCanvas(true, true);
    this.timelineNode = n;
    return n;
  }

  // ------------------------------------------------------------------------------------ panel
  togglePanel() {
    if (this.panel) { this.closePanel(); return; }
    const close = el("button", { textContent: "✕", title: "Close the panel", onclick: () => this.closePanel() });
    const title = el("span", { textContent: `Matrix-Game live · node ${this.node.id}` });
    const head = el("div", { className: "mg-head" }, [title, close]);
    const screen = this.makeScreen();
    const hud = el("div", { className: "mg-hud" });
    const panel = el("div", { className: "mg-panel" }, [head, screen.wrap, hud]);
    head.addEventListener("pointerdown", (e) => {
      if (e.target === close) return;
      const r = panel.getBoundingClientRect();
      const dx = e.clientX - r.left, dy = e.clientY - r.top;
      const move = (ev) => { panel.style.left = `${ev.clientX - dx}px`; panel.style.top = `${ev.clientY - dy}px`; panel.style.right = "auto"; panel.style.bottom = "auto"; };
      const up = () => { document.removeEventListener("pointermove", move); document.removeEventListener("pointerup", up); };
      document.addEventListener("pointermove", move);
      document.addEventListener("pointerup", up);
    });
    document.body.append(panel);
    this.panel = { el: panel, surface: this.surfaces[this.surfaces.length - 1], hud };
    if (this.lastBitmap) this.paint(this.lastBitmap);
    screen.canvas.focus();
    this.refresh();
  }

  closePanel() {
    if (!this.panel) return;
    this.surfaces = this.surfaces.filter((s) => s !== this.panel.surface);
    this.panel.el.remove();
    this.panel = null;
    this.refresh();
  }

  activeCanvas() {
    return this.panel ? this.panel.surface.canvas : this.canvas;
  }

  // ------------------------------------------------------------------------------------ drawing
  tick(now) {
    const item = this.queue.next(now);
    if (!item) return;
    this.paint(item.bmp);
    if (this.lastBitmap && this.lastBitmap !== item.bmp) this.lastBitmap.close?.();
    this.lastBitmap = item.bmp;
    this.lastHeader = item.header;
    this.framesShown += 1;
    this.shownRate.tick(now);
    this.latency.frame(item.header.action_id, now);
    this.refresh();
  }

  paint(bmp) {
    // small frames (the embedded model's 112x64) are drawn scaled up, so the key overlay stays readable
    const k = Math.max(1, Math.round(MIN_CANVAS_WIDTH / bmp.width));
    for (const { canvas } of this.surfaces) {
      if (canvas.width !== bmp.width * k || canvas.height !== bmp.height * k) {
        canvas.width = bmp.width * k;
        canvas.height = bmp.height * k;
      }
      const g = canvas.getContext("2d");
      g.imageSmoothingQuality = "high";
      g.drawImage(bmp, 0, 0, canvas.width, canvas.height);
      this.drawKeys(g, canvas.width, canvas.height);
    }
  }

  drawKeys(g, W, H) {
    const inp = this.input;
    const mode = this.info?.mode;
    if (!mode) return;
    const labels = KEY_LABELS[mode];
    const held = inp ? inp.keys : KEYS[mode].map(() => 0);
    const s = Math.max(14, Math.round(H / 18));
    g.font = `${Math.round(s * 0.6)}px system-ui, sans-serif`;
    g.textAlign = "center";
    g.textBaseline = "middle";
    labels.forEach((l, i) => {
      const x = 8 + i * (s + 4), y = H - s - 8;
      g.fillStyle = held[i] ? "rgba(80,200,120,0.85)" : "rgba(60,60,60,0.55)";
      g.fillRect(x, y, s, s);
      g.fillStyle = "#fff";
      g.fillText(l, x + s / 2, y + s / 2 + 1);
    });
    g.textAlign = "left";
  }

  hint(focused) {
    if (this.state === "idle") return "Run the workflow (or ▶ Run) to open a live session";
    if (this.state === "connecting") return "Connecting…";
    if (this.state === "disconnected") return "Disconnected from the session";
    if (this.state === "ended") {
      return `Session ended (${this.endReason}) · ${this.framesReceived} frames` + (this.trackJson ? " · → Timeline edits the played track" : "");
    }
    if (!focused) return "Click here to play (keys + mouse go to the world)";
    if (this.state === "waiting") return `Press a key or move the mouse to start · ${keyHelp(this.info.mode)}`;
    return keyHelp(this.info.mode);
  }

  refresh() {
    for (const s of this.surfaces) {
      const focused = document.activeElement === s.canvas;
      const text = this.hint(focused);
      s.hint.textContent = text;
      s.hint.style.display = this.state === "running" && focused ? "none" : "";
    }
    const now = performance.now();
    const parts = [`● ${this.state}`];
    if (this.info) parts.push(`${this.info.mode}`, `block ${this.blocks}/${this.info.max_blocks ?? "?"}`);
    if (this.framesShown) parts.push(`${this.shownRate.rate(now).toFixed(1)} fps`);
    if (this.framesReceived) parts.push(`gen ${this.genRate.rate(now).toFixed(1)} fps`);
    if (this.latency.last !== null) parts.push(`latency ${Math.round(this.latency.last)} ms`);
    if (this.input) {
      const held = KEY_LABELS[this.input.mode].filter((_, i) => this.input.keys[i]);
      if (held.length) parts.push(`keys ${held.join("+")}`);
    }
    if (this.message) parts.push(`⚠ ${this.message}`);
    const hud = parts.join(" · ");
    this.hud.textContent = hud;
    this.hud.title = hud;
    if (this.panel) this.panel.hud.textContent = hud;
    this.runBtn.disabled = this.live || this.state === "connecting";
    this.stopBtn.disabled = !this.live;
    this.timelineBtn.disabled = !this.trackJson;
  }

  destroy() {
    this.alive = false;
    clearInterval(this.timer);
    document.removeEventListener("mousemove", this.onPointerMove);
    this.closeSocket();
    this.closePanel();
  }
}

app.registerExtension({
  name: "MatrixGame.LivePreview",
  setup() {
    api.addEventListener(EVENT, ({ detail }) => {
      const v = viewFor(detail?.node);
      if (!v) return;
      if (detail.event === "started") v.attach(detail);
      else if (detail.event === "ended") v.endedElsewhere(detail);
    });
  },
  nodeCreated(node) {
    const cls = node.comfyClass || node.constructor?.comfyClass || node.type;
    if (cls !== NODE_TYPE) return;
    const view = new LiveView(node);
    const widget = node.addDOMWidget("live_view", "MATRIX_GAME_LIVE", view.root, {
      serialize: false,
      hideOnZoom: false,
      getValue: () => undefined,
      setValue: () => {},
      getMinHeight: () => 280,
    });
    widget.serialize = false;
    view.widget = widget;
    node.matrixGameLive = view;
    views.add(view);
    node.setSize([Math.max(node.size[0], 460), Math.max(node.size[1], node.computeSize()[1] + 120)]);
    chain(node, "onRemoved", () => { view.destroy(); views.delete(view); });
    // a session may already be running for this node (page reloaded): attach to it once the node has its id
    setTimeout(() => {
      api.fetchApi("/matrix_game/sessions").then((r) => (r.ok ? r.json() : null)).then((d) => {
        const s = d?.sessions?.find((x) => String(x.node) === String(node.id) && x.state !== "ended");
        if (s) view.attach(s);
      }).catch(() => {});
    }, 500);
  },
});

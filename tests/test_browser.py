"""The browser side in a real browser against a real ComfyUI server (CPU; the live session plays the
embedded ViZDoom model).

Needs a ComfyUI checkout: ``COMFYUI_PATH`` (the folder with ``main.py``) and ``COMFYUI_PYTHON`` (its
venv's python, with the ``playwright`` package; ``tools/setup_comfyui.sh`` makes both). The browser
is Debian's chromium (``/usr/bin/chromium``; ``MATRIX_GAME_CHROMIUM`` overrides it), driven by
Playwright without any browser download. Skipped, with that reason, only when ``COMFYUI_PATH`` is
unset.

The server runs on a free port with ``--base-directory`` in a temporary folder (the checkout is not
touched; the pack is linked into its ``custom_nodes/``). This file is also the browser driver: the
test runs ``COMFYUI_PYTHON tests/test_browser.py --drive URL OUT`` (Playwright lives in ComfyUI's
venv), which loads the live workflow (``workflows/Matrix-Game embedded ViZDoom (CPU) - play live with keys and mouse.json``) and, with real mouse and keyboard
events:

* timeline (classic LiteGraph canvas): clears the track with the preset menu, paints W over frames
  0-24, right-drag erases 10-14, Ctrl+Z, clicks a yaw keyframe, changes the length; reads the
  node's JSON widget, the API-format prompt and a save/load round trip;
* timeline (Vue nodes mode): paints D over frames 30-40;
* live session: runs the workflow with the node's Run button, clicks the live view, holds W, opens
  the floating panel and holds D there, presses Stop, waits for the saved mp4, sends the recorded
  track to a new timeline node.

The driver writes a JSON report and screenshots; the assertions are here (engine python).
``MATRIX_GAME_UPDATE_SCREENSHOTS=1`` copies the screenshots to ``docs/`` (README pictures); a
comma-separated list of ``docs/`` names copies only those (e.g. ``live_session_embedded.jpg``).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOW = os.path.join(ROOT, "workflows", "Matrix-Game embedded ViZDoom (CPU) - play live with keys and mouse.json")
PACK = "ComfyUI-MatrixGame"
UNIVERSAL = os.path.join(ROOT, "workflows", "Matrix-Game universal - walk and look around.json")
TIMELINE_NODE, LIVE_NODE = 10, 6
UNIVERSAL_TIMELINE = 6                  # its Actions (JSON) node, shipped 420 px wide
SHOTS = {"timeline.png": "timeline_widget.png", "timeline_vue.png": "timeline_widget_vue.png",
         "live.jpg": "live_session_embedded.jpg", "timeline_420.png": "timeline_widget_420.png",
         "templates.png": "template_browser.png"}

if __name__ != "__main__":
    import pytest

    COMFY = os.environ.get("COMFYUI_PATH")
    PY = os.environ.get("COMFYUI_PYTHON") or sys.executable
    pytestmark = pytest.mark.skipif(
        not COMFY, reason="COMFYUI_PATH is unset: set it to a ComfyUI checkout (and COMFYUI_PYTHON to its venv's "
                          "python, with playwright; tools/setup_comfyui.sh makes both) to run the browser tests")


# ================================================================================================ server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


if __name__ != "__main__":
    @pytest.fixture(scope="module")
    def comfy(tmp_path_factory):
        base = str(tmp_path_factory.mktemp("comfy_browser"))
        for d in ("custom_nodes", "input", "output", "models", "user", "temp"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        os.symlink(ROOT, os.path.join(base, "custom_nodes", PACK))
        sys.path.insert(0, ROOT)
        from nodes.logic import demo_inputs
        for src, name in demo_inputs():
            shutil.copyfile(src, os.path.join(base, "input", name))
        port = _free_port()
        log = os.path.join(base, "server.log")
        cmd = [PY, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory", base,
               "--database-url", f"sqlite:///{os.path.join(base, 'comfyui.db')}", "--disable-api-nodes"]
        with open(log, "w") as lf:
            proc = subprocess.Popen(cmd, cwd=COMFY, stdout=lf, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 300
        up = False
        while time.time() < deadline and not up:
            assert proc.poll() is None, "ComfyUI exited during start-up:\n" + open(log).read()[-4000:]
            try:
                up = _get(url + "/system_stats", 5)[0] == 200
            except OSError:
                time.sleep(0.5)
        assert up, "ComfyUI did not answer within 300 s:\n" + open(log).read()[-4000:]
        yield {"url": url, "base": base, "log": log}
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    @pytest.fixture(scope="module")
    def report(comfy, tmp_path_factory):
        out = str(tmp_path_factory.mktemp("browser_out"))
        chromium = os.environ.get("MATRIX_GAME_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
        assert os.path.exists(chromium), f"no chromium at {chromium} (apt-get install chromium)"
        r = subprocess.run([PY, os.path.abspath(__file__), "--drive", comfy["url"], out, chromium],
                           capture_output=True, text=True, timeout=1500)
        path = os.path.join(out, "report.json")
        assert r.returncode == 0 and os.path.exists(path), (
            f"browser driver failed (rc {r.returncode}):\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}\n"
            f"server log:\n{open(comfy['log']).read()[-3000:]}")
        with open(path) as f:
            rep = json.load(f)
        rep["_out"] = out
        update = os.environ.get("MATRIX_GAME_UPDATE_SCREENSHOTS", "")
        if update:                                # "1": all of SHOTS; else the docs/ names to update, comma-separated
            os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
            for src, dst in SHOTS.items():
                if update == "1" or dst in update.split(","):
                    shutil.copyfile(os.path.join(out, src), os.path.join(ROOT, "docs", dst))
        return rep


# ================================================================================================ tests
def _track(text):
    sys.path.insert(0, ROOT)
    from matrix_game_core.actions import ActionTrack
    return ActionTrack.from_json(text)


def _kb(text):
    return json.loads(text)["keyboard"]


def test_timeline_paint_erase_undo_curve_length_in_the_classic_canvas(report):
    t = report["timeline"]
    assert t["extension_loaded"] and t["text_widget_hidden"]
    assert _kb(t["cleared"]) == {"forward": [], "back": [], "left": [], "right": []}
    # W painted over frames 0-24 with a real mouse drag
    assert _kb(t["painted"]) == {"forward": [[0, 25]], "back": [], "left": [], "right": []}
    tr = _track(t["painted"])
    assert tr.num_frames == 57 and tr.keyboard[:25, 0].eq(1).all() and tr.keyboard[25:, 0].eq(0).all()
    assert _kb(t["erased"])["forward"] == [[0, 10], [15, 25]]
    assert t["undone"] == t["painted"]
    # a yaw keyframe at frame 30, value 0.1 (snapped), read by the engine as 0.1 from frame 30 on
    yaw = json.loads(t["keyframe"])["mouse"]["yaw"]
    assert yaw == {"points": [[0, 0], [30, 0.1]], "interp": "step"}
    tk = _track(t["keyframe"])
    assert float(tk.mouse[29, 1]) == 0 and abs(float(tk.mouse[30, 1]) - 0.1) < 1e-7
    # length control keeps 1 + 4n
    assert json.loads(t["length_typed_30"])["num_frames"] == 29
    assert json.loads(t["length_plus"])["num_frames"] == 33
    for k in ("painted", "erased", "keyframe", "length_typed_30", "length_plus"):
        n = _track(t[k]).num_frames
        assert (n - 1) % 4 == 0
    # what the node runs, what the workflow saves, and a save/load round trip all hold the same JSON
    assert t["api_prompt_track"] == t["final"]
    assert t["workflow_widgets_value"] == t["final"]
    assert t["reloaded_value"] == t["final"] and t["reloaded_editor_json"] == t["final"]
    assert t["help_tooltip"].count("\n") >= 4 and "Ctrl+Z" in t["help_tooltip"]


def test_timeline_paints_in_vue_nodes_mode(report):
    v = report["vue"]
    assert v["vue_mode"] and v["editor_connected"] and v["canvas_size"][0] > 200
    assert _kb(v["before"])["left"] == [] and _kb(v["painted"])["left"] == [[30, 41]]
    for k in ("forward", "back", "right"):
        assert _kb(v["painted"])[k] == _kb(v["before"])[k]
    _track(v["painted"])


def test_live_session_streams_frames_records_keys_and_outputs_the_video(report):
    lv = report["live"]
    # frames arrived and were shown, on the node and in the floating panel
    assert lv["frames_received"] == lv["server_info"]["frames"] >= 9 + 12 * 2, lv
    assert lv["frames_shown"] > 0 and lv["panel_frames_drawn"], lv
    assert lv["pointer_locked"], "clicking the live view did not lock the pointer"
    assert lv["latency_ms"] is not None and lv["latency_ms"] > 0
    assert "fps" in lv["hud"] and "latency" in lv["hud"]
    assert lv["state"] == "ended" and lv["reason"] == "stopped"
    # the recorded track: W in the first block, D (pressed in the panel) in the last one
    tr = _track(lv["track"])
    T = tr.num_frames
    blocks = (T - 9) // 12 + 1
    assert T == 9 + 12 * (blocks - 1) and blocks == lv["blocks"] >= 3
    assert tr.keyboard[:9, 0].eq(1).all() and tr.keyboard[:9, 1:].eq(0).all()
    keys_per_block = [tr.keyboard[0 if b == 0 else 12 * b - 3].tolist() for b in range(blocks)]
    assert tr.keyboard[-12:, 3].eq(1).all() and tr.keyboard[-12:, 0].eq(0).all(), (keys_per_block, lv["hud"])
    for b in range(blocks):                       # one action per block
        s, e = (0, 9) if b == 0 else (12 * b - 3, 12 * b + 9)
        assert (tr.keyboard[s:e] == tr.keyboard[s]).all()
    # the mouse moved right while the pointer was locked: a later block turns right, none looks up/down
    assert float(tr.mouse[9:, 1].max()) > 0 and float(tr.mouse[:, 1].min()) >= 0
    assert tr.mouse[:, 0].eq(0).all()
    assert tr.meta["source"].endswith("live session")
    # the server's final info agrees, and the node's outputs went on: an mp4 of every played frame
    assert lv["server_info"]["reason"] == "stopped" and _track(lv["server_info"]["track"]) == tr
    assert sorted(lv["run_targets"]) == ["6", "9"]      # Run = this node + the Save Video it feeds
    assert lv["history_status"] == "success", lv.get("history_error")
    import imageio_ffmpeg
    gen = imageio_ffmpeg.read_frames(lv["video_path"])
    meta = next(gen)
    from matrix_game_core import embedded
    h, w = embedded.video_size()                  # the live workflow plays the embedded model, at its size and fps
    assert sum(1 for _ in gen) == T and tuple(meta["size"]) == (w, h)
    assert tr.fps == embedded.fps() and lv["server_info"]["fps"] == embedded.fps()
    # "-> Timeline" made an Actions (JSON) node holding the played track, ready to edit
    assert lv["timeline_node_type"] == "MatrixGameActionsFromJSON" and lv["timeline_node_value"] == lv["track"]
    assert lv["timeline_node_editor"]
    # ... placed in free space beside the live node (a node sits where it used to go)
    pl = lv["placement"]
    assert pl["overlaps"] == [], pl
    gap_x = pl["rect"][0] - (pl["live"][0] + pl["live"][2])
    gap_y = pl["rect"][1] - (pl["live"][1] + pl["live"][3])
    assert 0 <= gap_x <= 600 or 0 <= gap_y <= 600, pl


def test_timeline_toolbar_fits_the_shipped_420px_node_and_shows_malformed_json(report):
    b = report["toolbar"]
    assert b["node_width"] == 420 and b["canvas_width"] >= 380
    assert b["outside"] == [] and b["outside_with_json"] == [], b      # every control within the node
    for label in ("Apply", "↶", "↷", "Snap", "✎ Paint", "−", "Fit", "+", "Import", "Export", "JSON"):
        assert label in b["buttons"], label
    text, scroll_w, client_w = b["info"]
    assert text.endswith("5 blocks") and scroll_w <= client_w            # the info text is not cut off
    assert b["json_box"]["visible"] and b["json_box"]["inside"] and b["json_box"]["lines"] >= 12, b["json_box"]
    m = b["malformed"]
    assert m["error"] and m["frames"] == "" and m["fps"] == "" and m["len_disabled"], m
    assert "invalid" in m["info"] and "not valid JSON" in m["status"], m
    assert b["after_preset"]["frames"] == "57" and not b["after_preset"]["error"]
    assert _kb(b["after_preset"]["value"])["forward"] == [[0, 57]]


def test_keyboard_undo_in_the_timeline_is_one_timeline_step_and_leaves_comfyui_history_alone(report):
    u = report["undo"]
    s = u["states"]                     # cleared, then three strokes on W, S, A
    assert len(set(s)) == 4 and _kb(s[3]) == {"forward": [[0, 13]], "back": [[20, 31]], "left": [[35, 51]], "right": []}
    assert u["focus_on_timeline"]
    assert u["after_undo"] == s[2] and u["after_redo"] == s[3]         # one stroke per press
    assert u["after_undo_ui"] == [True, True, True, True]              # widget history intact, same editor
    assert u["tracker_after_undo"] == u["tracker_before"] + 1          # ComfyUI recorded the edit, undid nothing
    assert u["graph_focus"] and u["graph_undos"] == [s[2], s[3]]       # ComfyUI's own undo: one edit per press


def test_template_browser_shows_titles_and_thumbnails(report):
    t = report["templates"]
    names = sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "workflows")) if f.endswith(".json"))
    assert sorted(t["titles"]) == names, t
    assert t["thumbs"] == len(names) and t["thumbs_loaded"] == len(names) and t["fallbacks"] == 0, t


def test_screenshots_were_taken(report):
    for name in SHOTS:
        p = os.path.join(report["_out"], name)
        assert os.path.getsize(p) > 20000, name


# ================================================================================================ driver
DRIVER_HELPERS = """
window.__mg = {
  ed: (id) => window.MatrixGameTimeline.editorFor(id),
  value: (id) => app.graph.getNodeById(id).widgets.find((w) => w.name === 'track_json').value,
  nodeRect: (id) => {
    const n = app.graph.getNodeById(id), c = app.canvas, r = c.canvas.getBoundingClientRect();
    const s = c.ds.scale, o = c.ds.offset, title = (window.LiteGraph && LiteGraph.NODE_TITLE_HEIGHT) || 30;
    return [r.left + (n.pos[0] + o[0]) * s, r.top + (n.pos[1] - title + o[1]) * s, n.size[0] * s, (n.size[1] + title) * s];
  },
  focusNode: (id, scale) => {
    const n = app.graph.getNodeById(id), c = app.canvas;
    c.ds.scale = scale; c.ds.offset = [-n.pos[0] + 150 / scale, -n.pos[1] + 120 / scale]; c.setDirty(true, true);
  },
};
"""


def drive(url, out, chromium):  # runs in COMFYUI_PYTHON (playwright)
    from playwright.sync_api import sync_playwright

    def post(path, body):
        req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        return urllib.request.urlopen(req, timeout=30).read()

    post("/api/settings/Comfy.TutorialCompleted", True)
    with open(WORKFLOW) as f:
        wf = json.load(f)
    rep = {"timeline": {}, "vue": {}, "live": {}, "toolbar": {}, "undo": {}, "templates": {}}
    logs = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        page.on("console", lambda m: logs.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: logs.append(f"[pageerror] {e}"))
        try:
            _drive(page, url, wf, out, rep)
        finally:
            page.screenshot(path=os.path.join(out, "last.png"))
            with open(os.path.join(out, "console.log"), "w") as f:
                f.write("\n".join(logs))
            with open(os.path.join(out, "report.json"), "w") as f:
                json.dump(rep, f, indent=1)
            browser.close()


def _load(page, wf, node=TIMELINE_NODE, name="matrix_game_live"):
    page.evaluate(f"async (g) => {{ await app.loadGraphData(g, true, true, {json.dumps(name)}); }}", wf)
    page.wait_for_timeout(800)
    page.keyboard.press("Escape")
    page.wait_for_function(f"() => !!window.__mg.ed({node})", timeout=30000)


def _drag(page, x0, y0, x1, y1, button="left"):
    page.mouse.move(x0, y0)
    page.mouse.down(button=button)
    page.mouse.move(x1, y1, steps=8)
    page.mouse.up(button=button)
    page.wait_for_timeout(150)


def _controls_outside(page, ed):
    """Toolbar controls of the editor that lie (partly) outside its root element, or have no size."""
    return page.evaluate(f"""() => {{ const e = {ed}, root = e.root.getBoundingClientRect();
        const ctrls = [...e.root.querySelectorAll('.mg-bar button, .mg-bar select, .mg-bar input:not([type=file]), .mg-help, .mg-info')]
            .filter((x) => getComputedStyle(x).display !== 'none');
        return ctrls.filter((x) => {{ const r = x.getBoundingClientRect();
            return r.width === 0 || r.left < root.left - 0.5 || r.right > root.right + 0.5 || r.top < root.top - 0.5 || r.bottom > root.bottom + 0.5; }})
            .map((x) => x.textContent || x.title || x.tagName); }}""")


def _drive_toolbar(page, out, rep):
    """Every toolbar control at the node's shipped 420 px width (universal workflow); the JSON box; a
    malformed JSON track typed into it."""
    B = rep["toolbar"]
    with open(UNIVERSAL) as f:
        wf = json.load(f)
    _load(page, wf, UNIVERSAL_TIMELINE, "universal")
    page.evaluate(f"() => window.__mg.focusNode({UNIVERSAL_TIMELINE}, 1.0)")
    page.wait_for_timeout(800)
    ed = f"window.__mg.ed({UNIVERSAL_TIMELINE})"
    B["node_width"] = page.evaluate(f"() => app.graph.getNodeById({UNIVERSAL_TIMELINE}).size[0]")
    B["outside"] = _controls_outside(page, ed)
    B["buttons"] = page.evaluate(f"() => [...{ed}.root.querySelectorAll('.mg-bar button')].map((b) => b.textContent)")
    B["info"] = page.evaluate(f"() => {{ const i = {ed}.info; return [i.textContent, i.scrollWidth, i.clientWidth]; }}")
    B["canvas_width"] = page.evaluate(f"() => {ed}.canvas.clientWidth")
    r = page.evaluate(f"() => window.__mg.nodeRect({UNIVERSAL_TIMELINE})")
    page.screenshot(path=os.path.join(out, "timeline_420.png"), clip={"x": max(0, r[0] - 10), "y": max(0, r[1] - 10),
                                                                       "width": r[2] + 20, "height": r[3] + 20})
    # the JSON button (a real click) shows the text box, tall enough to read a track
    btn = page.evaluate_handle(f"() => [...{ed}.bar2.querySelectorAll('button')].find((b) => b.textContent === 'JSON')")
    btn.as_element().click()
    page.wait_for_timeout(500)
    area = f"app.graph.getNodeById({UNIVERSAL_TIMELINE}).widgets.find((w) => w.name === 'track_json').element"
    B["json_box"] = page.evaluate(f"""() => {{ const a = {area}, s = getComputedStyle(a);
        const lh = parseFloat(s.lineHeight) || parseFloat(s.fontSize) * 1.2;
        const r = a.getBoundingClientRect(), n = window.__mg.nodeRect({UNIVERSAL_TIMELINE});
        return {{visible: a.offsetParent !== null, lines: a.clientHeight / lh, inside: r.bottom <= n[1] + n[3] + 1}}; }}""")
    B["outside_with_json"] = _controls_outside(page, ed)
    # type a malformed track into it (real keys): no frame count of the older track stays displayed
    page.evaluate(f"() => {area}.focus()")
    page.keyboard.press("Control+a")
    page.keyboard.type('{"version": 1, "mode": "universal", "num_frames": 21')
    page.wait_for_timeout(900)
    B["malformed"] = page.evaluate(f"""() => {{ const e = {ed}; return {{frames: e.lenIn.value, fps: e.fpsIn.value,
        info: e.info.textContent, len_disabled: e.lenIn.disabled, status: e.status.textContent, error: !!e.error}}; }}""")
    # a preset replaces the malformed text (what the error message suggests)
    sel = page.evaluate_handle(f"() => {ed}.presetSel").as_element()
    sel.select_option("walk_forward")
    page.evaluate_handle(f"() => [...{ed}.bar2.querySelectorAll('button')].find((b) => b.textContent === 'Apply')").as_element().click()
    page.wait_for_timeout(300)
    B["after_preset"] = page.evaluate(f"() => {{ const e = {ed}; return {{frames: e.lenIn.value, error: !!e.error, value: window.__mg.value({UNIVERSAL_TIMELINE})}}; }}")


def _drive_undo(page, rep):
    """Ctrl+Z / Ctrl+Y with the timeline focused act on the timeline only; on the graph, ComfyUI's
    own undo goes back one timeline edit per press."""
    U = rep["undo"]
    with open(UNIVERSAL) as f:
        wf = json.load(f)
    _load(page, wf, UNIVERSAL_TIMELINE, "universal_undo")
    page.evaluate(f"() => window.__mg.focusNode({UNIVERSAL_TIMELINE}, 1.25)")
    page.wait_for_timeout(800)
    nid = UNIVERSAL_TIMELINE
    ed = f"window.__mg.ed({nid})"
    val = lambda: page.evaluate(f"() => window.__mg.value({nid})")  # noqa: E731
    x = lambda f: page.evaluate(f"() => {ed}.clientX({f})")  # noqa: E731
    y = lambda lane: page.evaluate(f"() => {ed}.clientY({json.dumps(lane)})")  # noqa: E731
    tracker = "app.extensionManager.workflow.activeWorkflow.changeTracker"
    page.evaluate_handle(f"() => {ed}.presetSel").as_element().select_option("clear")
    page.evaluate_handle(f"() => [...{ed}.bar2.querySelectorAll('button')].find((b) => b.textContent === 'Apply')").as_element().click()
    page.wait_for_timeout(300)
    states = [val()]
    for lane, f0, f1 in (("forward", 0, 12), ("back", 20, 30), ("left", 35, 50)):
        _drag(page, x(f0), y(lane), x(f1), y(lane))
        page.wait_for_timeout(200)
        states.append(val())
    U["states"] = states
    page.evaluate(f"() => {{ window.__mg.edBefore = {ed}; }}")
    U["tracker_before"] = page.evaluate(f"() => {tracker}.undoQueue.length")
    U["focus_on_timeline"] = page.evaluate(f"() => document.activeElement === {ed}.canvas")
    page.keyboard.press("Control+z")
    page.wait_for_timeout(500)
    U["after_undo"] = val()
    U["after_undo_ui"] = page.evaluate(f"() => [{ed}.history.canUndo, {ed}.history.canRedo, !{ed}.undoBtn.disabled, {ed} === window.__mg.edBefore]")
    U["tracker_after_undo"] = page.evaluate(f"() => {tracker}.undoQueue.length")
    page.keyboard.press("Control+y")
    page.wait_for_timeout(500)
    U["after_redo"] = val()
    # ComfyUI's undo on the graph: click empty canvas, then each Ctrl+Z goes back one recorded state (the
    # timeline's undo and redo above were edits too). Two presses: restoring a state lets ComfyUI re-order
    # unlinked nodes, which it records as a change of its own after that.
    r = page.evaluate(f"() => window.__mg.nodeRect({nid})")
    page.mouse.click(r[0] + r[2] + 60, r[1] + r[3] + 60)
    page.wait_for_timeout(300)
    U["graph_focus"] = page.evaluate(f"() => document.activeElement !== {ed}.canvas")
    seq = []
    for _ in range(2):
        page.keyboard.press("Control+z")
        page.wait_for_timeout(900)
        seq.append(val())
    U["graph_undos"] = seq


def _drive_templates(page, out, rep):
    """The template browser lists the pack's workflows with readable titles and thumbnails."""
    TP = rep["templates"]
    page.evaluate("async () => { await app.extensionManager.command.execute('Comfy.BrowseTemplates'); }")
    page.wait_for_timeout(1500)
    # the pack's category, labelled by its locales/en/main.json (a JS click: a toast may cover the nav item)
    find = """() => [...document.querySelectorAll('span, a, div')].find((e) => e.childElementCount === 0 &&
                     e.textContent.trim() === 'Matrix-Game 2.0')"""
    page.wait_for_function(find, timeout=60000)
    page.evaluate(f"() => {{ const e = ({find})(); (e.closest('a, button, li, [role=button]') || e.parentElement).click(); }}")
    page.wait_for_function("() => [...document.querySelectorAll('h3')].some((h) => h.textContent.trim().startsWith('Matrix-Game'))",
                           timeout=60000)
    page.wait_for_timeout(2500)
    TP.update(page.evaluate("""() => {
        const titles = [...document.querySelectorAll('h3')].map((h) => h.textContent.trim()).filter((t) => t.startsWith('Matrix-Game'));
        // each card's thumbnail (a lazily loaded <img>; a missing file shows default-template.png instead)
        const imgs = [...document.querySelectorAll('[data-testid="thumbnail-content"] img')];
        return {titles, thumbs: imgs.length, thumbs_loaded: imgs.filter((i) => i.complete && i.naturalWidth > 0).length,
                fallbacks: [...document.querySelectorAll('img')].filter((i) => i.src.endsWith('default-template.png')).length};
    }"""))
    page.screenshot(path=os.path.join(out, "templates.png"))
    page.keyboard.press("Escape")
    page.wait_for_timeout(500)


def _drive(page, url, wf, out, rep):
    page.goto(url + "/")
    page.wait_for_function("() => !!(window.app && window.app.graph && window.app.canvas && window.app.extensionManager)",
                           timeout=120000)
    page.wait_for_function("() => ['MatrixGame.ActionTimeline', 'MatrixGame.LivePreview'].every("
                           "(n) => app.extensions.some((e) => e.name === n))", timeout=60000)
    page.evaluate(DRIVER_HELPERS)
    page.evaluate("async () => { await app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false); }")
    _load(page, wf)
    T = rep["timeline"]
    T["extension_loaded"] = True
    T["text_widget_hidden"] = page.evaluate(
        f"() => app.graph.getNodeById({TIMELINE_NODE}).widgets.find((w) => w.name === 'track_json').hidden === true")
    page.evaluate(f"() => window.__mg.focusNode({TIMELINE_NODE}, 1.25)")
    page.wait_for_timeout(600)
    ed = f"window.__mg.ed({TIMELINE_NODE})"
    val = lambda: page.evaluate(f"() => window.__mg.value({TIMELINE_NODE})")  # noqa: E731
    x = lambda f: page.evaluate(f"() => {ed}.clientX({f})")  # noqa: E731
    y = lambda lane, v=None: page.evaluate(f"() => {ed}.clientY({json.dumps(lane)}, {json.dumps(v)})")  # noqa: E731

    # clear with the preset menu (real select + click)
    page.evaluate(f"() => {ed}.presetSel.scrollIntoView()")
    sel = page.evaluate_handle(f"() => {ed}.presetSel")
    sel.as_element().select_option("clear")
    apply_btn = page.evaluate_handle(f"() => [...{ed}.bar2.querySelectorAll('button')].find((b) => b.textContent === 'Apply')")
    apply_btn.as_element().click()
    page.wait_for_timeout(200)
    T["cleared"] = val()
    # paint W over frames 0-24
    _drag(page, x(0), y("forward"), x(24), y("forward"))
    T["painted"] = val()
    # right-drag erases 10-14
    _drag(page, x(10), y("forward"), x(14), y("forward"), button="right")
    T["erased"] = val()
    page.keyboard.press("Control+z")
    page.wait_for_timeout(150)
    T["undone"] = val()
    # a yaw keyframe: click at frame 30, value 0.1
    page.mouse.click(x(30), y("yaw", 0.1))
    page.wait_for_timeout(150)
    T["keyframe"] = val()
    T["help_tooltip"] = page.evaluate(f"() => {ed}.canvas.title")
    page.screenshot(path=os.path.join(out, "timeline_work.png"))
    # length: type 30 (-> 29), then "+" (-> 33)
    len_in = page.evaluate_handle(f"() => {ed}.lenIn").as_element()
    len_in.fill("30")
    len_in.press("Enter")
    page.wait_for_timeout(200)
    T["length_typed_30"] = val()
    plus = page.evaluate_handle(f"() => [...{ed}.bar1.querySelectorAll('button')].find((b) => b.textContent === '+')")
    plus.as_element().click()
    page.wait_for_timeout(200)
    T["length_plus"] = val()
    # back to 57 frames with a look-around preset plus painted W, for the picture
    len_in.fill("57")
    len_in.press("Enter")
    sel.as_element().select_option("look_around")
    apply_btn.as_element().click()
    page.wait_for_timeout(200)
    _drag(page, x(0), y("forward"), x(24), y("forward"))
    _drag(page, x(33), y("right"), x(56), y("right"))
    T["final"] = val()
    r = page.evaluate(f"() => window.__mg.nodeRect({TIMELINE_NODE})")
    page.screenshot(path=os.path.join(out, "timeline.png"), clip={"x": max(0, r[0] - 10), "y": max(0, r[1] - 10),
                                                                   "width": r[2] + 20, "height": r[3] + 20})
    T["api_prompt_track"] = page.evaluate(f"async () => (await app.graphToPrompt()).output['{TIMELINE_NODE}'].inputs.track_json")
    saved = page.evaluate("() => app.graph.serialize()")
    node = next(n for n in saved["nodes"] if n["id"] == TIMELINE_NODE)
    T["workflow_widgets_value"] = node["widgets_values"][0]
    page.evaluate("async () => { await app.loadGraphData({nodes: [], links: []}, true, true, 'empty'); }")
    _load(page, saved)
    T["reloaded_value"] = val()
    T["reloaded_editor_json"] = page.evaluate(f"() => window.MatrixGameTimeline.track.serializeTrack({ed}.track)")

    # ---------------------------------------------------------------- Vue nodes mode
    V = rep["vue"]
    page.evaluate("async () => { await app.extensionManager.setting.set('Comfy.VueNodes.Enabled', true); }")
    page.wait_for_timeout(500)
    _load(page, saved)
    page.evaluate(f"() => window.__mg.focusNode({TIMELINE_NODE}, 1.0)")
    page.wait_for_function(f"() => {{ const e = window.__mg.ed({TIMELINE_NODE}); return e && e.root.isConnected && e.canvas.clientWidth > 200; }}",
                           timeout=30000)
    page.wait_for_timeout(800)
    V["vue_mode"] = page.evaluate("() => app.extensionManager.setting.get('Comfy.VueNodes.Enabled') === true")
    V["editor_connected"] = page.evaluate(f"() => {ed}.root.isConnected")
    V["canvas_size"] = page.evaluate(f"() => [{ed}.canvas.clientWidth, {ed}.canvas.clientHeight]")
    V["before"] = val()
    _drag(page, x(30), y("left"), x(40), y("left"))
    V["painted"] = val()
    r = page.evaluate(f"() => {{ const b = {ed}.root.getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; }}")
    page.screenshot(path=os.path.join(out, "timeline_vue.png"), clip={"x": max(0, r[0] - 20), "y": max(0, r[1] - 60),
                                                                       "width": r[2] + 40, "height": r[3] + 80})
    page.evaluate("async () => { await app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false); }")
    page.wait_for_timeout(500)

    _drive_toolbar(page, out, rep)
    _drive_undo(page, rep)
    _drive_templates(page, out, rep)

    # ---------------------------------------------------------------- live session
    L = rep["live"]
    _load(page, wf)
    page.evaluate(f"""() => {{
        const n = app.graph.getNodeById({LIVE_NODE});
        n.widgets.find((w) => w.name === 'max_blocks').value = 60;   // ended by Stop, also with a fast model
        n.widgets.find((w) => w.name === 'idle_timeout').value = 240;
    }}""")
    page.evaluate(f"() => window.__mg.focusNode({LIVE_NODE}, 1.0)")
    page.wait_for_timeout(500)
    view = f"window.MatrixGameLive.viewFor({LIVE_NODE})"
    L["run_targets"] = page.evaluate(f"() => {view}.runTargets()")
    page.evaluate_handle(f"() => {view}.runBtn").as_element().click()
    page.wait_for_function(f"() => {view}.state === 'waiting'", timeout=600000)
    box = page.evaluate(f"() => {{ const r = {view}.canvas.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }}")
    page.mouse.click(box[0] + box[2] / 2, box[1] + box[3] / 2)
    page.keyboard.down("w")
    page.wait_for_timeout(200)
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    page.mouse.move(cx + 160, cy, steps=8)              # pointer locked: turn right (yaw +)
    page.wait_for_function(f"() => {view}.blocks >= 1 && {view}.framesShown >= 5", timeout=600000)
    page.keyboard.up("w")
    L["pointer_locked"] = page.evaluate(f"() => document.pointerLockElement === {view}.canvas")
    page.evaluate("() => document.exitPointerLock()")                    # what Esc does
    page.wait_for_timeout(100)
    page.evaluate_handle(f"() => {view}.panelBtn").as_element().click()     # the floating panel takes the focus
    page.wait_for_timeout(100)
    page.keyboard.down("d")
    page.wait_for_function(f"() => {view}.blocks >= 3", timeout=600000)
    page.wait_for_timeout(700)
    L["panel_frames_drawn"] = page.evaluate(f"""() => {{
        const c = {view}.panel.surface.canvas, g = c.getContext('2d');
        const d = g.getImageData(0, 0, c.width, Math.floor(c.height / 2)).data;
        let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
        return c.width > 100 && s > 0;
    }}""")
    L["hud"] = page.evaluate(f"() => {view}.hud.textContent")
    page.screenshot(path=os.path.join(out, "live.jpg"), type="jpeg", quality=80)
    page.evaluate_handle(f"() => {view}.stopBtn").as_element().click()
    page.keyboard.up("d")
    page.wait_for_function(f"() => {view}.state === 'ended' && !{view}.ws", timeout=600000)
    L.update(page.evaluate(f"""() => {{ const v = {view}; return {{state: v.state, reason: v.endReason, blocks: v.blocks,
        frames_received: v.framesReceived, frames_shown: v.framesShown, latency_ms: v.latency.last, track: v.trackJson,
        session: v.info.session}}; }}"""))
    L["server_info"] = json.loads(_get(url + f"/api/matrix_game/session/{L['session']}")[1])
    # the node finished: its outputs went through the overlay into a saved mp4
    deadline = time.time() + 600
    entry = None
    while time.time() < deadline:
        hist = json.loads(_get(url + "/history?max_items=10")[1])
        done = [h for h in hist.values() if h.get("status", {}).get("status_str") in ("success", "error")]
        if done:
            entry = done[-1]
            break
        time.sleep(0.5)
    L["history_status"] = entry and entry["status"]["status_str"]
    L["history_outputs"] = entry and entry.get("outputs")
    if entry and L["history_status"] == "error":
        L["history_error"] = entry["status"].get("messages")
    for node_out in (entry or {}).get("outputs", {}).values():
        for item in node_out.get("images", []) + node_out.get("videos", []):
            if str(item.get("filename", "")).endswith(".mp4"):
                base = url  # the file lives in the server's output folder; fetch it over HTTP
                q = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                                            "type": item.get("type", "output")})
                path = os.path.join(out, "live.mp4")
                with open(path, "wb") as f:
                    f.write(_get(base + "/view?" + q, 120)[1])
                L["video_path"] = path
    # a node where "-> Timeline" used to put its node (right of the live node): the new one must avoid it
    page.evaluate(f"""() => {{ const live = app.graph.getNodeById({LIVE_NODE});
        const n = LiteGraph.createNode('MarkdownNote'); app.graph.add(n);
        n.pos = [live.pos[0] + live.size[0] + 40, live.pos[1]]; n.size = [500, 300]; }}""")
    page.evaluate_handle(f"() => {view}.timelineBtn").as_element().click()
    page.wait_for_timeout(500)
    L["placement"] = page.evaluate(f"""() => {{ const n = {view}.timelineNode, live = app.graph.getNodeById({LIVE_NODE});
        const t = LiteGraph.NODE_TITLE_HEIGHT || 30, r = (q) => [q.pos[0], q.pos[1] - t, q.size[0], q.size[1] + t];
        const hit = (a, b) => a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3];
        const me = r(n);
        return {{rect: me, live: r(live), overlaps: app.graph.nodes.filter((q) => q !== n && hit(me, r(q))).map((q) => q.type)}}; }}""")
    L.update(page.evaluate(f"""() => {{ const n = {view}.timelineNode;
        return {{timeline_node_type: n && n.type, timeline_node_value: n && n.widgets.find((w) => w.name === 'track_json').value,
                 timeline_node_editor: !!(n && window.MatrixGameTimeline.editorFor(n.id))}}; }}"""))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--drive":
        drive(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        print("usage: test_browser.py --drive URL OUTDIR CHROMIUM (run by pytest)")
        sys.exit(2)

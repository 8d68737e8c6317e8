"""Action tracks: JSON format (compact, dense, shared fixture, schema), validation errors, editing,
official benchmark actions, streaming block rows and latent action windows."""
import hashlib
import json
import math
import os
import random

import pytest
import torch

from matrix_game_core import actions as A
from matrix_game_core.actions import (ActionTrack, bench_actions, bench_pool, block_row_range, format_number,
                                      latent_action_windows)
from matrix_game_core.errors import MatrixGameError

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "action_track_roundtrip.json")
SCHEMA = os.path.join(os.path.dirname(HERE), "matrix_game_core", "action_track.schema.json")


def rand_track(mode, T, seed=0, dense_mouse=True):
    g = torch.Generator().manual_seed(seed)
    kb = (torch.rand(T, len(A.KEYS[mode]), generator=g) < 0.3).float()
    ms = None
    if mode in A.MOUSE_MODES:
        if dense_mouse:
            ms = (torch.rand(T, 2, generator=g) * 2 - 1) * 0.3
        else:
            ms = torch.zeros(T, 2)
            ms[5:17, 1] = 0.1
            ms[9:, 0] = -0.1
    return ActionTrack(mode, kb, ms)


# ================================================================================================ constants
def test_constants_follow_the_official_code():
    assert A.SCHEMA_VERSION == 1 and A.CAM_VALUE == 0.1
    assert A.KEYS["universal"] == ("forward", "back", "left", "right")
    assert A.KEYS["gta_drive"] == ("forward", "back")
    assert A.KEYS["templerun"] == ("nomove", "jump", "slide", "turn_left", "turn_right", "left_side", "right_side")
    assert A.KEY_LABELS == {"universal": ("W", "S", "A", "D"), "gta_drive": ("W", "S"),
                            "templerun": ("Q", "W", "S", "Z", "C", "A", "D")}
    assert A.MOUSE_MODES == {"universal", "gta_drive"}
    t = ActionTrack.empty("templerun", 13)
    assert t.keys == A.KEYS["templerun"] and t.labels == A.KEY_LABELS["templerun"]
    assert t.num_frames == len(t) == 13 and t.num_latent_frames == 4 and t.mouse is None


# ================================================================================================ JSON
def test_shared_fixture_values_and_canonical_text():
    text = open(FIXTURE, encoding="utf-8").read()
    t = ActionTrack.from_json(text)
    assert t.mode == "universal" and t.num_frames == 33 and t.fps == 25.0
    kb = t.keyboard
    assert kb[:20, 0].eq(1).all() and kb[20:, 0].eq(0).all()          # forward [0, 20)
    assert kb[:, 1].eq(0).all()                                          # back never
    assert kb[14:20, 2].eq(1).all() and kb[:, 2].sum() == 6              # left [14, 20)
    assert kb[8:14, 3].eq(1).all() and kb[25:, 3].eq(1).all() and kb[:, 3].sum() == 14
    pitch, yaw = t.mouse[:, 0], t.mouse[:, 1]
    exp_p = torch.zeros(33)
    exp_p[5:12], exp_p[12:20], exp_p[28:] = 0.1, -0.05, 0.025
    assert torch.equal(pitch, exp_p)
    exp_y = torch.tensor([0.12 * math.sin(i / 4.0) for i in range(33)], dtype=torch.float32)
    assert torch.equal(yaw, exp_y)                                       # per-frame float32 values exact
    assert t.meta["source"].startswith("tests/fixtures")
    assert t.to_json() == text                                           # byte-exact canonical form
    assert ActionTrack.from_dict(json.loads(text)) == t
    assert ActionTrack.from_json(json.dumps(t.to_dict())) == t          # plain json.dumps of to_dict too


@pytest.mark.parametrize("mode", ["universal", "gta_drive", "templerun"])
@pytest.mark.parametrize("dense", [True, False])
def test_round_trip_exact(mode, dense):
    t = rand_track(mode, 45, seed=3, dense_mouse=dense)
    text = t.to_json()
    back = ActionTrack.from_json(text)
    assert back == t
    assert back.to_json() == text
    if mode in A.MOUSE_MODES:
        assert torch.equal(back.mouse, t.mouse)                       # bitwise float32
        assert ('"interp": "step"' in text) == (not dense)
    # dense form of the same track
    d = {"version": 1, "mode": mode, "keyboard_rows": t.keyboard.int().tolist()}
    if t.mouse is not None:
        d["mouse_rows"] = t.mouse.tolist()
    assert ActionTrack.from_json(json.dumps(d)) == t
    d["num_frames"] = 45
    assert ActionTrack.from_dict(d) == t


def test_round_trip_keeps_fps_meta_and_any_length_recordings():
    t = rand_track("universal", 50, seed=1)                           # a recording: not 1 + 4n
    t.fps, t.meta = 12.5, {"recorder": "doom", "seed": 7}
    text = t.to_json()
    assert '"fps": 12.5' in text and '"meta": {"recorder": "doom", "seed": 7}' in text
    with pytest.raises(MatrixGameError, match=r"\$\.num_frames: 50 video frames is not 1 \+ 4n.*49 or 53"):
        ActionTrack.from_json(text)
    back = ActionTrack.from_json(text, any_length=True)
    assert back == t and back.fps == 12.5
    other = ActionTrack.from_json(text.replace('"fps": 12.5', '"fps": 25'), any_length=True)
    assert other != t


def test_compact_forms_and_defaults():
    d = {"version": 1, "mode": "universal", "num_frames": 9,
         "keyboard": {"forward": [[0, 3], [2, 5]], "right": [[8, 9]]},
         "mouse": {"yaw": {"points": [[2, 0.1], [6, -0.1]]}}}
    t = ActionTrack.from_dict(d)
    assert t.keyboard[:, 0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0]   # overlapping ranges united
    assert t.keyboard[:, 3].tolist() == [0] * 8 + [1]
    assert t.mouse[:, 0].eq(0).all()                                    # missing channel = 0
    f = torch.tensor([0, 0, .1, .1, .1, .1, -.1, -.1, -.1], dtype=torch.float32)
    assert torch.equal(t.mouse[:, 1], f)                                # 0 before the first point, step holds
    d["mouse"] = {"pitch": 0.05, "yaw": {"points": [[1, 0.0], [5, 0.1], [7, -0.1]], "interp": "linear"}}
    t = ActionTrack.from_dict(d)
    assert t.mouse[:, 0].eq(torch.tensor(0.05, dtype=torch.float32)).all()
    lin = [0, 0, 0.025, 0.05, 0.075, 0.1, 0.0, -0.1, -0.1]
    assert torch.equal(t.mouse[:, 1], torch.tensor(lin, dtype=torch.float64).float())
    assert ActionTrack.from_json(t.to_json()) == t
    # canonical: every key listed, ranges merged, constant channel as a number
    c = t.to_dict()
    assert c["keyboard"] == {"forward": [[0, 5]], "back": [], "left": [], "right": [[8, 9]]}
    assert c["mouse"]["pitch"] == 0.05 and isinstance(c["mouse"]["yaw"], list)
    assert list(c) == ["version", "mode", "num_frames", "fps", "keyboard", "mouse"]
    # "$schema" is allowed
    d["$schema"] = "./action_track.schema.json"
    assert ActionTrack.from_dict(d) == t


@pytest.mark.parametrize("x,s", [(0.1, "0.1"), (-0.1, "-0.1"), (1.0, "1"), (0.0, "0"), (-0.0, "0"),
                                 (1e-5, "0.00001"), (1.0 / 3.0, "0.33333334"), (0.05, "0.05"),
                                 (123456.0, "123456"), (2.5e-8, "0.000000025")])
def test_format_number(x, s):
    assert format_number(x) == s
    assert struct_f32(float(s)) == struct_f32(x)


def struct_f32(x):
    return torch.tensor(x, dtype=torch.float32).item()


def test_format_number_is_shortest_for_many_values():
    g = torch.Generator().manual_seed(0)
    for v in (torch.randn(2000, generator=g) * 0.3).tolist():
        s = format_number(v)
        assert "e" not in s and struct_f32(float(s)) == struct_f32(v)
        digits = s.lstrip("-").replace(".", "").lstrip("0")
        if len(digits) > 1:  # one digit fewer must not round-trip
            p = len(digits) - 1
            assert struct_f32(float("%.*g" % (p, struct_f32(v)))) != struct_f32(v)


# ------------------------------------------------------------------------------------------------ schema
def _check(schema, v, root, path="$"):
    """A small JSON Schema (2020-12 subset) validator: raises AssertionError at the failing path."""
    if schema is True:
        return
    if schema is False:
        raise AssertionError(f"{path}: not allowed")
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        _check(node, v, root, path)
    t = schema.get("type")
    if t is not None:
        ok = {"object": isinstance(v, dict), "array": isinstance(v, list), "string": isinstance(v, str),
              "integer": isinstance(v, int) and not isinstance(v, bool),
              "number": isinstance(v, (int, float)) and not isinstance(v, bool)}[t]
        assert ok, f"{path}: not {t}"
    if "const" in schema:
        assert v == schema["const"], f"{path}: != const"
    if "enum" in schema:
        assert v in schema["enum"], f"{path}: not in enum"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        assert v >= schema.get("minimum", -math.inf) and v <= schema.get("maximum", math.inf), f"{path}: range"
        assert v > schema.get("exclusiveMinimum", -math.inf), f"{path}: range"
    if isinstance(v, dict):
        for r in schema.get("required", []):
            assert r in v, f"{path}: missing {r}"
        props = schema.get("properties", {})
        for k, x in v.items():
            if "propertyNames" in schema:
                _check(schema["propertyNames"], k, root, f"{path}.{k}(name)")
            if k in props:
                _check(props[k], x, root, f"{path}.{k}")
            elif "additionalProperties" in schema:
                _check(schema["additionalProperties"], x, root, f"{path}.{k}")
    if isinstance(v, list):
        assert len(v) >= schema.get("minItems", 0) and len(v) <= schema.get("maxItems", math.inf), f"{path}: len"
        pre = schema.get("prefixItems", [])
        for i, x in enumerate(v):
            if i < len(pre):
                _check(pre[i], x, root, f"{path}[{i}]")
            elif "items" in schema:
                _check(schema["items"], x, root, f"{path}[{i}]")
    for s in schema.get("allOf", []):
        _check(s, v, root, path)
    if "anyOf" in schema:
        assert any(_ok(s, v, root) for s in schema["anyOf"]), f"{path}: anyOf"
    if "oneOf" in schema:
        assert sum(_ok(s, v, root) for s in schema["oneOf"]) == 1, f"{path}: oneOf"
    if "not" in schema:
        assert not _ok(schema["not"], v, root), f"{path}: not"
    if "if" in schema and _ok(schema["if"], v, root):
        _check(schema.get("then", True), v, root, path)


def _ok(schema, v, root):
    try:
        _check(schema, v, root)
        return True
    except AssertionError:
        return False


def test_schema_accepts_what_the_engine_writes_and_rejects_bad_documents():
    schema = json.load(open(SCHEMA, encoding="utf-8"))
    assert schema["properties"]["version"]["const"] == A.SCHEMA_VERSION
    assert schema["properties"]["mode"]["enum"] == list(A.KEYS)
    ok = lambda d: _ok(schema, d, schema)  # noqa: E731
    assert ok(json.load(open(FIXTURE, encoding="utf-8")))
    for mode in A.KEYS:
        for dense in (True, False):
            t = rand_track(mode, 21, seed=5, dense_mouse=dense)
            assert ok(json.loads(t.to_json())), mode
            d = {"version": 1, "mode": mode, "keyboard_rows": t.keyboard.int().tolist()}
            if t.mouse is not None:
                d["mouse_rows"] = t.mouse.tolist()
            assert ok(d)
    good = json.loads(ActionTrack.empty("universal", 9).to_json())
    assert ok(good)
    bad = [dict(good, version=2), dict(good, mode="minecraft"), dict(good, keyboard={"jump": []}),
           dict(good, extra=1), {k: v for k, v in good.items() if k != "mouse"},
           dict(good, mouse={"yaw": {"points": [[0, 0.1]], "interp": "cubic"}}),
           dict(good, mouse={"yaw": 5}), dict(good, keyboard={"forward": [[0, 1, 2]]}),
           dict(good, keyboard_rows=[[0, 0, 0, 0]])]
    tr = json.loads(ActionTrack.empty("templerun", 9).to_json())
    bad.append(dict(tr, mouse={"yaw": 0}))
    for d in bad:
        assert not ok(d), d
        with pytest.raises(MatrixGameError):
            ActionTrack.from_dict(d)
    assert sorted(schema["allOf"][4]["then"]["properties"]["keyboard"]["propertyNames"]["enum"]) == \
        sorted(A.KEYS["templerun"])


# ================================================================================================ errors
def _kb(T, K=4):
    return torch.zeros(T, K)


@pytest.mark.parametrize("make,msg", [
    (lambda: ActionTrack("universal", _kb(9, 7), torch.zeros(9, 2)),
     r"mode 'universal' needs keyboard rows of 4 keys \[forward \(W\), back \(S\), left \(A\), right \(D\)\]"),
    (lambda: ActionTrack("templerun", _kb(9, 4)),
     r"'templerun' needs keyboard rows of 7 keys \[nomove \(Q\), jump \(W\)"),
    (lambda: ActionTrack("universal", _kb(58), torch.zeros(58, 2)), r"58 video frames.*1 \+ 4n.*use 57 or 61"),
    (lambda: ActionTrack("universal", _kb(0), torch.zeros(0, 2)), r"empty"),
    (lambda: ActionTrack("universal", _kb(9).index_fill(0, torch.tensor([3]), float("nan")), torch.zeros(9, 2)),
     r"frame 3, key 'forward' is nan"),
    (lambda: ActionTrack("universal", _kb(9).index_fill(0, torch.tensor([2]), 0.5), torch.zeros(9, 2)),
     r"frame 2, key 'forward' is 0.5; keys are 0 \(up\) or 1 \(held\)"),
    (lambda: ActionTrack("universal", _kb(9), torch.zeros(9, 2).index_fill(0, torch.tensor([4]), float("inf"))),
     r"mouse pitch at frame 4 is inf"),
    (lambda: ActionTrack("gta_drive", _kb(9, 2), torch.tensor([[0.0, 1.5]] * 9)),
     r"mouse yaw at frame 0 is 1.5, beyond the limit \+-1"),
    (lambda: ActionTrack("templerun", _kb(9, 7), torch.zeros(9, 2)), r"'templerun' has no mouse input"),
    (lambda: ActionTrack("universal", _kb(9)), r"'universal' needs mouse rows"),
    (lambda: ActionTrack("gta_drive", _kb(9, 2)), r"'gta_drive' needs mouse rows"),
    (lambda: ActionTrack("universal", _kb(9), torch.zeros(5, 2)), r"mouse rows must be \[T, 2\] = \[9, 2\]"),
    (lambda: ActionTrack("doom", _kb(9), torch.zeros(9, 2)), r"Unknown mode 'doom'"),
])
def test_validate_errors(make, msg):
    with pytest.raises(MatrixGameError, match=msg):
        make().validate()


def test_validate_accepts_good_tracks():
    for mode in A.KEYS:
        assert rand_track(mode, 13).validate().num_frames == 13
    assert ActionTrack("universal", _kb(58), torch.zeros(58, 2)).validate(any_length=True).num_frames == 58


GOOD = {"version": 1, "mode": "universal", "num_frames": 9, "keyboard": {"forward": [[0, 9]]},
        "mouse": {"pitch": 0, "yaw": 0}}


def _with(**kw):
    d = json.loads(json.dumps(GOOD))
    for k, v in kw.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    return json.dumps(d)


@pytest.mark.parametrize("text,msg", [
    ('{"version": 1,\n "mode": "universal",,}', r"not valid JSON: .* line 2, column 22"),
    ("[1, 2]", r"\$: an action track is a JSON object"),
    (_with(version=None), r"\$: missing \"version\"; add \"version\": 1"),
    (_with(version=2), r"\$\.version: version 2 was written by a newer ComfyUI-MatrixGame"),
    (_with(version=0), r"\$\.version: unsupported version 0"),
    (_with(version="1"), r"\$\.version: must be the number 1"),
    (_with(mode="universl"), r"\$\.mode: unknown mode \"universl\" \(did you mean 'universal'\?\)"),
    (_with(mode=None), r"\$: missing \"mode\""),
    (_with(num_frames=None), r"\$: missing \"num_frames\""),
    (_with(num_frames=10), r"\$\.num_frames: 10 video frames is not 1 \+ 4n .*use 9 or 13"),
    (_with(num_frames=-3), r"\$\.num_frames: must be a whole number"),
    (_with(fps=0), r"\$\.fps: must be a positive number"),
    (_with(meta=[1]), r"\$\.meta: must be a JSON object"),
    (_with(keybaord={}), r"\$\.keybaord: unknown field \(did you mean 'keyboard'\?\)"),
    (_with(keyboard={"forwrd": [[0, 9]]}),
     r"\$\.keyboard\.forwrd: unknown key \"forwrd\" \(did you mean 'forward'\?\) for mode 'universal'; keys are "
     r"forward \(W\)"),
    (_with(keyboard={"jump": []}), r"\$\.keyboard\.jump: unknown key"),
    (_with(keyboard={"forward": [[0, 10]]}), r"\$\.keyboard\.forward\[0\]\[1\]: frame 10 is outside 0\.\.9"),
    (_with(keyboard={"forward": [[0, 4], [5, 5]]}), r"\$\.keyboard\.forward\[1\]: empty range \[5, 5\)"),
    (_with(keyboard={"forward": [[0.5, 4]]}), r"\$\.keyboard\.forward\[0\]\[0\]: expected a whole video-frame"),
    (_with(keyboard={"forward": [0, 4]}), r"\$\.keyboard\.forward\[0\]: expected \[start, end\]"),
    (_with(keyboard={"forward": "all"}), r"\$\.keyboard\.forward: expected a list of \[start, end\]"),
    (_with(keyboard=None), r"\$: give exactly one of \"keyboard\""),
    (_with(keyboard_rows=[[0, 0, 0, 0]] * 9), r"\$: give exactly one of \"keyboard\""),
    (_with(mouse=None), r"\$: mode 'universal' needs \"mouse\""),
    (_with(mouse={"pitch": 0, "roll": 0}), r"\$\.mouse\.roll: unknown channel"),
    (_with(mouse={"yaw": [0.1] * 8}), r"\$\.mouse\.yaw: a list of per-frame values needs num_frames = 9"),
    (_with(mouse={"yaw": [0.1] * 8 + [float("nan")]}), r"\$\.mouse\.yaw\[8\]: nan is not a finite number"),
    (_with(mouse={"yaw": [0.1] * 8 + [True]}), r"\$\.mouse\.yaw\[8\]: expected a number"),
    (_with(mouse={"pitch": 2}), r"\$\.mouse\.pitch: 2 is beyond the mouse limit"),
    (_with(mouse={"yaw": {"points": [[0, 0.1], [0, 0.2]]}}),
     r"\$\.mouse\.yaw\.points\[1\]\[0\]: frame 0 must be after the previous point's frame 0"),
    (_with(mouse={"yaw": {"points": [[9, 0.1]]}}), r"\$\.mouse\.yaw\.points\[0\]\[0\]: frame 9 is outside 0\.\.8"),
    (_with(mouse={"yaw": {"points": [[0, 0.1]], "interp": "cubic"}}), r"\$\.mouse\.yaw\.interp: \"cubic\""),
    (_with(mouse={"yaw": {"pts": []}}), r"\$\.mouse\.yaw\.pts: unknown field"),
    (_with(mouse={"yaw": {"interp": "step"}}), r"\$\.mouse\.yaw: missing \"points\""),
    (_with(mouse={"yaw": "left"}), r"\$\.mouse\.yaw: a mouse channel is a number"),
    (_with(mouse={"yaw": 0}, mouse_rows=[[0, 0]] * 9), r"\$: give only one of \"mouse\" and \"mouse_rows\""),
    (_with(mode="templerun", keyboard={"jump": [[0, 9]]}), r"\$\.mouse: mode 'templerun' has no mouse input"),
])
def test_from_json_errors_name_the_path(text, msg):
    with pytest.raises(MatrixGameError, match=msg) as e:
        ActionTrack.from_json(text)
    assert str(e.value).startswith(("action track JSON", "Unknown"))


def test_dense_form_errors():
    base = {"version": 1, "mode": "gta_drive", "keyboard_rows": [[0, 1]] * 5, "mouse_rows": [[0, 0.1]] * 5}
    assert ActionTrack.from_dict(base).keyboard[:, 1].eq(1).all()
    for patch, msg in [({"keyboard_rows": [[0, 2]] * 5}, r"\$\.keyboard_rows\[0\]\[1\]: keys are 0 \(up\) or 1"),
                       ({"keyboard_rows": [[0, 1, 0]] * 5}, r"\$\.keyboard_rows\[0\]: expected a row of 2 key"),
                       ({"mouse_rows": [[0, 0.1]] * 4}, r"\$\.mouse_rows: has 4 rows but num_frames is 5"),
                       ({"num_frames": 9}, r"\$\.keyboard_rows: has 5 rows but num_frames is 9"),
                       ({"keyboard_rows": []}, r"\$\.keyboard_rows: needs at least one row"),
                       ({"mouse_rows": [[0, -3]] * 5}, r"\$\.mouse_rows\[0\]\[1\]: -3 is beyond the mouse limit")]:
        with pytest.raises(MatrixGameError, match=msg):
            ActionTrack.from_dict({**base, **patch})


# ================================================================================================ editing
def test_empty_segments_tensors():
    t = ActionTrack.empty("universal", 21)
    assert t.keyboard.eq(0).all() and t.mouse.eq(0).all() and t.keyboard.dtype == torch.float32
    with pytest.raises(MatrixGameError, match="use 21 or 25"):
        ActionTrack.empty("universal", 22)
    s = ActionTrack.from_segments("universal", 21, [
        {"start": 0, "end": 12, "keys": ["forward"], "mouse": [0, 0.1]},
        {"start": 8, "keys": ["left"], "mouse": [0.1, 0]}])
    assert s.keyboard[:, 0].tolist() == [1] * 12 + [0] * 9
    assert s.keyboard[:, 2].tolist() == [0] * 8 + [1] * 13
    assert s.mouse[7].tolist() == [0, pytest.approx(0.1)] and s.mouse[8].tolist() == [pytest.approx(0.1), 0]
    kb, ms = s.tensors(dtype=torch.bfloat16)
    assert kb.shape == (1, 21, 4) and ms.shape == (1, 21, 2) and kb.dtype == torch.bfloat16
    assert ActionTrack.empty("templerun", 5).tensors()[1] is None
    for segs, msg in [([{"start": 0, "end": 30}], r"segments\[0\]: start/end must be whole frames"),
                      ([{"keys": ["jump"]}], r"segments\[0\]: unknown key 'jump'"),
                      ([{"mouse": [0.1]}], r"mouse must be \[pitch, yaw\]"),
                      ([{"hold": 1}], r"unknown fields \['hold'\]")]:
        with pytest.raises(MatrixGameError, match=msg):
            ActionTrack.from_segments("universal", 21, segs)
    with pytest.raises(MatrixGameError, match="has no mouse input"):
        ActionTrack.from_segments("templerun", 9, [{"mouse": [0, 0.1]}])


def test_concat_crop_extend_for_latent_frames():
    a, b = rand_track("universal", 9, seed=1), rand_track("universal", 13, seed=2)
    c = a.concat(b)
    assert c.num_frames == 21                                           # 1+8 and 1+12 -> 1+20
    assert torch.equal(c.keyboard[:9], a.keyboard) and torch.equal(c.keyboard[9:], b.keyboard[1:])
    assert torch.equal(c.mouse[9:], b.mouse[1:])
    with pytest.raises(MatrixGameError, match="Cannot join a 'universal' track with a 'gta_drive' track"):
        a.concat(rand_track("gta_drive", 9))
    cr = c.crop(13)
    assert cr.num_frames == 13 and torch.equal(cr.mouse, c.mouse[:13])
    assert torch.equal(c.crop(5, start=4).keyboard, c.keyboard[4:9])
    with pytest.raises(MatrixGameError, match="use 9 or 13"):
        c.crop(12)
    with pytest.raises(MatrixGameError, match="only 21 frames"):
        c.crop(25)
    e = a.extended(17)
    assert e.num_frames == 17 and torch.equal(e.keyboard[9:], a.keyboard[-1:].expand(8, -1))
    assert torch.equal(e.mouse[:9], a.mouse) and torch.equal(e.mouse[16], a.mouse[8])
    with pytest.raises(MatrixGameError, match=r"use \.crop\(5\)"):
        a.extended(5)
    assert c.for_latent_frames(3) == c.crop(9)
    assert c.for_latent_frames(6) == c
    with pytest.raises(MatrixGameError, match=r"21 video frames \(enough for 6 latent frames\), but 9 latent frames "
                                              r"need 33.*extended\(33\)"):
        c.for_latent_frames(9)
    rec = ActionTrack("universal", torch.zeros(30, 4), torch.zeros(30, 2))   # recording: any length
    assert rec.for_latent_frames(6).num_frames == 21


def test_block_rows_follow_the_streaming_pipeline():
    assert block_row_range(0) == (0, 9)
    assert block_row_range(1) == (9, 21)
    assert block_row_range(2) == (21, 33)
    assert block_row_range(4) == (45, 57)
    # general F: [0, 1+4(F-1)) then [4s-3, 4s+4F-3), s = F b; blocks tile the track without gaps
    for F in (1, 2, 3, 4):
        end = 0
        for b in range(6):
            s, e = block_row_range(b, F)
            assert s == end and e == 1 + 4 * (F * (b + 1) - 1)
            end = e
    t = ActionTrack.empty("universal", 33)
    assert t.block_rows(2) == (21, 33)
    with pytest.raises(MatrixGameError, match=r"block 3 covers video frames \[33, 45\).*extended\(45\)"):
        t.block_rows(3)
    t2 = t.with_block_action(1, [1, 0, 0, 1], [0.0, -0.1])
    assert t2.keyboard[9:21].eq(torch.tensor([1.0, 0, 0, 1])).all() and t2.keyboard[:9].eq(0).all()
    assert t2.keyboard[21:].eq(0).all() and t2.mouse[9:21, 1].eq(torch.tensor(-0.1)).all()
    with pytest.raises(MatrixGameError, match="needs a keyboard row of 4 values"):
        t.with_block_action(0, [1, 0])
    f = ActionTrack.from_block_actions("templerun", [([0, 1, 0, 0, 0, 0, 0], None), ([0, 0, 0, 1, 0, 0, 0], None)])
    assert f.num_frames == 21 and f.keyboard[:9, 1].eq(1).all() and f.keyboard[9:, 3].eq(1).all()


def test_latent_action_windows_on_known_data():
    rows = torch.arange(21, dtype=torch.float32).view(1, 21, 1)
    w = latent_action_windows(rows, 0, 6)
    assert w.shape == (1, 6, 12, 1)
    assert w[0, 0, :, 0].tolist() == [0] * 12                          # latent 0: 12 copies of row 0
    assert w[0, 1, :, 0].tolist() == [0] * 9 + [1, 2, 3]                # rows [-8, 4), clamped
    assert w[0, 3, :, 0].tolist() == list(range(12))                    # rows [0, 12)
    assert w[0, 5, :, 0].tolist() == list(range(8, 20))                 # the last row (20) is never used
    assert torch.equal(latent_action_windows(rows, 3, 3), w[:, 3:6])
    with pytest.raises(ValueError, match="too short"):
        latent_action_windows(rows[:, :19], 3, 3)


# ================================================================================================ benchmark
# The official pools, written out from utils/conditions.py (Bench_actions_*), in order.
_U_POOL = (["forward_left", "forward_right"] * 5 + ["camera_l", "camera_r"] * 5 + ["forward", "left", "right"] * 5
           + [f"{a}_{c}" for a in ["forward", "left", "right", "forward_left", "forward_right"]
              for c in ["camera_l", "camera_r"]])
_G_POOL = ["camera_l", "camera_r"] * 2 + ["forward", "back"] * 2 + [f"{a}_{c}" for a in ["forward", "back"]
                                                                    for c in ["camera_l", "camera_r"]]
_T_POOL = ["jump", "slide", "leftside", "rightside", "turnleft", "turnright", "nomove"]


def _official_rows(mode):
    """Independent replica of the official data construction: substring matching of the base actions."""
    if mode == "universal":
        pool, base = _U_POOL, ["forward", "left", "right", "camera_l", "camera_r"]
        kidx, K = {"forward": 0, "back": 1, "left": 2, "right": 3}, 4
    elif mode == "gta_drive":
        pool, base = _G_POOL, ["forward", "back", "camera_l", "camera_r"]
        kidx, K = {"forward": 0, "back": 1}, 2
    else:
        pool, base = _T_POOL, _T_POOL
        kidx = {"nomove": 0, "jump": 1, "slide": 2, "turnleft": 3, "turnright": 4, "leftside": 5, "rightside": 6}
        K = 7
    cam = {"camera_l": [0, -0.1], "camera_r": [0, 0.1]}
    out = []
    for name in pool:
        k, m = [0] * K, [0, 0]
        for sub in base:
            if sub in name:
                if sub in cam:
                    m = cam[sub]
                else:
                    k[kidx[sub]] = 1
        out.append((k, m))
    return out


def _official_track(mode, T, seed):
    rng = random.Random(seed)
    data = _official_rows(mode)
    kb, ms = torch.zeros(T, len(data[0][0])), torch.zeros(T, 2)
    cur = 0
    while cur < T:
        n = [12][rng.randint(0, 0)]
        k, m = data[rng.randint(0, len(data) - 1)]
        n = 1 if cur == 0 else min(n, T - cur)
        kb[cur:cur + n] = torch.tensor(k, dtype=torch.float32)
        ms[cur:cur + n] = torch.tensor(m, dtype=torch.float32)
        cur += n
    return kb, (ms if mode != "templerun" else None)


@pytest.mark.parametrize("mode,pool", [("universal", _U_POOL), ("gta_drive", _G_POOL), ("templerun", _T_POOL)])
def test_bench_pool_equals_the_official_pool(mode, pool):
    ours = bench_pool(mode)
    assert [n for n, _, _ in ours] == pool
    assert len(ours) == {"universal": 45, "gta_drive": 12, "templerun": 7}[mode]
    names = A.KEYS[mode]
    for (name, keys, mouse), (k, m) in zip(ours, _official_rows(mode)):
        assert [1 if n in keys else 0 for n in names] == k, name
        assert list(mouse) == pytest.approx(m), name
    if mode == "universal":  # no back, no pitch in the official benchmark
        assert not any("back" in k for _, k, _ in ours) and all(m[0] == 0 for _, _, m in ours)


@pytest.mark.parametrize("mode", ["universal", "gta_drive", "templerun"])
@pytest.mark.parametrize("seed", [0, 42, 7])
def test_bench_actions_match_the_official_procedure(mode, seed):
    T = 1 + 4 * 29
    t = bench_actions(mode, T, seed)
    kb, ms = _official_track(mode, T, seed)
    assert torch.equal(t.keyboard, kb)
    assert (t.mouse is None) == (ms is None) and (ms is None or torch.equal(t.mouse, ms))
    # rows constant within each 12-frame chunk after row 0; every chunk's action is in the pool
    pool = {(tuple(k), tuple(torch.tensor(m, dtype=torch.float32).tolist())) for k, m in _official_rows(mode)}
    for s in range(1, T, 12):
        chunk_k = t.keyboard[s:s + 12]
        assert chunk_k.eq(chunk_k[0]).all()
        m = t.mouse[s].tolist() if t.mouse is not None else [0.0, 0.0]
        if t.mouse is not None:
            assert t.mouse[s:s + 12].eq(t.mouse[s]).all()
        assert (tuple(int(x) for x in chunk_k[0].tolist()), tuple(m)) in pool
    assert bench_actions(mode, T, seed) == t                             # deterministic per seed
    assert bench_actions(mode, T, seed + 1) != t


# Computed by running the official utils/conditions.py (commit 3ceb311) after random.seed(seed):
# the action of row 0 and of each 12-frame chunk for T = 57, and a hash of the float32 tensors.
_OFFICIAL = {
    ("universal", 0): [([1, 0, 0, 0], [0, 0]), ([0, 0, 0, 0], [0, -.1]), ([0, 0, 0, 1], [0, 0]),
                       ([0, 0, 1, 0], [0, 0]), ([0, 0, 1, 0], [0, -.1]), ([1, 0, 0, 0], [0, 0])],
    ("universal", 42): [([1, 0, 0, 1], [0, 0]), ([0, 0, 0, 0], [0, .1]), ([1, 0, 1, 0], [0, 0]),
                        ([1, 0, 0, 1], [0, -.1]), ([0, 0, 1, 0], [0, -.1]), ([1, 0, 1, 0], [0, 0])],
    ("gta_drive", 0): [([1, 0], [0, 0]), ([1, 0], [0, 0]), ([1, 0], [0, 0]), ([0, 1], [0, 0]),
                       ([1, 0], [0, .1]), ([1, 0], [0, -.1])],
    ("gta_drive", 42): [([0, 0], [0, -.1]), ([0, 0], [0, .1]), ([0, 0], [0, -.1]), ([0, 1], [0, -.1]),
                        ([1, 0], [0, .1]), ([0, 0], [0, -.1])],
    ("templerun", 0): [[1, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1],
                       [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 1, 0, 0, 0]],
    ("templerun", 42): [[0, 1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0],
                        [0, 0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0]],
}
_OFFICIAL_HASH = {
    "universal/0/57": "a841bd82ac72a96a", "universal/0/597": "a2e1e0835decde70",
    "universal/42/57": "c7e9cc52b61eedfa", "universal/42/597": "218657f03e682cc7",
    "gta_drive/0/57": "f0be5275588daef8", "gta_drive/0/597": "39b5ad2e0153dd62",
    "gta_drive/42/57": "23c2c6997fdfb90c", "gta_drive/42/597": "62487442637a83d7",
    "templerun/0/57": "3de1b0fd824cf9f9", "templerun/0/597": "3accbd0b8dc1b8ac",
    "templerun/42/57": "d28d0869c543b33a", "templerun/42/597": "85afba0cb5bad49e",
}


@pytest.mark.parametrize("key", sorted(_OFFICIAL))
def test_bench_actions_reproduce_the_official_sequence(key):
    mode, seed = key
    t = bench_actions(mode, 57, seed)
    for j, r in enumerate([0] + list(range(1, 57, 12))):
        exp = _OFFICIAL[key][j]
        k, m = (exp, None) if mode == "templerun" else exp
        assert t.keyboard[r].int().tolist() == k
        if m is not None:
            assert t.mouse[r].tolist() == [pytest.approx(v) for v in m]
    for T in (57, 597):
        tt = bench_actions(mode, T, seed)
        raw = tt.keyboard.numpy().tobytes() + (b"" if tt.mouse is None else tt.mouse.numpy().tobytes())
        assert hashlib.sha256(raw).hexdigest()[:16] == _OFFICIAL_HASH[f"{mode}/{seed}/{T}"]


def test_bench_actions_global_random_and_errors():
    random.seed(42)
    a = bench_actions("gta_drive", 57, seed=None)                      # official: global random after set_seed
    assert a == bench_actions("gta_drive", 57, 42)
    assert bench_actions("gta_drive", 57, rng=random.Random(42)) == a
    with pytest.raises(MatrixGameError, match="use 57 or 61"):
        bench_actions("universal", 58, 0)
    with pytest.raises(MatrixGameError, match="Unknown mode 'minecraft'"):
        bench_actions("minecraft", 57, 0)
    t = bench_actions("universal", 1, 0)
    assert t.num_frames == 1 and t.num_latent_frames == 1


# ---------------------------------------------------------------------------------------------- hostile JSON
_GOOD = '{"version": 1, "mode": "templerun", "num_frames": 5, "keyboard": {}}'


@pytest.mark.parametrize("text,msg", [
    (b"\x89PNG\r\n\x1a\n\x00\xff binary", r"is not UTF-8 text \(byte 0 is 0x89\)"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"version": 1, "mode": "universal", "num_frames": 5, "keyboard": {}, "meta": ' + "[" * 70 + "]" * 70 + "}",
     "nested too deeply"),
    ('{"version": 1, "mode": "universal", "num_frames": 5, "keyboard": {}, "mouse": {"yaw": ' + "9" * 400 + "}}",
     "integer with 400 digits"),
    ('{"version": 1, "mode": "universal", "num_frames": 5, "keyboard": {}, "mouse": {"yaw": ' + "9" * 5000 + "}}",
     "integer with 5000 digits"),
])
def test_hostile_json_text_is_one_clear_error(text, msg):
    with pytest.raises(MatrixGameError, match=msg) as e:
        ActionTrack.from_json(text)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300


def test_hostile_values_in_a_dict_are_clear_errors():
    d = json.loads(_GOOD.replace("templerun", "universal"))
    with pytest.raises(MatrixGameError, match=r"\$\.mouse\.yaw: 9{30}.* is out of range"):
        ActionTrack.from_dict({**d, "mouse": {"yaw": 10 ** 400 - 1}})
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(MatrixGameError, match=r"\$\.meta: is nested too deeply"):
        ActionTrack.from_dict({**d, "mouse": {}, "meta": {"x": deep}})
    with pytest.raises(MatrixGameError, match=r"\$\.keyboard_rows\[0\]: expected a row of 7 key values, got \[\.\.\.\]"):
        ActionTrack.from_dict({"version": 1, "mode": "templerun", "keyboard_rows": [deep]})
    assert ActionTrack.from_json(_GOOD.encode("utf-8-sig")).num_frames == 5     # a BOM is fine


def test_load_binary_or_missing_file(tmp_path):
    p = tmp_path / "t.json"
    p.write_bytes(b"\xff\xd8\xff\xe0 jpeg")
    with pytest.raises(MatrixGameError, match="is not UTF-8 text"):
        ActionTrack.load(str(p))
    with pytest.raises(MatrixGameError, match="cannot read action track"):
        ActionTrack.load(str(tmp_path / "nope.json"))
    p.write_text(_GOOD)
    assert ActionTrack.load(str(p)).mode == "templerun"

"""Video helpers: uint8 conversion, mp4 write/read round trip, the official-style key/mouse overlay."""
import os

import numpy as np
import pytest
import torch

from matrix_game_core.actions import ActionTrack
from matrix_game_core.errors import MatrixGameError
from matrix_game_core.video import (PRESSED_ALPHA, PRESSED_COLOR, RELEASED_ALPHA, RELEASED_COLOR, cursor_path,
                                    draw_overlay, overlay_boxes, overlay_key_states, read_mp4, to_uint8, write_mp4)

BG = 0.3


def smooth_video(T=9, H=64, W=96):
    """Gradients plus a moving bright square: compresses well, so the round trip error is small."""
    y = torch.linspace(0, 1, H)[:, None]
    x = torch.linspace(0, 1, W)[None, :]
    frames = []
    for t in range(T):
        img = torch.stack([x.expand(H, W), y.expand(H, W), ((x + y) / 2).expand(H, W)], -1).clone()
        img[10:30, 5 + 4 * t:25 + 4 * t] = torch.tensor([0.9, 0.2, 0.1])
        frames.append(img)
    return torch.stack(frames)


# ================================================================================================ to_uint8
def test_to_uint8():
    f = torch.tensor([[[[0.0, 0.5, 1.0], [-1.0, 2.0, float("nan")]]]])      # [1,1,2,3]
    assert to_uint8(f).tolist() == [[[[0, 128, 255], [0, 255, 0]]]]
    u = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    assert np.array_equal(to_uint8(u), u) and np.array_equal(to_uint8(torch.from_numpy(u)), u)
    assert to_uint8(np.full((4, 5, 3), 1.0, np.float64)).shape == (1, 4, 5, 3)    # one frame
    assert to_uint8(torch.zeros(2, 4, 5, 3, dtype=torch.bfloat16)).dtype == np.uint8
    for bad, msg in [(torch.zeros(2, 3, 4, 5), r"\[T, H, W, 3\]"), (torch.zeros(2, 4, 5, 3, dtype=torch.int32),
                                                                    "float in \\[0, 1\\] or uint8"),
                     ([[0.0]], "torch tensor or numpy array")]:
        with pytest.raises(MatrixGameError, match=msg):
            to_uint8(bad)


# ================================================================================================ mp4
def test_mp4_round_trip(tmp_path):
    import imageio_ffmpeg
    v = smooth_video()
    path = str(tmp_path / "sub" / "dir" / "v.mp4")                          # parent folders created
    assert write_mp4(v, path, fps=25) == path and os.path.isfile(path)
    back = read_mp4(path)
    assert back.shape == (9, 64, 96, 3) and back.dtype == np.uint8
    err = np.abs(back.astype(np.float32) - to_uint8(v).astype(np.float32)).mean()
    assert err < 3.0, err
    meta = next(imageio_ffmpeg.read_frames(path))
    assert meta["codec"].startswith("h264") and abs(meta["fps"] - 25) < 1e-6
    assert not [p for p in os.listdir(os.path.dirname(path)) if p != "v.mp4"]   # no temporary left


def test_mp4_odd_size_is_padded_and_uint8_input(tmp_path):
    v = to_uint8(smooth_video(T=5, H=63, W=95))
    path = write_mp4(v, str(tmp_path / "odd.mp4"), fps=12, crf=10)
    back = read_mp4(path)
    assert back.shape == (5, 64, 96, 3)
    assert np.abs(back[:, :63, :95].astype(np.float32) - v.astype(np.float32)).mean() < 3.0
    # padding repeats the last row / column
    assert np.abs(back[:, 63].astype(np.float32) - back[:, 62].astype(np.float32)).mean() < 3.0


def test_mp4_errors(tmp_path):
    v = smooth_video(T=1)
    for kw, msg in [(dict(fps=0), "fps must be"), (dict(crf=60), "crf must be"), (dict(fps="25"), "fps must be")]:
        with pytest.raises(MatrixGameError, match=msg):
            write_mp4(v, str(tmp_path / "a.mp4"), **kw)
    with pytest.raises(MatrixGameError, match="nothing to write"):
        write_mp4(torch.zeros(0, 8, 8, 3), str(tmp_path / "a.mp4"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MatrixGameError, match="cannot write video"):
        write_mp4(v, str(blocker / "a.mp4"))                                # parent is a file
    with pytest.raises(MatrixGameError, match="not found"):
        read_mp4(str(tmp_path / "missing.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(MatrixGameError, match="cannot read video|has no frames"):
        read_mp4(str(junk))


# ================================================================================================ overlay
def grey(T, H=352, W=640):
    return torch.full((T, H, W, 3), BG)


def box_union(H, W, mode):
    m = torch.zeros(H, W, dtype=torch.bool)
    for x1, y1, x2, y2 in overlay_boxes(H, W, mode).values():
        m[max(0, y1):y2 + 1, max(0, x1):x2 + 1] = True
    return m


def test_layout_is_the_official_one_and_scales():
    assert (PRESSED_ALPHA, RELEASED_ALPHA) == (0.8, 0.5)                    # official visualize.py
    assert PRESSED_COLOR == (0, 1, 0) and RELEASED_COLOR == pytest.approx((200 / 255,) * 3)
    assert overlay_boxes(352, 640, "universal") == {"W": (155, 192, 205, 242), "A": (85, 262, 135, 312),
                                                    "S": (155, 262, 205, 312), "D": (225, 262, 275, 312)}
    b = overlay_boxes(352, 640, "templerun")
    assert b["left"] == (300, 262, 390, 312) and b["right"] == (400, 262, 490, 312)
    half = overlay_boxes(176, 320, "templerun")
    for k, (x1, y1, x2, y2) in b.items():
        assert half[k] == pytest.approx((x1 / 2, y1 / 2, x2 / 2, y2 / 2), abs=1)


def _box_pixel(box):
    """A pixel inside the rounded box, away from the letters and the corners."""
    x1, y1, x2, y2 = box
    return (y1 + y2) // 2, x1 + 3


@pytest.mark.parametrize("mode", ["gta_drive", "templerun"])
def test_overlay_changes_only_the_boxes_and_pressed_keys_are_green(mode):
    T = 9
    if mode == "gta_drive":
        tr = ActionTrack.from_segments(mode, T, [{"start": 0, "end": 5, "keys": ["forward"], "mouse": [0, 0.1]},
                                                 {"start": 5, "keys": ["back"], "mouse": [0, -0.1]}])
        lit = {0: {"W", "D"}, 8: {"S", "A"}}
    else:
        tr = ActionTrack.from_segments(mode, T, [{"start": 0, "end": 5, "keys": ["jump", "turn_left"]},
                                                 {"start": 5, "keys": ["right_side", "nomove"]}])
        lit = {0: {"W", "left"}, 8: {"D"}}
    frames = grey(T)
    out = draw_overlay(frames, tr)
    assert out.shape == frames.shape and out.dtype == frames.dtype
    assert torch.equal(frames, grey(T))                                     # input untouched
    changed = (out != BG).any(-1)                                           # [T, H, W]
    inside = box_union(352, 640, mode)
    assert not (changed & ~inside).any()                                    # only inside the boxes
    boxes = overlay_boxes(352, 640, mode)
    green = torch.tensor(PRESSED_COLOR)
    grey_c = torch.tensor(RELEASED_COLOR)
    for t, on in lit.items():
        for label, box in boxes.items():
            y, x = _box_pixel(box)
            px = out[t, y, x]
            if label in on:
                exp = BG * (1 - PRESSED_ALPHA) + green * PRESSED_ALPHA
                assert px[1] > px[0] + 0.5 and px[1] > px[2] + 0.5, (t, label)   # green
            else:
                exp = BG * (1 - RELEASED_ALPHA) + grey_c * RELEASED_ALPHA
            assert torch.allclose(px, exp, atol=1e-6), (t, label, px)
            x1, y1, x2, y2 = box
            assert (out[t, y1:y2 + 1, x1:x2 + 1] == 0).all(-1).any(), label   # black letters
            assert changed[t, y1:y2 + 1, x1:x2 + 1].float().mean() > 0.8     # the box is filled
    assert set(overlay_key_states(tr, T)) == set(boxes)


def test_overlay_key_mapping():
    T = 5
    u = ActionTrack.from_segments("universal", T, [{"keys": ["back", "left"]}])
    st = overlay_key_states(u, T)
    assert [k for k in "WSAD" if st[k].all()] == ["S", "A"]
    g = ActionTrack.from_segments("gta_drive", T, [{"mouse": [0.1, 0.0]}])   # pitch only: no steering
    assert not any(v.any() for v in overlay_key_states(g, T).values())
    tr = ActionTrack.from_segments("templerun", T, [{"keys": ["slide", "left_side", "turn_right"]}])
    st = overlay_key_states(tr, T)
    assert {k for k, v in st.items() if v.all()} == {"S", "A", "right"}


def test_universal_cursor_starts_centred_and_follows_the_mouse():
    T, H, W = 13, 352, 640
    tr = ActionTrack.from_segments("universal", T, [{"start": 1, "end": 7, "mouse": [0, 0.5]},
                                                    {"start": 7, "mouse": [-0.4, 0]}])
    path = cursor_path(tr, T, H, W)
    assert path[0].tolist() == [320, 176]
    assert path[6].tolist() == pytest.approx([320 + 6 * 0.5 * 1.5, 176])
    assert path[12].tolist() == pytest.approx([324.5, 176 + 6 * 0.4 * 6])
    out = draw_overlay(grey(T), tr)
    outside = ~box_union(H, W, "universal")
    for t in (0, 6, 12):
        ch = (out[t] != BG).any(-1) & outside
        ys, xs = ch.nonzero(as_tuple=True)
        assert len(ys) > 50                                                  # a cursor is drawn
        cx, cy = (xs.min() + xs.max()).item() / 2, (ys.min() + ys.max()).item() / 2
        assert abs(cx - path[t, 0].item()) <= 2 and abs(cy - path[t, 1].item()) <= 2
        assert (out[t][ch] == 0).all(-1).any() and (out[t][ch] == 1).all(-1).any()   # black outline, white fill
    # at half size the path scales by 0.5
    assert cursor_path(tr, T, H // 2, W // 2)[12].tolist() == pytest.approx([160 + 2.25, 88 + 7.2])


def test_overlay_frames_shorter_than_track_uint8_small_and_errors():
    tr = ActionTrack.from_segments("universal", 21, [{"keys": ["forward"]}])
    u8 = to_uint8(smooth_video(T=9, H=64, W=112))
    out = draw_overlay(torch.from_numpy(u8), tr)                            # 9 of 21 rows, uint8, tiny frames
    assert out.dtype == torch.uint8 and out.shape == (9, 64, 112, 3)
    assert not torch.equal(out, torch.from_numpy(u8))
    f = smooth_video(T=9, H=64, W=112).half()
    assert draw_overlay(f, tr).dtype == torch.float16
    with pytest.raises(MatrixGameError, match="video has 25 frames but the action track only 21"):
        draw_overlay(grey(25, 32, 32), tr)
    with pytest.raises(MatrixGameError, match=r"frames \[T, H, W, 3\]"):
        draw_overlay(torch.zeros(3, 32, 32), tr)


@pytest.mark.parametrize("ext,codec", [(".webm", "vp9"), (".gif", "gif"), (".MP4", "h264")])
def test_write_video_uses_the_container_the_extension_names(tmp_path, ext, codec):
    import imageio_ffmpeg
    from matrix_game_core.video import write_video
    v = smooth_video(T=5)
    path = write_video(v, str(tmp_path / ("v" + ext)), fps=10)
    meta = next(imageio_ffmpeg.read_frames(path))
    assert meta["codec"].startswith(codec), meta["codec"]
    back = read_mp4(path)
    assert back.shape == (5, 64, 96, 3)
    assert np.abs(back.astype(np.float32) - to_uint8(v).astype(np.float32)).mean() < 12.0
    assert os.listdir(tmp_path) == ["v" + ext]                           # no temporary left


def test_write_video_refuses_unknown_containers_before_writing(tmp_path):
    from matrix_game_core.video import check_video_path, write_video
    for name in ("x.avi", "x", "x.mp4.tmp"):
        with pytest.raises(MatrixGameError, match=r"unknown container .*use \.mp4, \.webm, \.gif"):
            write_video(smooth_video(T=1), str(tmp_path / name))
    with pytest.raises(MatrixGameError, match="write_mp4 writes .mp4 files"):
        write_mp4(smooth_video(T=1), str(tmp_path / "x.gif"))
    assert os.listdir(tmp_path) == []
    (tmp_path / "d.mp4").mkdir()
    with pytest.raises(MatrixGameError, match="it is a folder"):
        check_video_path(str(tmp_path / "d.mp4"))


def test_interrupted_write_leaves_no_temporary(tmp_path, monkeypatch):
    """Ctrl-C while ffmpeg writes: the hidden temporary file is removed, the interrupt goes on."""
    import imageio_ffmpeg
    from matrix_game_core.video import write_video
    seen = []

    def write_frames(path, size, **kw):
        seen.append(path)
        open(path, "wb").write(b"partial")
        for n in range(3):
            yield
        raise KeyboardInterrupt

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", write_frames)
    with pytest.raises(KeyboardInterrupt):
        write_video(smooth_video(T=9), str(tmp_path / "v.mp4"))
    assert os.path.basename(seen[0]).startswith(".v.mp4.") and os.listdir(tmp_path) == []

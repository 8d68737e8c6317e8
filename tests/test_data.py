"""Recorder (issue #5): determinism, action/pose alignment, shard round trip, resume.

Tests that play the game need the ``vizdoom`` package (the CI installs it); the rest do not.
"""
import json
import os

import numpy as np
import pytest

from matrix_game_core.data.doom import (CAM_VALUE, applied_rotation, degrees_to_official, fit_frame,
                                        official_to_degrees, pick_render_resolution, wrap_degrees)
from matrix_game_core.data.policy import ExplorationPolicy, PolicyConfig
from matrix_game_core.data.shards import Shard, entries, load_shard, read_manifest, save_shard, write_manifest
from matrix_game_core.errors import MatrixGameError


# ---------------------------------------------------------------------------------------------- no game
def test_units_conversion():
    assert degrees_to_official(5.0, 5.0) == pytest.approx(CAM_VALUE)
    assert degrees_to_official(-2.5, 5.0) == pytest.approx(-0.05)
    assert official_to_degrees(0.1, 7.0) == pytest.approx(7.0)
    x = np.linspace(-12, 12, 7)
    np.testing.assert_allclose(official_to_degrees(degrees_to_official(x, 3.0), 3.0), x)


def test_wrap_degrees():
    np.testing.assert_allclose(wrap_degrees([350.0, -350.0, 10.0, 180.0, -180.0]), [-10, 10, 10, 180, 180])


def test_fit_frame_is_a_centre_crop_when_possible():
    rgb = np.random.default_rng(0).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    out = fit_frame(rgb, 176, 320)
    assert out.shape == (176, 320, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb[2:178])
    small = fit_frame(rgb, 32, 64)
    assert small.shape == (32, 64, 3)
    assert pick_render_resolution(176, 320) == (320, 180)
    assert pick_render_resolution(32, 64) == (256, 144)


def _simulate_policy(seed, n=400, cfg=None):
    pol = ExplorationPolicy(np.random.default_rng(seed), cfg or PolicyConfig())
    pose = np.zeros(5)
    rng = np.random.default_rng(99)
    out = []
    for t in range(n):
        depth = rng.integers(0, 60, (36, 64)).astype(np.uint8)
        if t % 50 < 10:
            depth[:] = 2  # a wall right ahead
        keys, yaw, pitch = pol.act(depth, pose.copy())
        out.append((keys.copy(), yaw, pitch, pose.copy()))
        pose[0] += keys[0] - keys[1]
        pose[3] = (pose[3] - yaw) % 360
        pose[4] -= pitch
    return out


def test_policy_is_deterministic_and_valid():
    a, b, c = _simulate_policy(1), _simulate_policy(1), _simulate_policy(2)
    for (ka, ya, pa, _), (kb, yb, pb, _) in zip(a, b):
        np.testing.assert_array_equal(ka, kb)
        assert ya == yb and pa == pb
    assert any(ya != yc for (_, ya, _, _), (_, yc, _, _) in zip(a, c))
    keys = np.stack([k for k, _, _, _ in a])
    assert set(np.unique(keys)) <= {0.0, 1.0} and keys.shape[1] == 4
    pitch_down = np.array([p[4] for _, _, _, p in a])
    assert np.abs(pitch_down).max() <= PolicyConfig().max_pitch + 1e-6       # never asks past the limit
    yaw = np.array([y for _, y, _, _ in a])
    assert (np.abs(np.abs(yaw) - PolicyConfig().deg_per_step) < 1e-9).mean() > 0.01   # full camera steps
    assert (keys[:, 0] > 0).mean() > 0.3                                       # it walks
    still = (keys.sum(1) == 0) & (np.array([y for _, y, _, _ in a]) == 0) & (np.array([p for _, _, p, _ in a]) == 0)
    assert not still.any()                     # the default policy never stops (earlier recordings unchanged)


def test_policy_holds_still_then_moves_the_camera_from_rest():
    cfg = PolicyConfig(still_prob=0.03)
    a = _simulate_policy(4, n=3000, cfg=cfg)
    keys = np.stack([k for k, _, _, _ in a])
    yaw = np.array([y for _, y, _, _ in a])
    pitch = np.array([p for _, _, p, _ in a])
    still = (keys.sum(1) == 0) & (yaw == 0) & (pitch == 0)
    runs, t = [], 0
    while t < len(a):
        if still[t]:
            e = t
            while e < len(a) and still[e]:
                e += 1
            runs.append((t, e))
            t = e
        else:
            t += 1
    full = [(s, e) for s, e in runs if e < len(a) and s > 0]
    assert len(full) >= 20
    assert all(e - s >= cfg.still_min for s, e in full)                     # stops may follow each other
    step = cfg.deg_per_step
    gest = [e for _, e in full if abs(abs(yaw[e]) - step) < 1e-9 or (pitch[e] != 0 and yaw[e] == 0)]
    assert len(gest) >= 0.6 * len(full)        # most stops end in a turn or look from rest ...
    assert all(keys[e].sum() == 0 for e in gest)                               # ... made in place
    assert {np.sign(yaw[e]) for e in gest if yaw[e] != 0} == {-1.0, 1.0}


def _toy_shard(t=13, h=16, w=32, seed=0):
    r = np.random.default_rng(seed)
    return Shard(frames=r.integers(0, 255, (t, h, w, 3), dtype=np.uint8),
                 keyboard=r.integers(0, 2, (t, 4)).astype(np.uint8),
                 mouse=r.normal(0, 0.05, (t, 2)).astype(np.float32),
                 yaw_deg=r.normal(0, 3, t).astype(np.float32), pitch_deg=r.normal(0, 1, t).astype(np.float32),
                 pose=r.normal(0, 100, (t, 5)))


def test_shard_roundtrip_npz_exact(tmp_path):
    s = _toy_shard()
    files = save_shard(str(tmp_path), "ep000000", s, fmt="npz")
    e = {"name": "ep000000", **files}
    back = load_shard(str(tmp_path), e)
    for k in ("frames", "keyboard", "mouse", "yaw_deg", "pitch_deg", "pose"):
        np.testing.assert_array_equal(getattr(back, k), getattr(s, k), err_msg=k)
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_shard_roundtrip_mp4(tmp_path):
    # smooth frames (what games look like) survive H.264 at crf 18 closely
    t, h, w = 9, 32, 64
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.stack([np.stack([(xx * 4 + i * 8) % 256, (yy * 8) % 256, np.full_like(xx, 40 * (i % 5))], -1)
                       for i in range(t)]).astype(np.uint8)
    s = _toy_shard(t, h, w)
    s.frames = frames
    files = save_shard(str(tmp_path), "ep000001", s, fmt="mp4", fps=17.5)
    back = load_shard(str(tmp_path), {"name": "ep000001", **files})
    assert back.frames.shape == frames.shape
    mse = ((back.frames.astype(float) - frames) ** 2).mean()
    assert 10 * np.log10(255 ** 2 / mse) > 30
    np.testing.assert_array_equal(back.keyboard, s.keyboard)
    np.testing.assert_array_equal(back.mouse, s.mouse)
    # a video that lost frames is refused
    short = _toy_shard(t - 2, h, w)
    short.frames = frames[:t - 2]
    from matrix_game_core.data.shards import write_mp4
    write_mp4(str(tmp_path / "ep000001.mp4"), short.frames, 17.5)
    with pytest.raises(MatrixGameError, match="frames"):
        load_shard(str(tmp_path), {"name": "ep000001", **files})


def test_shard_actions_as_action_track():
    from matrix_game_core.actions import ActionTrack
    s = _toy_shard(t=21)
    s.keyboard = (s.keyboard > 0).astype(np.uint8)
    tr = s.action_track(4, 9, fps=17.5, meta={"shard": "ep000000"})
    assert tr.mode == "universal" and tr.num_frames == 9 and tr.meta == {"shard": "ep000000"}
    np.testing.assert_array_equal(tr.keyboard.numpy(), s.keyboard[4:13])
    np.testing.assert_array_equal(tr.mouse.numpy(), s.mouse[4:13])
    assert ActionTrack.from_json(tr.to_json()) == tr                       # exact float32 round trip
    odd = s.action_track(0, 10)                                            # recordings: any length
    assert odd.num_frames == 10
    with pytest.raises(MatrixGameError, match="outside"):
        s.action_track(15, 10)


def test_manifest_errors(tmp_path):
    with pytest.raises(MatrixGameError, match="record data first"):
        read_manifest(str(tmp_path))
    write_manifest(str(tmp_path), {"format": "something-else", "shards": []})
    with pytest.raises(MatrixGameError, match="format"):
        read_manifest(str(tmp_path))


# ---------------------------------------------------------------------------------------------- the game
vizdoom = pytest.importorskip("vizdoom", reason="recorder tests need `pip install vizdoom`")

from matrix_game_core.data.doom import GameConfig  # noqa: E402
from matrix_game_core.data.record import RecordConfig, record  # noqa: E402


def _cfg(frames=240, seed=7, **kw):
    return RecordConfig(frames=frames, seed=seed, episode_min=100, episode_max=140, fmt="npz", val_every=2,
                        game=GameConfig(height=32, width=64, maps=["MAP01", "MAP02", "MAP03"]), **kw)


@pytest.fixture(scope="module")
def rec_a(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("rec_a"))
    record(d, _cfg(), progress=False)
    return d


def _all(folder):
    return [load_shard(folder, e) for e in entries(folder)]


def test_recorder_same_seed_same_frames(rec_a, tmp_path):
    record(str(tmp_path), _cfg(), progress=False)
    a, b = _all(rec_a), _all(str(tmp_path))
    assert len(a) == len(b) >= 2
    for sa, sb in zip(a, b):
        for k in ("frames", "keyboard", "mouse", "yaw_deg", "pitch_deg", "pose"):
            np.testing.assert_array_equal(getattr(sa, k), getattr(sb, k), err_msg=k)
    other = str(tmp_path / "other")
    record(other, _cfg(seed=8), progress=False)
    c = _all(other)
    assert not np.array_equal(a[0].frames[:50], c[0].frames[:50])


def test_manifest_and_splits(rec_a):
    m = read_manifest(rec_a)
    assert m["total_frames"] == sum(e["frames"] for e in m["shards"]) >= 240
    assert [e["episode"] for e in m["shards"]] == list(range(len(m["shards"])))
    assert {e["split"] for e in m["shards"]} == {"train", "val"}
    assert m["keyboard"] == ["forward", "back", "left", "right"] and m["mouse"] == ["pitch_up", "yaw_right"]
    assert "0.1 = 5.0 deg" in m["mouse_units"]
    for e in m["shards"]:
        s = load_shard(rec_a, e)
        assert len(s) == e["frames"] and s.frames.shape[1:] == (32, 64, 3)


def test_action_pose_alignment(rec_a):
    for s in _all(rec_a):
        yaw, pitch = applied_rotation(s.pose)
        # row t's rotation is exactly the change from frame t to t+1
        np.testing.assert_allclose(yaw, s.yaw_deg[:-1], atol=0.02)
        np.testing.assert_allclose(pitch, s.pitch_deg[:-1], atol=0.02)
        # ... and off by one it is not
        assert np.abs(yaw[1:] - s.yaw_deg[:-2]).max() > 0.5
        # mouse = degrees converted to official units
        np.testing.assert_allclose(s.mouse[:, 1], s.yaw_deg * CAM_VALUE / 5.0, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(s.mouse[:, 0], s.pitch_deg * CAM_VALUE / 5.0, rtol=1e-5, atol=1e-7)
        # forward key -> the player moves along its facing direction (Doom angle, CCW from east)
        d = np.diff(s.pose[:, :2], axis=0)
        ang = np.deg2rad(s.pose[:-1, 3])
        along = d[:, 0] * np.cos(ang) + d[:, 1] * np.sin(ang)
        fwd = (s.keyboard[:-1, 0] == 1) & (s.keyboard[:-1, 1] == 0)
        assert along[fwd].mean() > 2.0
        assert along[(s.keyboard[:-1, 1] == 1) & (s.keyboard[:-1, 0] == 0)].mean() < along[fwd].mean()


def test_recorded_frames_turn_with_the_mouse(rec_a):
    """The image moves the way the recorded mouse says (the world turns when the mouse turns)."""
    from matrix_game_core.evaluate import global_motion
    dx, yaw = [], []
    for s in _all(rec_a):
        mo = global_motion(s.frames)
        dx.append(mo[:, 0])
        yaw.append(s.yaw_deg[:-1])
    dx, yaw = np.concatenate(dx), np.concatenate(yaw)
    big = np.abs(yaw) >= 4.0
    assert big.sum() > 20
    assert (np.sign(-dx[big]) == np.sign(yaw[big])).mean() > 0.8
    assert np.corrcoef(yaw, -dx)[0, 1] > 0.3


def test_resume_extends_the_same_recording(rec_a, tmp_path):
    d = str(tmp_path)
    record(d, _cfg(frames=100), progress=False)
    first = read_manifest(d)["shards"]
    m = record(d, _cfg(frames=240), progress=False)
    assert m["shards"][:len(first)] == first
    a = read_manifest(rec_a)["shards"]
    assert [(e["name"], e["frames"]) for e in m["shards"]] == [(e["name"], e["frames"]) for e in a]
    for sa, sb in zip(_all(rec_a), _all(d)):
        np.testing.assert_array_equal(sa.frames, sb.frames)
    with pytest.raises(MatrixGameError, match="different config"):
        record(d, _cfg(frames=240, seed=9), progress=False)


def test_parallel_workers_match_serial(rec_a, tmp_path):
    record(str(tmp_path), _cfg(), workers=2, progress=False)
    for sa, sb in zip(_all(rec_a), _all(str(tmp_path))):
        np.testing.assert_array_equal(sa.frames, sb.frames)
        np.testing.assert_array_equal(sa.pose, sb.pose)


def test_cli_record_and_info(tmp_path, capsys):
    from matrix_game_core.data.__main__ import main
    d = str(tmp_path / "r")
    assert main(["record", "--out", d, "--frames", "60", "--size", "32x64", "--episode-len", "60:60",
                 "--maps", "MAP01", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["total_frames"] == 60 and out["last_run_frames_per_s"] > 0
    assert os.path.isfile(os.path.join(d, "ep000000.mp4"))
    assert main(["info", d]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["total_frames"] == 60 and set(info["key_press_rate"]) == {"forward", "back", "left", "right"}
    from matrix_game_core.actions import ActionTrack
    t = str(tmp_path / "t.json")
    assert main(["track", d, "--shard", "ep000000", "--start", "3", "--frames", "57", "--out", t]) == 0
    tr = ActionTrack.load(t)
    s = load_shard(d, entries(d)[0], frames=False)
    assert tr.num_frames == 57 and tr.meta["shard"] == "ep000000" and tr.fps == 17.5
    np.testing.assert_array_equal(tr.mouse.numpy(), s.mouse[3:60])

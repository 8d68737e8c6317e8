"""Evaluator (issue #5): action following on synthetic panning videos of known direction, motion
measurement, PSNR/SSIM, next-block evaluation on a tiny model, CLI."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from matrix_game_core.errors import MatrixGameError
from matrix_game_core.evaluate import (ACTION_CLASSES, action_following, block_rows, command_script,
                                       global_motion, main, phase_correlation, psnr, ssim,
                                       synthetic_panning_video, to_gray)


def _shift(img, dx, dy):
    """Translate an image [H,W] by (dx, dy) pixels (content moves right/down), bilinear."""
    h, w = img.shape
    t = torch.from_numpy(img)[None, None]
    ys = (torch.arange(h, dtype=torch.float32) - dy) / (h - 1) * 2 - 1
    xs = (torch.arange(w, dtype=torch.float32) - dx) / (w - 1) * 2 - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1)[None]
    return F.grid_sample(t, grid, mode="bilinear", padding_mode="reflection", align_corners=True)[0, 0].numpy()


def test_phase_correlation_recovers_subpixel_shifts():
    rng = np.random.default_rng(0)
    base = F.interpolate(torch.from_numpy(rng.random((1, 1, 24, 40)).astype(np.float32)), size=(96, 160),
                         mode="bicubic", align_corners=False)[0, 0].numpy()
    for dx, dy in ((2.5, 0.0), (-4.0, 1.25), (0.0, -3.5), (7.3, 2.2)):
        mx, my, peak = phase_correlation(base, _shift(base, dx, dy))
        assert mx == pytest.approx(dx, abs=0.25) and my == pytest.approx(dy, abs=0.25), (dx, dy, mx, my)
        assert peak > 0.2


def test_block_rows_match_the_session():
    from matrix_game_core.actions import block_row_range
    assert block_rows(0) == (0, 9)
    assert block_rows(1) == (9, 21)
    assert block_rows(3) == (33, 45)
    assert all(block_rows(b) == block_row_range(b) for b in range(8))


def test_command_script_can_hold_each_command_for_several_blocks():
    """hold_blocks k: each command of the cycle is held k blocks in a row (a player holding a key),
    with the same rows per block; 1 is the classic script."""
    _, ms1, labels1 = command_script(5, 0.1)
    _, ms3, labels3 = command_script(8, 0.1, hold_blocks=3, pitch_magnitude=0.04)
    assert labels1 == ["idle", "turn_left", "turn_right", "look_up", "look_down"]
    assert labels3 == ["idle"] + ["turn_left"] * 3 + ["turn_right"] * 3 + ["look_up"]
    assert torch.equal(ms3[9:45, 1], torch.full((36,), -0.1)) and torch.equal(ms3[45:81, 1], torch.full((36,), 0.1))
    assert torch.equal(ms3[81:93], torch.tensor([0.04, 0.0]).expand(12, 2))
    assert torch.equal(ms3[:9], torch.zeros(9, 2))
    # the synthetic world pans the held way all along: every held block is followed
    rep = action_following(synthetic_panning_video(ms3, 64, 112, px_per_step=3.0, seed=2), ms3, pitch_threshold=0.02)
    assert [sorted(b["classes"].items()) for b in rep.blocks[1:4]] == [[("turn_left", True)]] * 3
    # the model card's "held" tally counts only the blocks after the first of each hold
    from matrix_game_core.embedded.evaluation import held_blocks
    full = command_script(13, 0.1, hold_blocks=3, pitch_magnitude=0.04)[1]
    rep = action_following(synthetic_panning_video(full, 64, 112, px_per_step=3.0, seed=2), full, pitch_threshold=0.02,
                           scored=held_blocks(3))
    acc = rep.per_class
    assert {k: (v["n"], v["correct"]) for k, v in acc.items()} == {k: (2, 2) for k in acc}
    assert all(v["toward_px"] > 0 for v in acc.values())
    assert len(rep.blocks) == 13 and all(b["classes"] for b in rep.blocks[1:])   # every block still listed


def test_synthetic_panning_is_followed_100_percent():
    kb, ms, labels = command_script(9, 0.1)
    assert kb.shape == (105, 4) and ms.shape == (105, 2)
    assert labels[:5] == ["idle", "turn_left", "turn_right", "look_up", "look_down"]
    video = synthetic_panning_video(ms, 64, 112, px_per_step=3.0, seed=1)
    rep = action_following(video, ms)
    for name, _, _ in ACTION_CLASSES:
        assert rep.per_class[name]["n"] == 2
        assert rep.per_class[name]["accuracy"] == 1.0, (name, rep.blocks)
    assert rep.accuracy == 1.0 and rep.yaw_accuracy == 1.0 and rep.pitch_accuracy == 1.0
    # the measured motion is the rendered one: turning right at 0.1 moves the picture 3 px left
    right = [b for b in rep.blocks if "turn_right" in b["classes"]][0]
    assert right["motion_px"][0] == pytest.approx(-3.0, abs=0.1)
    up = [b for b in rep.blocks if "look_up" in b["classes"]][0]
    assert up["motion_px"][1] == pytest.approx(3.0, abs=0.1)
    for name, _, _ in ACTION_CLASSES:                       # 3 px a frame, the commanded way
        assert rep.per_class[name]["toward_px"] == pytest.approx(3.0, abs=0.15), name
    wrong = action_following(video, -ms)                    # the same video under the opposite commands
    assert all(v["toward_px"] == pytest.approx(-3.0, abs=0.15) for v in wrong.per_class.values())
    still = action_following(np.repeat(video[:1], len(video), axis=0), ms)   # a still picture
    assert all(abs(v["toward_px"]) < 0.05 and v["accuracy"] == 0.0 for v in still.per_class.values())


@pytest.mark.parametrize("px,mag", [(0.6, 0.1), (2.0, 0.06), (6.0, 0.1)])
def test_synthetic_accuracy_over_speeds_and_seeds(px, mag):
    for seed in range(3):
        _, ms, _ = command_script(5, mag)
        rep = action_following(synthetic_panning_video(ms, 48, 96, px, seed=seed), ms)
        assert rep.accuracy == 1.0, (px, mag, seed, rep.blocks)


def test_wrong_direction_and_frozen_video_score_zero():
    _, ms, _ = command_script(9, 0.1)
    video = synthetic_panning_video(ms, 64, 112, 3.0)
    assert action_following(video, -ms).accuracy == 0.0             # the world turns the other way
    frozen = np.repeat(video[:1], len(video), axis=0)
    assert action_following(frozen, ms).accuracy == 0.0             # the world does not turn at all


def test_layouts_give_the_same_motion():
    _, ms, _ = command_script(3, 0.1)
    v = synthetic_panning_video(ms, 32, 64, 2.0)
    ref = global_motion(v)
    as_float = torch.from_numpy(v).float() / 255                       # ComfyUI IMAGE
    engine = (torch.from_numpy(v).permute(3, 0, 1, 2).float() / 127.5 - 1)[None]   # [1,3,T,H,W] in [-1,1]
    for alt in (as_float, engine, engine[0]):
        np.testing.assert_allclose(global_motion(alt), ref, atol=0.05)
    with pytest.raises(MatrixGameError, match="expected"):
        to_gray(np.zeros((4, 5, 6)))
    with pytest.raises(MatrixGameError, match="rows"):
        action_following(v, ms[:5])


def test_psnr_ssim():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert psnr(x, x) == float("inf")
    y = (x + 0.1).clamp(0, 1)
    assert 15 < psnr(y, x) < 25
    noisy = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert ssim(noisy, x) < ssim(y, x) < 1.0


def test_next_block_on_a_tiny_model():
    from matrix_game_core.evaluate import evaluate_next_block
    from matrix_game_core.pipeline import random_tiny

    comps = random_tiny("universal", seed=0)
    _, ms, _ = command_script(3, 0.1)
    video = synthetic_panning_video(ms, 32, 64, 2.0)
    kb = torch.zeros(len(video), 4)
    rep = evaluate_next_block(comps.dit, comps.vae, video, kb, ms, seed=0, denoising_step_list=[1000, 500])
    assert rep["blocks"] == 2
    for k in ("model", "copy_last", "rollout"):
        assert np.isfinite(rep[k]["psnr"]) and -1 <= rep[k]["ssim"] <= 1
    # the copy-last baseline is exactly "hold the last ground-truth frame"
    gt = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255
    s, e = block_rows(1)
    assert rep["per_block"]["copy_last"]["psnr"][0] == pytest.approx(psnr(gt[s - 1:s].expand(e - s, -1, -1, -1), gt[s:e]))
    with pytest.raises(MatrixGameError, match="9 \\+ 12k"):
        evaluate_next_block(comps.dit, comps.vae, video[:20], kb, ms)


def test_cli_synthetic_and_motion(tmp_path, capsys):
    assert main(["synthetic", "--blocks", "5", "--seeds", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0
    from matrix_game_core.data.shards import write_mp4
    _, ms, _ = command_script(5, 0.1)
    v = synthetic_panning_video(ms, 64, 112, 3.0)
    write_mp4(str(tmp_path / "v.mp4"), v, 12.0)
    from matrix_game_core.actions import ActionTrack
    ActionTrack("universal", torch.zeros(len(ms), 4), ms).validate().save(str(tmp_path / "t.json"))
    assert main(["motion", str(tmp_path / "v.mp4"), "--track", str(tmp_path / "t.json")]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["accuracy"] == 1.0
    (tmp_path / "plain.json").write_text(json.dumps({"mouse": (-ms).tolist()}))     # plain rows work too
    assert main(["motion", str(tmp_path / "v.mp4"), "--track", str(tmp_path / "plain.json")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 0.0


def test_pitch_threshold_for_pitch_limited_games():
    _, ms, labels = command_script(5, 0.1, pitch_magnitude=0.04)
    assert float(ms[block_rows(3)[0], 0]) == pytest.approx(0.04) and labels[3] == "look_up"
    assert float(ms[block_rows(1)[0], 1]) == pytest.approx(-0.1)
    video = synthetic_panning_video(ms, 48, 96, 3.0)
    assert action_following(video, ms).per_class["look_up"]["n"] == 0          # below half a step
    rep = action_following(video, ms, pitch_threshold=0.02)
    assert rep.per_class["look_up"]["n"] == 1 and rep.accuracy == 1.0


def _decoded_like(video: np.ndarray, seed: int = 0, amp: float = 2.0, blur: int = 15,
                  contrast: float = 0.3) -> np.ndarray:
    """What the embedded VAE's decoder makes of a fast pan (docs/data_and_training.md §3c): a heavily
    blurred, low-contrast world whose motion comes in steps at latent-frame boundaries (the 4
    frames of a latent frame show one view), under a faint static 8-pixel pattern."""
    t = video.shape[0]
    x = torch.from_numpy(video).float().permute(0, 3, 1, 2)
    x = (F.avg_pool2d(x, blur, 1, blur // 2, count_include_pad=False) - 128) * contrast + 128
    x = x.permute(0, 2, 3, 1).numpy()
    stepped = np.stack([x[min(t - 1, 4 * ((i + 3) // 4))] for i in range(t)])
    h, w = video.shape[1:3]
    cell = np.random.default_rng(seed).standard_normal((8, 8, 1)) * amp
    return np.clip(stepped + np.tile(cell, (h // 8, w // 8, 3)), 0, 255).astype(np.uint8)


def test_following_sees_the_motion_of_decoded_video():
    """Frame-to-frame phase correlation pins such video at 0 motion (the embedded VAE's round trip of
    recorded turns scored 3 %); the evaluator's estimator (frames 2 apart, half-whitened) does not."""
    from matrix_game_core.evaluate import action_following, command_script
    from matrix_game_core.data.synthetic import synthetic_panning_video
    _, ms, _ = command_script(9, 0.1)
    video = _decoded_like(synthetic_panning_video(ms, 64, 112, px_per_step=3.0, seed=1))
    classical = action_following(video, ms, stride=1, whiten=1.0)
    assert classical.accuracy <= 0.5
    rep = action_following(video, ms)
    assert rep.accuracy == 1.0
    assert action_following(video, -ms).accuracy == 0.0                # opposite commands: never followed
    assert action_following(video, ms, motion=global_motion(video, stride=2, whiten=0.5)).accuracy == 1.0


def test_generalised_phase_correlation_and_strided_motion():
    rng = np.random.default_rng(0)
    base = rng.random((48, 64)).astype(np.float32)
    for whiten in (0.0, 0.5):
        dx, dy, peak = phase_correlation(base, _shift(base, 3, -2), whiten=whiten)
        assert (round(dx), round(dy)) == (3, -2) and 0.2 < peak <= 1.0 + 1e-6
    v = np.repeat(np.stack([_shift(base, 2 * i, 0) for i in range(5)])[..., None], 3, -1)   # 2 px/frame right
    mo = global_motion(v, stride=2, whiten=0.5)
    assert mo.shape == (3, 3)
    np.testing.assert_allclose(mo[:, 0], 2.0, atol=0.15)
    with pytest.raises(MatrixGameError, match="stride 4 needs at least 5 frames"):
        global_motion(v[:4], stride=4)
    with pytest.raises(MatrixGameError, match="at least 1 frame"):
        global_motion(v, stride=0)

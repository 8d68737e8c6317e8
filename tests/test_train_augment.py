"""Camera-pan augmentation (train/augment.py): pure mouse motion made from real latents."""
import torch

from matrix_game_core.eval_video import global_motion
from matrix_game_core.train.augment import DOOM_PAN_PER_UNIT, camera_pan_batch, shift_latent
from matrix_game_core.train.config import DiTStage, TrainConfig


def _batch(b=3, n=9, h=8, w=14, yaw=0.0, pitch=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = 1 + 4 * (n - 1)
    mouse = torch.zeros(b, t, 2)
    mouse[..., 0] = pitch
    mouse[..., 1] = yaw
    return {"latents": torch.randn(b, 16, n, h, w, generator=g), "cond": torch.randn(b, 20, n, h, w, generator=g),
            "keyboard": torch.ones(b, t, 4), "mouse": mouse}


def test_shift_latent_moves_content_and_fills_the_border():
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).view(2, 4, 6)
    fill = torch.full_like(x, -1.0)
    y = shift_latent(x, 1, -2, fill)                     # down 1, left 2
    torch.testing.assert_close(y[:, 1:, :4], x[:, :3, 2:])
    assert (y[:, 0] == -1).all() and (y[:, :, 4:] == -1).all()
    torch.testing.assert_close(shift_latent(x, 0, 0, fill), x)
    torch.testing.assert_close(shift_latent(x, 0, 6, fill), fill)   # beyond the frame: all new content


def test_pan_is_the_accumulated_camera_rows_and_leaves_the_rest():
    b = _batch(yaw=0.1)
    out = camera_pan_batch(b, 1.0, torch.Generator().manual_seed(0))
    assert out["camera_pan"].all()
    lat, src = out["latents"], b["latents"]
    torch.testing.assert_close(lat[:, :, :2], src[:, :, :2])          # frame 0 (the start image) and 1 kept
    torch.testing.assert_close(out["cond"], b["cond"])
    torch.testing.assert_close(out["mouse"], b["mouse"])
    assert (out["keyboard"] == 0).all() and (b["keyboard"] == 1).all()  # standing still; input untouched
    step = DOOM_PAN_PER_UNIT[1] * 14 * 0.4                              # 4 rows of 0.1 yaw a latent frame
    for k in range(2, 9):
        dx = int(round(step * (k - 1)))
        assert dx < 0                                                   # turn right: the picture moves left
        want = shift_latent(src[0, :, 1], 0, dx, src[1, :, 1])          # new content from the next clip
        torch.testing.assert_close(lat[0, :, k], want)


def test_pan_direction_is_what_the_evaluator_expects():
    """A smooth picture panned under turn right / look up moves the way action_following checks."""
    yy, xx = torch.meshgrid(torch.linspace(0, 6, 32), torch.linspace(0, 9, 56), indexing="ij")
    img = (torch.sin(xx) * torch.cos(1.3 * yy) + 0.5 * torch.sin(0.7 * xx + yy))[None].expand(16, -1, -1)
    for yaw, pitch, axis, sign in ((0.1, 0.0, 0, -1), (-0.1, 0.0, 0, 1), (0.0, 0.03, 1, 1), (0.0, -0.03, 1, -1)):
        b = _batch(b=2, h=32, w=56, yaw=yaw, pitch=pitch)
        b["latents"][:, :, 1] = img
        out = camera_pan_batch(b, 1.0, torch.Generator().manual_seed(0))
        v = out["latents"][0, 0, 1:]                                      # [N-1, h, w] one channel
        video = ((v - v.min()) / (v.max() - v.min()))[..., None].expand(-1, -1, -1, 3).numpy()  # [T,H,W,3]
        mo = global_motion(video)[:, axis]
        assert (mo * sign > 0.5).all(), (yaw, pitch, mo)


def test_pan_share_and_presets():
    out = camera_pan_batch(_batch(b=64), 0.0, torch.Generator().manual_seed(0))
    assert not out["camera_pan"].any() and (out["keyboard"] == 1).all()
    out = camera_pan_batch(_batch(b=64), 0.5, torch.Generator().manual_seed(0))
    assert 16 < int(out["camera_pan"].sum()) < 48
    assert DiTStage().camera_pan_prob == 0.0                         # off unless a preset asks for it
    assert TrainConfig.from_dict(TrainConfig().to_dict()).dit.camera_pan_per_unit == list(DOOM_PAN_PER_UNIT)


def test_random_camera_track_is_blockwise_and_the_pan_follows_it():
    from matrix_game_core.train.augment import random_camera_track
    g = torch.Generator().manual_seed(1)
    tr = torch.stack([random_camera_track(33, g) for _ in range(200)])      # [200, 33, 2]
    bounds = [(0, 9), (9, 21), (21, 33)]
    for s, e in bounds:
        assert (tr[:, s:e] == tr[:, s:s + 1]).all()                             # constant within a block
    assert tr[..., 0].abs().max() <= 0.06 and tr[..., 1].abs().max() <= 0.15
    still = (tr[:, :, 1] == 0).float().mean()
    assert 0.3 < float(still) < 0.5                                             # still blocks, then turns
    assert (tr[:, 9, 1] > 0).any() and (tr[:, 9, 1] < 0).any()
    b = _batch(b=2)
    out = camera_pan_batch(b, 1.0, torch.Generator().manual_seed(0), random_track_prob=1.0)
    torch.testing.assert_close(out["mouse"][:, :4], b["mouse"][:, :4])         # rows up to latent frame 1 kept
    assert out["mouse"][:, 4:].abs().sum() > 0 and (b["mouse"] == 0).all()
    ms = out["mouse"][0]
    cy = cx = 0.0
    for k in range(2, 9):
        cy += DOOM_PAN_PER_UNIT[0] * 8 * float(ms[4 * k - 4:4 * k, 0].sum())
        cx += DOOM_PAN_PER_UNIT[1] * 14 * float(ms[4 * k - 4:4 * k, 1].sum())
        want = shift_latent(b["latents"][0, :, 1], int(round(cy)), int(round(cx)), b["latents"][1, :, 1])
        torch.testing.assert_close(out["latents"][0, :, k], want)

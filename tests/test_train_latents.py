"""Latent clips for DiT training (train/latents.py): the per-clip and the per-episode encodings,
and the repeated-conditioning shortcut, against direct engine calls."""
import os

import numpy as np
import pytest
import torch

from matrix_game_core.data.synthetic import write_synthetic_recording
from matrix_game_core.errors import MatrixGameError
from matrix_game_core.train.latents import LatentClips, encode_recording
from matrix_game_core.train.vae import save_vae
from matrix_game_core.vae import WanVAE, encode_start_image, normalize_latents


@pytest.fixture(scope="module")
def rec_and_vae(tmp_path_factory):
    root = tmp_path_factory.mktemp("lat")
    data = str(root / "rec")
    write_synthetic_recording(data, episodes=3, frames=60, size=(16, 32))
    torch.manual_seed(0)
    vae = WanVAE(dim=4).eval().requires_grad_(False)
    vp = str(root / "vae.safetensors")
    save_vae(vae, vp)
    return root, data, vae, vp


def _shard(data, split, i=0):
    from matrix_game_core.data.shards import entries, load_shard
    e = entries(data, split)[i]
    return e, load_shard(data, e)


def _video(frames):
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


def test_episode_clips_are_cut_from_one_causal_encoding(rec_and_vae):
    root, data, vae, vp = rec_and_vae
    out = str(root / "episode")
    meta = encode_recording(vae, vp, data, out, clip_latents=3, stride=8, echo=False, clip_encoding="episode",
                            cond_latents=2)
    assert meta["clip_encoding"] == "episode" and meta["cond_latents"] == 2
    e, s = _shard(data, "train")
    rec = torch.load(os.path.join(out, "train", e["name"] + ".pt"), weights_only=True)
    m = (len(s) - 1) // 4
    assert rec["starts"].tolist() == [4 * k for k in range(0, m - 3 + 2, 2)]
    ep = normalize_latents(vae.encode(_video(s.frames[:1 + 4 * m])))[0]
    for j, st in enumerate(rec["starts"].tolist()):
        k = st // 4
        first = normalize_latents(vae.encode(_video(s.frames[st:st + 1])))[0, :, 0]
        torch.testing.assert_close(rec["latents"][j, :, 0].float(), first, atol=2e-3, rtol=0)
        torch.testing.assert_close(rec["latents"][j, :, 1:].float(), ep[:, k + 1:k + 3], atol=2e-3, rtol=0)
        cond = encode_start_image(vae, _video(s.frames[st:st + 1])[:, :, 0], 2)[0, 4:]
        torch.testing.assert_close(rec["cond"][j, :, :2].float(), cond, atol=2e-3, rtol=0)
        torch.testing.assert_close(rec["cond"][j, :, 2].float(), cond[:, 1], atol=2e-3, rtol=0)  # repeated
        assert torch.equal(rec["keyboard"][j], torch.from_numpy(s.keyboard[st:st + 9]))
    clips = LatentClips(out, "train")
    b = clips.get(torch.tensor([0]))
    assert b["latents"].shape == (1, 16, 3, 2, 4) and b["cond"].shape == (1, 20, 3, 2, 4)


def test_clip_mode_with_repeated_conditioning_and_shard_limit(rec_and_vae):
    root, data, vae, vp = rec_and_vae
    out = str(root / "clip")
    meta = encode_recording(vae, vp, data, out, clip_latents=3, echo=False, cond_latents=1,
                            max_shards={"train": 1, "val": 0})
    assert meta["clips"]["val"] == 0 and len(os.listdir(os.path.join(out, "train"))) == 1
    e, s = _shard(data, "train")
    rec = torch.load(os.path.join(out, "train", e["name"] + ".pt"), weights_only=True)
    st = rec["starts"][1].item()
    lat = normalize_latents(vae.encode(_video(s.frames[st:st + 9])))[0]
    torch.testing.assert_close(rec["latents"][1].float(), lat, atol=2e-3, rtol=0)
    assert torch.equal(rec["cond"][1, :, 1], rec["cond"][1, :, 0]) and torch.equal(rec["cond"][1, :, 2], rec["cond"][1, :, 0])


def test_episode_mode_needs_whole_latent_strides(rec_and_vae):
    root, data, vae, vp = rec_and_vae
    with pytest.raises(MatrixGameError, match="multiple of 4"):
        encode_recording(vae, vp, data, str(root / "bad"), clip_latents=3, stride=6, echo=False,
                         clip_encoding="episode")


def test_latent_anchor_follows_the_causal_chunking():
    from matrix_game_core.train.vae import latent_anchor
    v = torch.rand(2, 3, 9, 16, 24)
    a = latent_anchor(v)
    assert a.shape == (2, 3, 3, 2, 3)
    torch.testing.assert_close(a[:, :, 0, 0, 0], v[:, :, 0, :8, :8].mean((-1, -2)))
    torch.testing.assert_close(a[:, :, 2, 1, 2], v[:, :, 5:9, 8:16, 16:24].mean((-1, -2, -3)))


def test_anchor_weight_adds_its_term_to_the_vae_loss():
    from matrix_game_core.train.config import VAEStage
    from matrix_game_core.train.vae import build_vae, vae_losses
    torch.manual_seed(0)
    vae, x = build_vae(4), torch.rand(2, 3, 5, 16, 16) * 2 - 1
    torch.manual_seed(1)
    plain = vae_losses(vae, x, VAEStage(dim=4))
    torch.manual_seed(1)
    anch = vae_losses(vae, x, VAEStage(dim=4, anchor_weight=0.5))
    assert "anchor" not in plain and float(anch["anchor"]) > 0
    torch.testing.assert_close(anch["loss"], plain["loss"] + 0.5 * anch["anchor"])


def _clips_with_mouse(mouse):
    c = LatentClips.__new__(LatentClips)          # no files: only the fields onset_clips / batch read
    n, t = mouse.shape[:2]
    c.mouse = mouse
    c.keyboard = torch.zeros(n, t, 4, dtype=torch.uint8)
    c.latents = torch.arange(n, dtype=torch.float16).view(n, 1, 1, 1, 1).expand(n, 16, 3, 2, 2).clone()
    c.cond = torch.zeros(n, 16, 3, 2, 2, dtype=torch.float16)
    return c


def test_onset_clips_are_turns_from_rest_and_focus_sampling():
    t = 33
    m = torch.zeros(6, t, 2)
    m[0, 9:, 1] = 0.1            # still 9 frames, then turn right: onset
    m[1, :, 1] = 0.05            # always turning: no onset
    m[2, 7:, 0] = -0.07          # still only 7 frames, then look down: not with still_frames=8
    m[3, :12, 1] = 0.1           # turning, then stops: no onset (the reverse)
    m[4, 20:, 0] = 0.04          # moving from frame 20 after rest: onset (pitch)
    m[5, 10:12, 1] = 0.1         # a 2-frame twitch: too short to be a turn (needs 4 moving frames)
    c = _clips_with_mouse(m)
    assert c.onset_clips(8).tolist() == [0, 4]
    assert c.onset_clips(7).tolist() == [0, 2, 4]
    with pytest.raises(MatrixGameError, match="at least 1"):
        c.onset_clips(0)
    assert c.onset_clips(8, "yaw").tolist() == [0] and c.onset_clips(8, "pitch").tolist() == [4]
    assert c.onset_clips(7, "pitch").tolist() == [2, 4]
    with pytest.raises(MatrixGameError, match="any, yaw or pitch"):
        c.onset_clips(8, "roll")
    focus = c.onset_clips(8)
    # share 0 draws exactly the uniform batch (a resumed run stays bit-identical)
    a = c.batch(5, torch.Generator().manual_seed(3))
    b = c.batch(5, torch.Generator().manual_seed(3), focus, 0.0)
    assert torch.equal(a["latents"], b["latents"])
    # share 1: every row is an onset clip; share 0.5: about half
    rows = c.batch(64, torch.Generator().manual_seed(4), focus, 1.0)["latents"][:, 0, 0, 0, 0]
    assert set(rows.long().tolist()) <= {0, 4}
    rows = c.batch(2000, torch.Generator().manual_seed(5), focus, 0.5)["latents"][:, 0, 0, 0, 0].long()
    share = float(((rows == 0) | (rows == 4)).float().mean())
    assert abs(share - (0.5 + 0.5 * 2 / 6)) < 0.04

"""Training at scale (issue 13): safe checkpoint reading (no pickle execution, first-format
checkpoints still resume), data parallel under ``torchrun`` (ranks bit-identical, losses equal to
one process with the same global batch, resume under another world size), the Self-Forcing
rollout equal to WorldSession, clear errors for a wrong teacher / recipe, export of an unfinished
dit stage."""
import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from matrix_game_core.errors import MatrixGameError
from matrix_game_core.train.config import TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(**dit):
    cfg = TrainConfig.preset("smoke")
    cfg.dit.steps, cfg.dit.batch, cfg.log_every, cfg.ckpt_every = 2, 2, 1, 1
    for k, v in dit.items():
        setattr(cfg.dit, k, v)
    return cfg


def _fake_latents(run, n=4, frames=6, h=4, w=8, seed=0):
    """A latents folder in the format of train/latents.py (random tensors: the plumbing only)."""
    g = torch.Generator().manual_seed(seed)
    t = 1 + 4 * (frames - 1)
    for split in ("train", "val"):
        os.makedirs(os.path.join(run, "latents", split), exist_ok=True)
        torch.save({"latents": torch.randn(n, 16, frames, h, w, generator=g).half(),
                    "cond": torch.randn(n, 16, frames, h, w, generator=g).half(),
                    "keyboard": (torch.rand(n, t, 4, generator=g) > 0.5).to(torch.uint8),
                    "mouse": torch.randn(n, t, 2, generator=g) * 0.1, "starts": torch.arange(n)},
                   os.path.join(run, "latents", split, "ep000000.pt"))
    with open(os.path.join(run, "latents", "meta.json"), "w") as f:
        json.dump({"clip_latents": frames, "vae_sha256": "f" * 64, "latent_hw": [h, w]}, f)


def _log(run, stage, kind=None):
    with open(os.path.join(run, stage, "log.jsonl")) as f:
        recs = [json.loads(line) for line in f]
    return [r for r in recs if kind is None or r["stage"] == kind]


# ---------------------------------------------------------------------------------------------- checkpoints
class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))        # would create a file when unpickled


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    from matrix_game_core.train.common import load_checkpoint
    marker = tmp_path / "pwned"
    p = tmp_path / "ckpt.pt"
    torch.save({"model": {}, "step": 1, "payload": _Evil(str(marker))}, p)
    with pytest.raises(MatrixGameError, match="ckpt.pt.*run code.*delete it"):
        load_checkpoint(str(p))
    assert not marker.exists()                                  # nothing ran
    # through the CLI, before anything else happens
    run = tmp_path / "run"
    _fake_latents(str(run))
    os.makedirs(run / "dit")
    shutil.copy(p, run / "dit" / "ckpt.pt")
    from matrix_game_core.train.__main__ import main
    assert main(["dit", "--data", str(tmp_path), "--out", str(run), "--preset", "smoke", "--device", "cpu",
                 "--quiet"]) == 2
    assert not marker.exists()


def test_first_format_checkpoint_resumes(tmp_path):
    """A checkpoint written by the first save_checkpoint (numpy RNG state as numpy's tuple, read
    then with weights_only=False) resumes with weights_only=True, RNGs restored."""
    from matrix_game_core.train.dit import train_dit
    run = str(tmp_path / "run")
    _fake_latents(run)
    cfg = _cfg()
    train_dit(run, cfg, torch.device("cpu"), echo=False)
    ck = os.path.join(run, "dit", "ckpt.pt")
    st = torch.load(ck, weights_only=True)
    np.random.seed(7)
    random.seed(7)
    torch.manual_seed(7)
    st["rng"] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    torch.save(st, ck)                                          # today's format, as the lead's runs hold it
    want = np.random.get_state()[1].copy()
    np.random.seed(0)
    from matrix_game_core.train.common import load_checkpoint
    assert load_checkpoint(ck)["step"] == 2
    assert np.array_equal(np.random.get_state()[1], want)
    cfg.dit.steps = 4
    train_dit(run, cfg, torch.device("cpu"), echo=False)
    assert [r["step"] for r in _log(run, "dit", "dit_resume")] == [2]
    assert max(r["step"] for r in _log(run, "dit", "dit")) == 4


def test_wrong_recipe_checkpoint_says_what_to_do(tmp_path):
    from matrix_game_core.train.dit import train_dit
    run = str(tmp_path / "run")
    _fake_latents(run)
    train_dit(run, _cfg(), torch.device("cpu"), echo=False)
    with pytest.raises(MatrixGameError, match=r"ckpt\.pt: its DiT does not match.*new --out folder"):
        train_dit(run, _cfg(dim=32, num_heads=2, steps=3), torch.device("cpu"), echo=False)


def test_export_of_an_unfinished_dit_stage(tmp_path):
    from matrix_game_core.checkpoints import load_dit
    from matrix_game_core.train.dit import train_dit
    from matrix_game_core.train.export import export_run
    from matrix_game_core.train.vae import build_vae, save_vae
    run = str(tmp_path / "run")
    _fake_latents(run)
    cfg = _cfg()
    train_dit(run, cfg, torch.device("cpu"), echo=False)
    os.remove(os.path.join(run, "dit", "model.safetensors"))   # the stage as it is while still training
    save_vae(build_vae(8), os.path.join(run, "vae", "vae.safetensors"))
    with pytest.raises(MatrixGameError, match="missing"):
        export_run(run)                                          # without the config: nothing to build it from
    out = export_run(run, train_config=cfg, echo=False)
    with open(os.path.join(out, "info.json")) as f:
        assert json.load(f)["dit_from_checkpoint_step"] == 2
    dit = load_dit(os.path.join(out, "dit", "model.safetensors"), dtype=torch.float32)
    st = torch.load(os.path.join(run, "dit", "ckpt.pt"), weights_only=True)
    sd = dit.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in st["ema"].items())     # the EMA weights


# ---------------------------------------------------------------------------------------------- distillation pieces
def _tiny_teacher(cfg):
    from matrix_game_core.train.dit import build_dit
    torch.manual_seed(0)
    m = build_dit(cfg.dit.model_config())
    for p in m.parameters():            # a non-trivial model (the head starts at zero)
        if p.dim() >= 2:
            torch.nn.init.normal_(p, std=0.05)
    return m.eval()


def test_self_forcing_rollout_is_the_world_session_sampler():
    from matrix_game_core.sampling import Conditioning, FlowMatchScheduler, WorldSession
    from matrix_game_core.train.distill import self_forcing_rollout
    m = _tiny_teacher(_cfg())
    steps = [1000, 666, 333]
    cond = torch.randn(1, 20, 6, 4, 8)
    kb, ms = (torch.rand(1, 21, 4) > 0.5).float(), torch.randn(1, 21, 2) * 0.1
    s = WorldSession(m, Conditioning(cond, torch.zeros(1, 1, 1280)), seed=5, denoising_step_list=steps)
    want, _ = s.generate(kb, ms, 6)
    sched = FlowMatchScheduler(m.cfg.timestep_shift)
    ts = sched.warp(steps)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        got = self_forcing_rollout(m, cond, kb, ms, ts, [sched.sigma(float(t)) for t in ts], None,
                                   lambda: torch.randn(1, 16, 3, 4, 8, generator=g))
    assert torch.equal(got, want)
    # gradient flows through each block's exit step (here the first) only
    m.train()
    g = torch.Generator().manual_seed(5)
    x = self_forcing_rollout(m, cond, kb, ms, ts, [sched.sigma(float(t)) for t in ts], 0,
                             lambda: torch.randn(1, 16, 3, 4, 8, generator=g))
    x.square().mean().backward()
    assert m.head.head.weight.grad.abs().sum() > 0 and x.requires_grad


def test_dmd_real_score_guidance():
    """The real score's guidance: all scales 1 is the plain teacher (a critic equal to the teacher gives
    no DMD gradient); guided, the DMD direction is exactly the nested guidance combination of the
    teacher's whole-clip passes (f(0) + w_k (f(keys) - f(0)) + w (f(keys, yaw) - f(keys)) + w_p (f(a) -
    f(keys, yaw))) against the critic's x0, normalised by mean |x - x0_real|."""
    from matrix_game_core.train.distill import dmd_loss, real_guidance
    cfg = _cfg()
    teacher = _tiny_teacher(cfg)
    g = torch.Generator().manual_seed(3)
    b, n, h, w = 2, 6, 4, 8
    x = torch.randn(b, 16, n, h, w, generator=g)
    eps = torch.randn(b, 16, n, h, w, generator=g)
    mask = torch.zeros(b, 4, n, h, w)
    mask[:, :, 0] = 1
    batch = {"cond": torch.cat([mask, torch.randn(b, 16, n, h, w, generator=g)], 1),
             "keyboard": (torch.rand(b, 21, 4, generator=g) > 0.5).float(),
             "mouse": torch.randn(b, 21, 2, generator=g) * 0.1}
    t = torch.tensor([700.0, 300.0])
    assert real_guidance(cfg.distill) == {"w": 1.0, "w_pitch": None, "w_keys": None, "rescale": 0.0}
    plain = dmd_loss(x, teacher, teacher, batch, t, eps)
    assert float(plain["loss"]) == 0.0 and float(plain["grad"]) == 0.0
    guided = dmd_loss(x, teacher, teacher, batch, t, eps, w=2.0, w_pitch=4.0, w_keys=1.0)
    s = (t / 1000).view(b, 1, 1, 1, 1)
    xt = (1 - s) * x + s * eps
    ts = t.view(b, 1).expand(b, n)
    vc = torch.zeros(b, 1, teacher.cfg.img_dim)
    with torch.no_grad():
        def f(kb, ms):
            return teacher(xt, ts, batch["cond"], vc, kb, ms, 0, None).float()
        keys_only = torch.zeros_like(batch["mouse"])
        keys_yaw = keys_only.clone()
        keys_yaw[..., 1] = batch["mouse"][..., 1]
        f_keys, f_yaw, f_all = f(batch["keyboard"], keys_only), f(batch["keyboard"], keys_yaw), f(batch["keyboard"],
                                                                                                batch["mouse"])
    v = f_keys + 2.0 * (f_yaw - f_keys) + 4.0 * (f_all - f_yaw)      # w_keys 1: the sum starts at f(keys)
    real, fake = xt - s * v, xt - s * f_all
    grad = (fake - real) / (x - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    assert float(guided["grad"]) > 1e-4
    torch.testing.assert_close(float(guided["grad"]), float(grad.abs().mean()), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(float(guided["loss"]), float(0.5 * grad.double().square().mean()), rtol=1e-4,
                               atol=1e-9)


def test_student_is_sampled_without_the_teachers_guidance():
    """A teacher shipped with a guided sampler: its student's config keeps the architecture, takes the
    student's step list, and turns the sampler's guidance off (it is trained to be sampled unguided)."""
    from matrix_game_core.train.distill import trainable_copy
    teacher = _tiny_teacher(_cfg())
    teacher.cfg.action_guidance, teacher.cfg.pitch_guidance, teacher.cfg.keyboard_guidance = 2.0, 4.0, 1.0
    teacher.cfg.guidance_rescale, teacher.cfg.guidance_hold, teacher.cfg.guidance_steps = 1.0, 0.5, 3
    student = trainable_copy(teacher, [1000, 500, 150, 50])
    c = student.cfg
    assert c.denoising_step_list == [1000, 500, 150, 50] and c.dim == teacher.cfg.dim
    assert (c.action_guidance, c.pitch_guidance, c.keyboard_guidance) == (1.0, None, None)
    assert (c.guidance_rescale, c.guidance_hold, c.guidance_steps) == (0.0, 0.0, None)
    assert teacher.cfg.action_guidance == 2.0                       # the teacher is left as it was
    torch.testing.assert_close(student.head.head.weight, teacher.head.head.weight)


def test_data_regression_is_teacher_forced_next_block_prediction():
    """The data regression's batch: per clip one target block noised at one of the student's warped
    timesteps, the blocks before it clean (t = 0, the teacher-forced context), the loss on that block
    only; the loss is the x0 MSE of the student's prediction of that block, which the KV-cached
    sampler's first step makes from the same context and noise (a test of what is regressed)."""
    from matrix_game_core.sampling import FlowMatchScheduler
    from matrix_game_core.train.distill import regression_batch, regression_loss
    m = _tiny_teacher(_cfg())
    sched = FlowMatchScheduler(m.cfg.timestep_shift)
    ts = sched.warp([1000, 500, 150, 50])
    sig = [sched.sigma(float(t)) for t in ts]
    g = torch.Generator().manual_seed(0)
    b, n = 64, 6
    lat = torch.randn(b, 16, n, 4, 8, generator=g)
    mask = torch.zeros(b, 4, n, 4, 8)
    mask[:, :, 0] = 1
    batch = {"latents": lat, "cond": torch.cat([mask, torch.randn(b, 16, n, 4, 8, generator=g)], 1),
             "keyboard": (torch.rand(b, 21, 4, generator=g) > 0.5).float(), "mouse": torch.randn(b, 21, 2) * 0.1}
    rb = regression_batch(batch, ts, sig, 3, torch.Generator().manual_seed(1))
    allowed = {round(float(t), 3) for t in ts}
    blocks_seen, steps_seen = set(), set()
    for i in range(b):
        lm, tt, ss = rb["loss_mask"][i], rb["timestep"][i], rb["sigma"][i]
        k = int(lm.nonzero()[0]) // 3
        assert lm.tolist() == [1.0 if j // 3 == k else 0.0 for j in range(n)]
        assert (tt[:3 * k] == 0).all() and (ss[:3 * k] == 0).all()            # clean context
        assert round(float(tt[3 * k]), 3) in allowed and (tt[3 * k:] == tt[3 * k]).all()
        assert float(ss[3 * k]) == pytest.approx(float(sched.sigma(float(tt[3 * k]))), abs=1e-6)
        blocks_seen.add(k)
        steps_seen.add(round(float(tt[3 * k]), 3))
    assert blocks_seen == {0, 1} and steps_seen == allowed
    # the first two (high-noise) steps only
    rb2 = regression_batch(batch, ts, sig, 3, torch.Generator().manual_seed(1), first_steps=2)
    tgt = (rb2["timestep"] * rb2["loss_mask"]).amax(dim=1)
    assert {round(float(t), 3) for t in tgt} == {round(float(t), 3) for t in ts[:2]}
    # the loss by hand: x0 = x_t - sigma v on the target block
    one = {k: v[:2] for k, v in rb.items()}
    s = one["sigma"].view(2, 1, n, 1, 1)
    xt = (1 - s) * one["latents"] + s * one["noise"]
    with torch.no_grad():
        v = m(xt, one["timestep"], one["cond"], torch.zeros(2, 1, m.cfg.img_dim), one["keyboard"], one["mouse"], 0,
              None)
        got = regression_loss(m, one, m.cfg.img_dim)
    per = ((xt - s * v - one["latents"]) ** 2).mean(dim=(1, 3, 4))
    want = (per * one["loss_mask"]).sum() / one["loss_mask"].sum()
    torch.testing.assert_close(got, want)
    # a model that predicts the recorded block exactly has no regression loss; a wrong one has
    exact = one["noise"] - one["latents"]                 # the flow whose x0 is the recorded latents
    with torch.no_grad():
        class Oracle(torch.nn.Module):
            def forward(self, *a):
                return exact
        assert float(regression_loss(Oracle(), one, m.cfg.img_dim)) < 1e-10
        assert float(got) > 0.01


def test_distill_with_data_regression_from_a_student(tmp_path):
    """`regression_weight` adds the data regression to the student's loss (logged beside the DMD
    loss); `student_init` starts the student from other weights than the teacher's (the critic stays
    the teacher): with lr 0 the exported student is exactly those weights."""
    from matrix_game_core.checkpoints import load_dit
    from matrix_game_core.train.dit import write_dit
    from matrix_game_core.train.distill import train_distill
    run = str(tmp_path / "run")
    _fake_latents(run)
    cfg = _cfg()
    teacher = _tiny_teacher(cfg)
    write_dit(teacher, os.path.join(run, "dit"))
    other = _tiny_teacher(cfg)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.01)
    write_dit(other, str(tmp_path / "earlier_student"))
    cfg.distill.steps, cfg.distill.batch, cfg.distill.critic_steps = 2, 2, 1
    cfg.distill.lr, cfg.distill.regression_weight, cfg.distill.ema = 0.0, 0.5, 0.0
    out = train_distill(run, cfg, torch.device("cpu"), echo=False,
                        student_init=str(tmp_path / "earlier_student"))
    recs = _log(run, "distill")
    start = [r for r in recs if r["stage"] == "distill_start"][0]
    assert start["regression_weight"] == 0.5 and start["student_init"].endswith(
        os.path.join("earlier_student", "model.safetensors"))
    steps = [r for r in recs if r["stage"] == "distill" and "dmd_loss" in r]
    assert steps and all(np.isfinite(r["regression_loss"]) and r["regression_loss"] > 0 for r in steps)
    got, want = load_dit(out, dtype=torch.float32).state_dict(), other.state_dict()
    assert got.keys() == want.keys()
    for k, v in got.items():
        torch.testing.assert_close(v, want[k].float(), msg=k)


def test_distill_refuses_a_missing_or_foreign_teacher(tmp_path):
    from matrix_game_core.checkpoints import save_dit
    from matrix_game_core.train.distill import train_distill
    run = str(tmp_path / "run")
    _fake_latents(run)
    with pytest.raises(MatrixGameError, match=r"dit[/\\]model\.safetensors is missing.*train dit"):
        train_distill(run, _cfg(), torch.device("cpu"), echo=False)
    other = _cfg(dim=32, num_heads=2)
    save_dit(_tiny_teacher(other), str(tmp_path / "other.safetensors"))
    with pytest.raises(MatrixGameError, match=r"other\.safetensors has another architecture.*dim 32 \(run: 64\)"):
        train_distill(run, _cfg(), torch.device("cpu"), echo=False, teacher=str(tmp_path / "other.safetensors"))


# ---------------------------------------------------------------------------------------------- torchrun
def _torchrun(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "matrix_game_core.train", *args, "--device", "cpu", "--quiet"],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


#: One process vs two (gloo): per-step losses of the same global batch agree to this relative
#: tolerance (measured ~2e-7 over 30 steps: only the order of float sums differs).
LOSS_RTOL = 1e-5


def test_torchrun_two_processes_match_one(tmp_path):
    from matrix_game_core.data.synthetic import write_synthetic_recording
    from matrix_game_core.train.__main__ import load_run_config, run_stages
    data = str(tmp_path / "rec")
    write_synthetic_recording(data, episodes=4, frames=60, size=(32, 64))
    sets = ["vae.steps=2", "vae.calib_clips=2", "dit.steps=4", "distill.steps=2", "distill.critic_warmup=1",
            "distill.critic_steps=1", "log_every=1", "ckpt_every=2"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    cfg = load_run_config(one, "smoke", sets)
    # one thread, as each torchrun worker (OMP_NUM_THREADS=1): the first DMD loss is the difference of two
    # nearly equal flows (the critic starts as the teacher), so a thread pool's other summation order
    # alone moves it by ~2e-3 relative (measured), far beyond what the 2-rank split does
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_stages(["vae", "latents", "dit", "distill"], data, one, cfg, "cpu", echo=False)
    finally:
        torch.set_num_threads(threads)
    # the same VAE and configuration; the rest (latents, dit, distill, export) on 2 ranks
    os.makedirs(two)
    shutil.copytree(os.path.join(one, "vae"), os.path.join(two, "vae"))
    shutil.copy(os.path.join(one, "train_config.json"), two)
    _torchrun(["all", "--data", data, "--out", two], str(tmp_path))
    for stage, key in (("dit", "loss"), ("distill", "dmd_loss"), ("distill", "critic_loss")):
        a = {r["step"]: r[key] for r in _log(one, stage, stage) if key in r}
        b = {r["step"]: r[key] for r in _log(two, stage, stage) if key in r}
        assert a.keys() == b.keys() and len(a) >= 2
        for s in a:
            assert b[s] == pytest.approx(a[s], rel=LOSS_RTOL), (stage, key, s)
    for stage in ("dit", "distill"):
        sync = _log(two, stage, f"{stage}_sync")
        assert sync and all(len(r["weights_sha256"]) == 2 and len(set(r["weights_sha256"])) == 1 for r in sync)
    assert os.path.isfile(os.path.join(two, "export", "student", "model.safetensors"))
    # resume the 2-process run in one process (another world size): it continues the same run
    for run in (one, two):
        c = load_run_config(run, "smoke", [], dit_steps=6)
        run_stages(["dit"], data, run, c, "cpu", echo=False)
    a = {r["step"]: r["loss"] for r in _log(one, "dit", "dit") if r["step"] > 4}
    b = {r["step"]: r["loss"] for r in _log(two, "dit", "dit") if r["step"] > 4}
    assert sorted(a) == sorted(b) == [5, 6] and all(b[s] == pytest.approx(a[s], rel=LOSS_RTOL) for s in a)
    # the VAE stage on 2 ranks: its own clips per rank, global latent statistics, ranks in sync
    vae_run = str(tmp_path / "vae2")
    os.makedirs(vae_run)
    shutil.copy(os.path.join(one, "train_config.json"), vae_run)
    _torchrun(["vae", "--data", data, "--out", vae_run], str(tmp_path))
    sync = _log(vae_run, "vae", "vae_sync")
    assert sync and len(set(sync[-1]["weights_sha256"])) == 1
    assert os.path.isfile(os.path.join(vae_run, "vae", "vae.safetensors"))


# ---------------------------------------------------------------------------------------------- merge
def test_merge_recordings_from_several_machines(tmp_path):
    from matrix_game_core.data.__main__ import main
    from matrix_game_core.data.shards import entries, load_shard
    from matrix_game_core.data.synthetic import write_synthetic_recording
    a, b, c, d = (str(tmp_path / n) for n in ("m0", "m1", "same_seed", "other_size"))
    write_synthetic_recording(a, episodes=2, frames=24, size=(16, 32), seed=0, val_every=2)
    write_synthetic_recording(b, episodes=3, frames=24, size=(16, 32), seed=1, val_every=2)
    write_synthetic_recording(c, episodes=1, frames=24, size=(16, 32), seed=0)
    write_synthetic_recording(d, episodes=1, frames=24, size=(16, 48), seed=2)
    out = str(tmp_path / "all")
    assert main(["merge", "--out", out, a, b]) == 0
    es = entries(out)
    assert [e["name"] for e in es] == ["p0_ep000000", "p0_ep000001", "p1_ep000000", "p1_ep000001", "p1_ep000002"]
    assert [e["split"] for e in es] == ["train", "val", "train", "val", "train"]
    got = load_shard(out, es[2])
    want = load_shard(b, entries(b)[0])
    assert np.array_equal(got.frames, want.frames) and np.array_equal(got.mouse, want.mouse)
    from matrix_game_core.data.merge import merge_recordings
    with pytest.raises(MatrixGameError, match="same --seed 0"):
        merge_recordings(str(tmp_path / "x"), [a, c])
    with pytest.raises(MatrixGameError, match="same --size"):
        merge_recordings(str(tmp_path / "y"), [a, d])


def test_onset_share_needs_still_starts_and_trains_on_them(tmp_path):
    from matrix_game_core.train.dit import train_dit
    run = str(tmp_path / "run")
    _fake_latents(run)                                   # the camera always moves: no onset clip
    with pytest.raises(MatrixGameError, match=r"no camera onset.*--still-prob"):
        train_dit(run, _cfg(onset_share=0.5), torch.device("cpu"), echo=False)
    assert not os.path.exists(os.path.join(run, "dit", "ckpt.pt"))      # nothing half-written
    p = os.path.join(run, "latents", "train", "ep000000.pt")
    d = torch.load(p, weights_only=True)
    d["mouse"][1, :9] = 0                                # clip 1: still, then the camera moves
    torch.save(d, p)
    train_dit(run, _cfg(onset_share=0.5), torch.device("cpu"), echo=False)
    assert _log(run, "dit")[0]["onset_clips"] == 1

"""The embedded default model (issue 10): the shipped files, loading, and the behavioural check
(from a shipped Doom start frame, turning right moves the picture left and turning left moves it
right, by the evaluator's motion measure), which an untrained model fails with the same sampler."""
import json
import os

import pytest
import torch

from matrix_game_core import embedded
from matrix_game_core.action_track import ActionTrack, block_row_range
from matrix_game_core.evaluate import action_following
from matrix_game_core.pipeline import encode_conditioning, load_image, prepare_image, random_tiny
from matrix_game_core.sampling import WorldSession
from matrix_game_core.vae import StreamingDecoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START = os.path.join(ROOT, "assets", "demo_images", "doom_map15.png")
BLOCKS = 4          # block 0 idle, then 3 blocks of turning: 9 + 12 * 3 = 45 frames


def _turn_track(yaw: float) -> ActionTrack:
    s = block_row_range(1)[0]
    n = block_row_range(BLOCKS - 1)[1]
    return ActionTrack.from_segments("universal", n, [{"start": s, "end": n, "mouse": [0.0, yaw]}])


@torch.no_grad()
def turn_report(comp, yaw: float, seed: int = 0):
    """Generate ``BLOCKS`` blocks from the shipped start frame under a constant ``yaw`` and score
    them with :func:`~matrix_game_core.evaluate.action_following`."""
    cfg = comp.dit.cfg
    h, w = cfg.frame_size
    image = prepare_image(load_image(START), height=h, width=w)
    n_lat = cfg.num_frame_per_block * BLOCKS
    cond = encode_conditioning(comp.vae, comp.image_encoder, image, cfg.conditioning_frames(n_lat))
    track = _turn_track(yaw)
    kb, ms = track.tensors()
    session = WorldSession(comp.dit, cond, decoder=StreamingDecoder(comp.vae), seed=seed)
    _, frames = session.generate(kb, ms, n_lat)
    return action_following(frames, ms)


def turns_the_right_way(comp) -> bool:
    """At least 2 of the 3 turning blocks follow the command, in both directions."""
    right = turn_report(comp, 0.1).per_class["turn_right"]
    left = turn_report(comp, -0.1).per_class["turn_left"]
    return right["n"] == left["n"] == BLOCKS - 1 and right["correct"] >= 2 and left["correct"] >= 2


@pytest.fixture(scope="module")
def emb():
    torch.manual_seed(0)
    return embedded.load()


def test_shipped_files_fit_the_budget_and_describe_themselves():
    assert embedded.available(), "the embedded model's files are not in the package"
    sizes = [os.path.getsize(embedded.DIT_FILE), os.path.getsize(embedded.VAE_FILE)]
    assert sum(sizes) <= embedded.MAX_BYTES
    cfg = embedded.config_json()
    assert cfg["mode"] == "universal" and cfg["image_encoder"] is None
    assert embedded.video_size() == tuple(cfg["video_size"]) and min(cfg["video_size"]) >= 64
    card = open(embedded.CARD_FILE, encoding="utf-8").read()
    for needle in ("Held out", "| copy-last-frame baseline |", "turn left", "look down", "Free-running rollout", "frames/s",
                   "Freedoom"):
        assert needle in card, needle
    assert "Redistribution and use in source and binary forms" in open(os.path.join(embedded.ROOT, "NOTICE.md"),
                                                                   encoding="utf-8").read()
    from safetensors import safe_open
    with safe_open(embedded.DIT_FILE, "pt") as f:
        k = next(iter(f.keys()))
        assert k.startswith("model.") and f.get_tensor(k).dtype == embedded.FILE_DTYPE


def test_embedded_model_loads_at_its_size(emb):
    assert emb.image_encoder is None and emb.dit.cfg.mode == "universal"
    assert emb.dit.cfg.frame_size == embedded.video_size()
    assert emb.dit.cfg.cond_latent_frames == embedded.config_json().get("cond_latent_frames")
    assert all(p.dtype == torch.float32 for p in emb.dit.parameters())


def test_embedded_model_turns_the_right_way(emb):
    """Issue 10, item 6: from the shipped Doom start frame (seed 0), turning right moves the picture
    left and turning left moves it right (the evaluator's motion measure), with the shipped
    sampler settings (its action guidance)."""
    assert turns_the_right_way(emb)


def test_the_same_check_fails_on_an_untrained_model():
    comp = random_tiny("universal")
    comp.dit.cfg.video_size = list(embedded.video_size())      # same frame size as the embedded model
    comp.dit.cfg.action_guidance = float(embedded.config_json().get("action_guidance", 1.0))   # same sampler
    comp.dit.cfg.pitch_guidance = embedded.config_json().get("pitch_guidance")
    assert not turns_the_right_way(comp)


def test_missing_files_give_one_clear_error(tmp_path):
    from matrix_game_core.errors import MatrixGameError
    with pytest.raises(MatrixGameError, match="embedded model's files are missing"):
        embedded.load(root=str(tmp_path))


def test_install_casts_and_enforces_the_budget(tmp_path):
    from matrix_game_core.checkpoints import save_dit
    from matrix_game_core.errors import MatrixGameError
    from matrix_game_core.train.vae import save_vae
    comp = random_tiny("universal")
    exp = tmp_path / "export"
    (exp / "dit").mkdir(parents=True)
    save_dit(comp.dit, str(exp / "dit" / "model.safetensors"))
    cfg = comp.dit.cfg.to_dict()
    cfg.update(video_size=[64, 112], image_encoder=None)
    (exp / "dit" / "config.json").write_text(json.dumps(cfg))
    save_vae(comp.vae, str(exp / "vae.safetensors"))
    sizes = embedded.install_from_export(str(exp), str(tmp_path / "dest"), fps=17.5, denoising_step_list=[1000, 500])
    assert set(sizes) == {"dit/model.safetensors", "vae.safetensors"}
    got = json.loads((tmp_path / "dest" / "dit" / "config.json").read_text())
    assert got["fps"] == 17.5 and got["denoising_step_list"] == [1000, 500]
    # the distilled student ships from export/student (its own weights and step list) into dest/dit
    with pytest.raises(MatrixGameError, match="student/model.safetensors is missing; finish the distillation"):
        embedded.install_from_export(str(exp), str(tmp_path / "dest_s"), model="student")
    (exp / "student").mkdir()
    student = random_tiny("universal").dit
    with torch.no_grad():
        for prm in student.parameters():
            prm.add_(0.5)
    save_dit(student, str(exp / "student" / "model.safetensors"))
    (exp / "student" / "config.json").write_text(json.dumps(dict(cfg, denoising_step_list=[1000, 500, 150, 50])))
    embedded.install_from_export(str(exp), str(tmp_path / "dest_s"), model="student")
    got = json.loads((tmp_path / "dest_s" / "dit" / "config.json").read_text())
    assert got["denoising_step_list"] == [1000, 500, 150, 50]
    from matrix_game_core.checkpoints import load_dit
    shipped = load_dit(str(tmp_path / "dest_s" / "dit" / "model.safetensors"), mode="universal", dtype=torch.float32)
    torch.testing.assert_close(shipped.head.head.weight, student.head.head.weight.half().float())
    # ... or interpolated with its teacher (export/dit): w * student + (1 - w) * teacher, then cast
    embedded.install_from_export(str(exp), str(tmp_path / "dest_b"), model="student", student_weight=0.75)
    blended = load_dit(str(tmp_path / "dest_b" / "dit" / "model.safetensors"), mode="universal", dtype=torch.float32)
    torch.testing.assert_close(blended.head.head.weight,
                               (0.75 * student.head.head.weight + 0.25 * comp.dit.head.head.weight).half().float())
    for bad, what in ((1.5, "student"), (0.5, "dit")):
        with pytest.raises(MatrixGameError, match="student weight must be in"):
            embedded.install_from_export(str(exp), str(tmp_path / "dest_y"), model=what, student_weight=bad)
    with pytest.raises(MatrixGameError, match="model must be 'dit' or 'student'"):
        embedded.install_from_export(str(exp), str(tmp_path / "dest_x"), model="teacher")
    old = embedded.MAX_BYTES
    try:
        embedded.MAX_BYTES = 10
        with pytest.raises(MatrixGameError, match="budget"):
            embedded.install_from_export(str(exp), str(tmp_path / "dest2"))
    finally:
        embedded.MAX_BYTES = old


def test_model_card_is_written_from_the_shipped_metrics(tmp_path):
    """The card generator renders the shipped metrics.json (older metrics without the newer recipe keys too)."""
    from matrix_game_core.embedded.card import write_card
    info = json.load(open(os.path.join(embedded.ROOT, "metrics.json"), encoding="utf-8"))
    out = tmp_path / "card.md"
    write_card(str(out), info)
    card = out.read_text(encoding="utf-8")
    for needle in ("Held out", "| copy-last-frame baseline |", "turn left", "look down", "Free-running rollout", "frames/s",
                   f"DiT {info['train']['dit_steps']} steps"):
        assert needle in card, needle
    gd = info["train"].get("decoder_generated")
    if gd:                  # the shipped decoder was fine-tuned on the shipped DiT's predictions: said and figured
        assert f"Last, the VAE decoder was fine-tuned {gd['steps']} more steps on the shipped DiT's own predictions" in card
        assert (f"the DiT's teacher-forced predictions {gd['val_generated'][0]:.2f} -> {gd['val_generated'][1]:.2f} dB"
                in card)
    info["train"]["decoder_generated"] = dict(steps=7, generated_share=None, final="loss 0.1")   # a plain fine-tune
    write_card(str(out), info)
    assert "fine-tuned 7 more steps (`train decoder`, encoder frozen" in out.read_text(encoding="utf-8")
    info["train"].pop("decoder_generated")
    write_card(str(out), info)
    plain = out.read_text(encoding="utf-8")
    assert "the VAE decoder was fine-tuned" not in plain and "| VAE decoder on the" not in plain
    info["train"].update(vae_recipe="32x48 crops of 33-frame clips, batch 1, width 16", mouse_init_gain=10.0,
                         dit_clip_latents=9)
    write_card(str(out), info)
    card = out.read_text(encoding="utf-8")
    assert "33-frame clips" in card and "scaled by 10 at init" in card
    info["eval"]["action_following"]["turn_right"]["toward_px"] = -0.031     # moves, but the wrong way
    write_card(str(out), info)
    row = [ln for ln in out.read_text(encoding="utf-8").splitlines() if ln.startswith("| turn right |")][0]
    assert "-0.031 px/frame (followed from 0.112)" in row
    info["config"].update(action_guidance=2.0, pitch_guidance=6.0, keyboard_guidance=None,   # guidance, in words
                          guidance_rescale=0.0)
    write_card(str(out), info)
    card = out.read_text(encoding="utf-8")
    assert "action guidance 2, pitch guidance 6 (3 DiT passes per denoising step)" in card
    assert "x 3 (guidance) + context pass" in card
    info["config"].update(keyboard_guidance=3.0)
    write_card(str(out), info)
    assert "pitch guidance 6, keyboard guidance 3 (4 DiT passes" in out.read_text(encoding="utf-8")
    info["config"].update(guidance_rescale=0.7)                                   # the rescale, when it is used
    write_card(str(out), info)
    assert "keyboard guidance 3, guidance rescale 0.7 (4 DiT passes" in out.read_text(encoding="utf-8")
    info["config"].update(action_guidance=1.0, pitch_guidance=None, keyboard_guidance=None)   # unguided: no rescale
    write_card(str(out), info)
    line = [ln for ln in out.read_text(encoding="utf-8").splitlines() if "image-encoder free" in ln][0]
    assert "action guidance 1 (1 = off" in line and "guidance rescale" not in line
    info["config"].update(action_guidance=2.0, pitch_guidance=6.0, keyboard_guidance=3.0, guidance_rescale=0.0)
    # the unguided model and the VAE ceiling beside the next-block baseline; the decoder fine-tune
    info["eval"]["next_block"].update(model_unguided={"psnr": 21.95, "ssim": 0.5}, round_trip={"psnr": 23.15, "ssim": 0.7})
    info["train"].update(decoder_steps=800, decoder_final="loss 0.2, PSNR 25.00 dB (training clips)")
    write_card(str(out), info)
    card = out.read_text(encoding="utf-8")
    assert "| model without guidance | 21.95 dB | 0.500 |" in card
    assert "| ceiling: the recorded block through this VAE (encode + decode) | 23.15 dB | 0.700 |" in card
    assert "fine-tuned 800 steps with the encoder frozen" in card and "| VAE decoder fine-tune | loss 0.2," in card
    # following with each command held: a column of its own, with its block counts (none in older metrics)
    info["eval"].update(action_following_held=None)
    write_card(str(out), info)
    card = out.read_text(encoding="utf-8")
    assert "| held 3 blocks |" not in card and "each command held" not in card
    held = {k: dict(v, n=8, correct=4, accuracy=0.5) for k, v in info["eval"]["action_following"].items()}
    # an unguided sampler (the distilled student) has no "without guidance" column; a guided one has
    info["eval"].update(action_following_unguided=None, action_following_held=held, held_blocks=3)
    write_card(str(out), info)
    card = out.read_text(encoding="utf-8")
    assert "| picture motion the commanded way | held 3 blocks | recorded play |" in card
    assert "beside, as the ceiling, the evaluator" in card and "beside the same model without guidance" not in card
    assert [ln for ln in card.splitlines() if ln.startswith("| turn left |")][0].count("|") == 8
    info["eval"].update(action_following_unguided={k: dict(v, accuracy=0.25) for k, v in held.items()})
    info["config"].update(guidance_hold=0.5)
    write_card(str(out), info)
    card = out.read_text(encoding="utf-8")
    assert "| picture motion the commanded way | held 3 blocks | without guidance |" in card
    assert "each command held 3 blocks in a row" in card
    row = [ln for ln in card.splitlines() if ln.startswith("| look down |")][0]
    assert "| 50 % (8) |" in row
    assert "keyboard guidance 3, guidance hold 0.5 (4 DiT passes" in card
    # a warm-started run (train --init-from): the recipe line says how many DiT steps were its own
    assert "warm-started" not in card
    info["train"].update(dit_steps=54000, dit_warm_start_steps=4000)
    write_card(str(out), info)
    assert ("DiT 54000 steps of diffusion forcing (the last 4000 warm-started from the previous model's weights, "
            "`train --init-from`) (batch") in out.read_text(encoding="utf-8")
    # a distilled student ships: the recipe says how, with the real score's guidance, and its DMD loss row
    shipped_distill = info["train"].pop("distill", None)      # the shipped model is a student: its own figures
    assert shipped_distill is None or shipped_distill["steps"] > 0
    write_card(str(out), info)
    assert "distilled" not in out.read_text(encoding="utf-8")
    info["train"]["distill"] = {"steps": 600, "batch": 4, "lr": 5e-5, "critic_lr": 1e-4, "critic_steps": 2,
                                "ema": 0.99, "denoising_step_list": [1000, 500, 150, 50],
                                "real_guidance": {"guidance": 2, "pitch_guidance": 4, "keyboard_guidance": 1,
                                                  "guidance_rescale": 1},
                                "dmd_eval": [0.672, 0.151], "dmd_eval_steps": [0, 600]}
    write_card(str(out), info)
    card = out.read_text(encoding="utf-8")
    assert ("distilled 600 steps into the shipped student" in card
            and "action guidance (guidance 2, pitch guidance 4, keyboard guidance 1, guidance rescale 1)" in card
            and "4 steps [1000, 500, 150, 50]; batch 4, lr 5e-05, critic lr 0.0001, 2 critic updates" in card)
    assert "| distillation (student) | DMD loss of the full rollout on fixed clips 0.6720 (step 0) -> 0.1510 (step 600) |" in card
    assert "interpolated with the teacher" not in card
    info["train"]["distill"]["student_weight"] = 0.75
    write_card(str(out), info)
    assert "0.75 x student + 0.25 x teacher (WiSE-FT" in out.read_text(encoding="utf-8")
    info["train"]["distill"]["student_weight"] = 1.0
    info["train"]["distill"]["phases"] = [          # the real score's guidance changed on a resume
        {"step": 0, "real_guidance": {"guidance": 2, "pitch_guidance": 4, "keyboard_guidance": 1, "guidance_rescale": 1}},
        {"step": 200, "real_guidance": {"guidance": 1.5, "pitch_guidance": 4, "keyboard_guidance": 1,
                                        "guidance_rescale": 1}}]
    write_card(str(out), info)
    assert ("action guidance (guidance 2, pitch guidance 4, keyboard guidance 1, guidance rescale 1 from step 0; "
            "guidance 1.5, pitch guidance 4, keyboard guidance 1, guidance rescale 1 from step 200)"
            in out.read_text(encoding="utf-8"))
    # a student distilled further from that one (--student-init) with the data regression: both stages told
    earlier = dict(info["train"]["distill"])
    info["train"]["distill"] = {"steps": 300, "batch": 4, "lr": 4e-5, "critic_lr": 1e-4, "critic_steps": 2,
                                "ema": 0.99, "denoising_step_list": [1000, 500, 150, 50],
                                "real_guidance": {"guidance": 1.5, "pitch_guidance": 4, "keyboard_guidance": 1,
                                                  "guidance_rescale": 1},
                                "dmd_eval": [0.31, 0.40], "dmd_eval_steps": [0, 300], "regression_weight": 1.0,
                                "regression_loss": 0.0912, "regression_loss_steps": 10, "before": earlier}
    write_card(str(out), info)
    card = out.read_text(encoding="utf-8")
    assert "distilled 600 steps into a student (`train distill`" in card and "into the shipped student" not in card
    assert ("That student was distilled 300 more steps into the shipped one with the real score under action "
            "guidance (guidance 1.5, pitch guidance 4, keyboard guidance 1, guidance rescale 1), lr 4e-05, plus a "
            "data regression (weight 1: the x0 MSE of recorded blocks predicted from recorded context, noised at "
            "the student's own timesteps;" in card)
    info["train"]["distill"]["regression_steps"] = 2
    write_card(str(out), info)
    assert "noised at the first 2 of the student's timesteps;" in out.read_text(encoding="utf-8")
    assert "| distillation (the earlier student) | DMD loss of the full rollout on fixed clips 0.6720 (step 0)" in card
    assert ("| distillation (shipped student) | DMD loss of the full rollout on fixed clips 0.3100 (step 0) -> "
            "0.4000 (step 300); data regression loss 0.0912 (mean of the last 10 logged steps) |") in card


def test_distill_figures_read_the_run_log(tmp_path):
    """The card's distillation figures: last step, first/last fixed-clip DMD loss, and the real score's guidance
    phases from the start/resume records (a resume with the same guidance is not a new phase)."""
    from matrix_game_core.embedded.build import _distill_figures
    from matrix_game_core.train.config import TrainConfig
    cfg = TrainConfig.preset("embedded")
    cfg.distill.guidance = 1.5
    g2 = {"w": 2.0, "w_pitch": 4, "w_keys": 1, "rescale": 1.0}
    recs = [{"stage": "distill_start", "step": 0, "real_guidance": g2},
            {"stage": "distill", "step": 0, "dmd_eval": 0.67},
            {"stage": "distill", "step": 100, "dmd_loss": 0.2, "dmd_eval": 0.2},
            {"stage": "distill_resume", "step": 150, "real_guidance": g2},
            {"stage": "distill", "step": 200, "dmd_loss": 0.19, "dmd_eval": 0.18},
            {"stage": "distill_resume", "step": 200, "real_guidance": dict(g2, w=1.5)},
            {"stage": "distill", "step": 250, "dmd_loss": 0.17},
            {"stage": "distill", "step": 260, "dmd_loss": 0.16},       # ran past the last checkpoint (250) ...
            {"stage": "distill_resume", "step": 250, "real_guidance": dict(g2, w=1.5), "world": 1}]   # ... and lost
    (tmp_path / "distill").mkdir()
    (tmp_path / "distill" / "log.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    f = _distill_figures(str(tmp_path), cfg)
    assert f["steps"] == 250 and f["dmd_eval"] == [0.67, 0.18] and f["dmd_eval_steps"] == [0, 200]
    assert [p["step"] for p in f["phases"]] == [0, 200]
    assert f["phases"][1]["real_guidance"]["guidance"] == 1.5 and f["real_guidance"]["guidance"] == 1.5
    assert f["before"] is None and f["regression_weight"] is None and f["regression_loss"] is None
    # a run that went on distilling an installed student with the data regression: its lineage is in the log
    cfg.distill.regression_weight = 0.5
    recs[0] = dict(recs[0], student_init="/m/dit/model.safetensors", student_init_distill={"steps": 500})
    recs += [{"stage": "distill", "step": 260 + i, "dmd_loss": 0.3, "regression_loss": 0.1 * i} for i in range(12)]
    (tmp_path / "distill" / "log.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    f = _distill_figures(str(tmp_path), cfg)
    assert f["before"] == {"steps": 500} and f["regression_weight"] == 0.5 and f["steps"] == 271
    assert f["regression_loss"] == pytest.approx(0.1 * sum(range(2, 12)) / 10) and f["regression_loss_steps"] == 10


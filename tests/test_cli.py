"""The command line: README's main job end to end (tiny random weights) and its errors."""
import argparse
import os
import re

import numpy as np
import pytest

from matrix_game_core.cli import main
from matrix_game_core.video import read_mp4

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.path.join(ROOT, "assets", "demo_images", "universal_0000.png")


def test_generate_tiny_writes_video_and_overlay(tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    rc = main(["generate", "--mode", "universal", "--image", IMAGE, "--bench-actions", "--frames", "3",
               "--seed", "0", "--random-weights", "tiny", "--out", str(out), "--overlay"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "UNTRAINED" in err and "NOISE" in err
    video = read_mp4(str(out))
    over = read_mp4(str(tmp_path / "demo_overlay.mp4"))
    assert video.shape == (9, 352, 640, 3) and over.shape == video.shape
    assert np.abs(video.astype(int) - over.astype(int)).max() > 50  # the overlay drew something


@pytest.mark.parametrize("args,msg", [
    (["--frames", "4"], "multiple of 3"),
    (["--image", "/nonexistent.png"], "does not exist"),
    (["--checkpoint-dir", "/nonexistent"], "does not exist"),
])
def test_generate_errors_are_one_line(tmp_path, capsys, args, msg):
    base = {"--mode": "universal", "--image": IMAGE, "--frames": "3", "--out": str(tmp_path / "x.mp4")}
    argv = ["generate", "--bench-actions"]
    over = dict(zip(args[::2], args[1::2]))
    for k, v in {**base, **over}.items():
        argv += [k, v]
    if "--checkpoint-dir" not in over:
        argv += ["--random-weights", "tiny"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and msg in err[-1]


def test_actions_file_of_the_wrong_mode(tmp_path, capsys):
    from matrix_game_core.actions import bench_actions
    p = tmp_path / "t.json"
    p.write_text(bench_actions("gta_drive", 9, 0).to_json())
    assert main(["generate", "--mode", "universal", "--image", IMAGE, "--actions", str(p), "--frames", "3",
                 "--random-weights", "tiny", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "for mode 'gta_drive' but --mode is 'universal'" in capsys.readouterr().err


def test_download_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "--mode", "templerun", "--dir", str(tmp_path), "--dit-only"]) == 2
    assert "could not download" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- checked up front
def _argv(tmp_path, **over):
    base = {"--mode": "universal", "--image": IMAGE, "--frames": "3", "--out": str(tmp_path / "x.mp4")}
    argv = ["generate", "--bench-actions", "--random-weights", "tiny"]
    for k, v in {**base, **over}.items():
        argv += [k, v]
    return argv


@pytest.fixture
def no_models(monkeypatch):
    """Fail the test if a model is built: every argument must be checked before that."""
    import matrix_game_core.pipeline as P

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the arguments were checked")
    monkeypatch.setattr(P, "random_tiny", boom)
    monkeypatch.setattr(P, "load_components", boom)


@pytest.mark.parametrize("over,msg", [
    ({"--seed": str(2 ** 64)}, r"--seed must be a whole number 0..2\^64-1"),
    ({"--seed": "-1"}, r"--seed must be a whole number 0..2\^64-1"),
    ({"--fps": "0"}, r"--fps must be a number in \(0, 1000\]"),
    ({"--fps": "nan"}, r"--fps must be a number in \(0, 1000\]"),
    ({"--action-guidance": "-1"}, r"--action-guidance must be a number from 0 to 20 \(1 = off\); got -1"),
    ({"--action-guidance": "nan"}, r"--action-guidance must be a number from 0 to 20"),
    ({"--keyboard-guidance": "-2"}, r"--keyboard-guidance must be a number from 0 to 20 \(1 = off\); got -2"),
    ({"--pitch-guidance": "25"}, r"--pitch-guidance must be a number from 0 to 20 \(1 = off\); got 25"),
    ({"--guidance-rescale": "1.5"}, r"--guidance-rescale must be a number from 0 to 1 \(0 = off\); got 1.5"),
    ({"--guidance-hold": "-0.5"}, r"--guidance-hold must be a number from 0 to 1 \(0 = off\); got -0.5"),
    ({"--device": "nonsense"}, "--device 'nonsense' is not a device"),
    ({"--device": "cuda:99"}, "CUDA is not available|CUDA device"),
    ({"--device": "meta"}, "--device 'meta' is not supported"),
    ({"--frames": "999999999"}, "beyond the limit of 249999 latent frames"),
    ({"--frames": "0"}, "positive multiple of 3"),
    ({"--out": "x.avi"}, r"unknown container \.avi; use \.mp4, \.webm, \.gif"),
    ({"--out": "OUTFILE/x.mp4"}, "is a file, so the folder cannot be created"),
])
def test_every_argument_is_checked_before_loading_models(tmp_path, capsys, no_models, over, msg):
    (tmp_path / "OUTFILE").write_text("x")
    over = {k: (str(tmp_path / v) if k == "--out" else v) for k, v in over.items()}
    assert main(_argv(tmp_path, **over)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and re.search(msg, err[0]), err
    assert sorted(os.listdir(tmp_path)) == ["OUTFILE"]


def test_frames_beyond_memory_names_the_limit(tmp_path, capsys, no_models, monkeypatch):
    import matrix_game_core.cli as C
    monkeypatch.setattr(C, "_physical_memory", lambda: 2 ** 30)
    assert main(_argv(tmp_path, **{"--frames": "300"})) == 2
    err = capsys.readouterr().err
    assert "than this machine's 1 GiB; use --frames 30 or less" in err, err


def test_bad_track_files_are_one_line(tmp_path, capsys, no_models):
    p = tmp_path / "t.json"
    for data, msg in [(b"\x00\xff\xfe binary", "is not UTF-8 text"), (b"[" * 100000, "nested too deeply"),
                      (b'{"version": 1, "mode": "universal", "num_frames": 9, "keyboard": {}, "mouse": {"yaw": '
                       + b"1" * 4000 + b"}}", "integer with 4000 digits")]:
        p.write_bytes(data)
        argv = ["generate", "--mode", "universal", "--image", IMAGE, "--actions", str(p), "--frames", "3",
                "--random-weights", "tiny", "--out", str(tmp_path / "x.mp4")]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err


def test_checkpoint_dir_root_is_not_walked(tmp_path, capsys, no_models, monkeypatch):
    def no_walk(*a, **k):
        raise AssertionError("the file system must not be walked")
    monkeypatch.setattr(os, "walk", no_walk)
    argv = _argv(tmp_path)
    i = argv.index("--random-weights")
    argv[i:i + 2] = ["--checkpoint-dir", "/"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "/ lacks base_distilled_model/base_distill.safetensors" in err
    assert "looked for /base_distilled_model/base_distill.safetensors or /base_distill.safetensors" in err


def test_ctrl_c_during_generation_and_during_writing(tmp_path, capsys, monkeypatch):
    import imageio_ffmpeg

    from matrix_game_core.sampling import WorldSession

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(WorldSession, "generate", interrupted)
        assert main(_argv(tmp_path)) == 130
    assert "interrupted (Ctrl-C); no output was written." in capsys.readouterr().err
    assert os.listdir(tmp_path) == []

    def write_frames(path, size, **kw):
        open(path, "wb").write(b"partial")
        yield
        yield
        raise KeyboardInterrupt
    monkeypatch.setattr(imageio_ffmpeg, "write_frames", write_frames)
    assert main(_argv(tmp_path)) == 130
    assert "interrupted" in capsys.readouterr().err and os.listdir(tmp_path) == []   # no hidden .tmp file


def test_gif_output_is_a_gif(tmp_path, capsys):
    import imageio_ffmpeg
    out = tmp_path / "demo.gif"
    assert main(_argv(tmp_path, **{"--out": str(out), "--fps": "12.5"}) + ["--overlay"]) == 0
    for p in (out, tmp_path / "demo_overlay.gif"):
        assert next(imageio_ffmpeg.read_frames(str(p)))["codec"].startswith("gif")
        assert read_mp4(str(p)).shape == (9, 352, 640, 3)
    assert "12.5 fps" in capsys.readouterr().err


def test_speed_text_switches_to_seconds_per_frame():
    from matrix_game_core.cli import speed_text
    assert speed_text(12, 0.5) == "24.0 frames/s"
    assert speed_text(12, 180.0) == "15.0 s/frame"
    assert speed_text(9, 9.0) == "1.0 frames/s"


def test_help_explains_every_option_with_its_default():
    from matrix_game_core.cli import _parser
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for a in p._actions:
            assert a.help and len(a.help) > 10, (name, a.dest)
        text = p.format_help()
        for a in p._actions:
            if a.default not in (None, False, argparse.SUPPRESS) and not a.required:
                assert f"(default: {a.default})" in " ".join(text.split()), (name, a.dest)


def test_download_dir_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    assert main(["download", "--mode", "templerun", "--dir", str(f), "--dit-only"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file, not a folder" in err[0]


def test_compile_flag_reaches_the_session(tmp_path, monkeypatch):
    import matrix_game_core.sampling as sampling
    seen = []
    from matrix_game_core.errors import MatrixGameError

    def spy(self, *a, **kw):                   # record the flag, then stop before generating
        seen.append(kw.get("compile"))
        raise MatrixGameError("stop here")

    monkeypatch.setattr(sampling.WorldSession, "__init__", spy)
    for flag, want in (("auto", None), ("off", False), ("on", True)):
        assert main(["generate", "--mode", "universal", "--image", IMAGE, "--bench-actions", "--frames", "3",
                     "--random-weights", "tiny", "--out", str(tmp_path / "c.mp4"), "--compile", flag]) == 2
        assert seen[-1] is want


def test_guidance_flags_reach_the_session(tmp_path, monkeypatch):
    import matrix_game_core.sampling as sampling
    from matrix_game_core.errors import MatrixGameError
    seen = []

    def spy(self, *a, **kw):                   # record the scales, then stop before generating
        seen.append({k: kw.get(k) for k in ("action_guidance", "pitch_guidance", "keyboard_guidance",
                                            "guidance_rescale", "guidance_hold")})
        raise MatrixGameError("stop here")

    monkeypatch.setattr(sampling.WorldSession, "__init__", spy)
    base = ["generate", "--mode", "universal", "--image", IMAGE, "--bench-actions", "--frames", "3",
            "--random-weights", "tiny", "--out", str(tmp_path / "g.mp4")]
    assert main(base) == 2
    assert seen[-1] == {"action_guidance": None, "pitch_guidance": None, "keyboard_guidance": None,
                        "guidance_rescale": None, "guidance_hold": None}               # the model's own
    assert main(base + ["--action-guidance", "2", "--pitch-guidance", "6", "--keyboard-guidance", "1",
                        "--guidance-rescale", "0.7", "--guidance-hold", "0.5"]) == 2
    assert seen[-1] == {"action_guidance": 2.0, "pitch_guidance": 6.0, "keyboard_guidance": 1.0,
                        "guidance_rescale": 0.7, "guidance_hold": 0.5}

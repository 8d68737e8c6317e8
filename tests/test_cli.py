"""The command line: README's main job end to end (tiny random weights) and its errors."""
import os

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

"""The CLI's default model is the embedded ViZDoom one (issue 10): no checkpoint flag, no download."""
import os

import pytest

from matrix_game_core import embedded
from matrix_game_core.cli import main
from matrix_game_core.video import read_mp4

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOOM = os.path.join(ROOT, "assets", "demo_images", "doom_map15.png")
TOUR = os.path.join(ROOT, "workflows", "tracks", "doom_tour.json")


def test_generate_without_checkpoint_uses_the_embedded_model(tmp_path, capsys):
    out = tmp_path / "doom.mp4"
    assert main(["generate", "--image", DOOM, "--actions", TOUR, "--frames", "6", "--out", str(out),
                 "--scale", "1", "--overlay"]) == 0
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "using the " + embedded.NAME in line]
    assert len(said) == 1 and "not the official" in said[0]
    h, w = embedded.video_size()
    video = read_mp4(str(out))
    assert video.shape == (21, h, w, 3)
    assert read_mp4(str(tmp_path / "doom_overlay.mp4")).shape == video.shape
    assert f"{embedded.fps():g} fps" in err


def test_default_scale_enlarges_small_models_for_viewing(tmp_path):
    from matrix_game_core.cli import upscale
    import torch
    v = torch.rand(1, 3, 2, 8, 14) * 2 - 1
    assert upscale(v, 1) is v
    big = upscale(v, 3)
    assert big.shape == (1, 3, 2, 24, 42) and float(big.abs().max()) <= 1
    out = tmp_path / "s.mp4"
    assert main(["generate", "--image", DOOM, "--actions", TOUR, "--frames", "3", "--out", str(out)]) == 0
    h, w = embedded.video_size()
    k = -(-352 // h)
    assert read_mp4(str(out)).shape == (9, h * k, w * k, 3)


@pytest.mark.parametrize("args, msg", [
    (["--mode", "gta_drive", "--bench-actions"], "the embedded ViZDoom model plays universal mode"),
    (["--actions", TOUR, "--scale", "9"], "--scale must be a whole number 1..8"),
])
def test_embedded_errors_are_one_line(tmp_path, capsys, args, msg):
    assert main(["generate", "--image", DOOM, "--frames", "3", "--out", str(tmp_path / "x.mp4")] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and msg in err[0]

"""The Action Following node's logic on synthetic panning videos (known direction)."""
import pytest
import torch

from matrix_game_core.actions import ActionTrack
from matrix_game_core.errors import MatrixGameError
from matrix_game_core.evaluate import command_script, synthetic_panning_video
from nodes.logic import action_following_report


def _images(mouse, flip=False):
    v = synthetic_panning_video(-mouse if flip else mouse, height=48, width=80)
    return torch.from_numpy(v).float() / 255.0  # ComfyUI IMAGE [T, H, W, 3]


def test_following_report_perfect_and_reversed():
    kb, ms, labels = command_script(9)
    track = ActionTrack("universal", kb, ms)
    text, acc = action_following_report(_images(ms), track)
    assert acc == 1.0 and "turn_left" in text and "overall    100%" in text
    _, acc_rev = action_following_report(_images(ms, flip=True), track)
    assert acc_rev == 0.0  # a video moving the wrong way is caught


def test_following_needs_mouse():
    track = ActionTrack("templerun", torch.zeros(9, 7), None)
    with pytest.raises(MatrixGameError, match="no mouse actions"):
        action_following_report(torch.zeros(9, 48, 80, 3), track)

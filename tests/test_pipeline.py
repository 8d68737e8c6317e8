"""Start-image preparation (official centre crop) and conditioning shapes."""
import pytest
import torch

from matrix_game_core.errors import MatrixGameError
from matrix_game_core.pipeline import _crop_box, encode_conditioning, frames_to_images, prepare_image, random_tiny


def test_official_crop_box():
    # official _resizecrop on a 1280x720 image keeps 1280x704 (aspect 352:640), centred
    assert _crop_box(1280, 720, 352, 640) == (0.0, 8.0, 1280.0, 712.0)
    # a tall image keeps the full width
    l, t, r, b = _crop_box(700, 485, 352, 640)
    assert (l, r) == (0.0, 700.0) and abs((b - t) - 385) < 1e-9


@pytest.mark.parametrize("crop", ["center", "stretch", "pad"])
def test_prepare_image_layouts_and_range(crop):
    img = torch.rand(1, 400, 900, 3)
    a = prepare_image(img, crop=crop)
    b = prepare_image(img.permute(0, 3, 1, 2), crop=crop)
    assert a.shape == (1, 3, 352, 640) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1


def test_center_crop_keeps_the_middle():
    img = torch.zeros(1, 352, 1000, 3)
    img[:, :, 180:820] = 1.0  # the central 640 columns are white
    out = prepare_image(img, crop="center")
    assert out.min() == 1.0  # nothing of the black sides survives the official crop


def test_prepare_image_errors():
    with pytest.raises(MatrixGameError, match="at least 64 px"):
        prepare_image(torch.rand(1, 9, 17, 3))
    with pytest.raises(MatrixGameError, match="RGB image"):
        prepare_image(torch.rand(1, 64, 64, 4))
    with pytest.raises(MatrixGameError, match="crop mode"):
        prepare_image(torch.rand(1, 64, 64, 3), crop="zoom")


def test_conditioning_shapes_and_mask():
    comp = random_tiny("templerun")
    img = prepare_image(torch.rand(1, 128, 128, 3), height=64, width=96)
    cond = encode_conditioning(comp.vae, comp.image_encoder, img, 3)
    assert cond.cond_concat.shape == (1, 20, 3, 8, 12) and cond.visual_context.shape == (1, 257, 64)
    assert torch.all(cond.cond_concat[:, :4, 0] == 1) and torch.all(cond.cond_concat[:, :4, 1:] == 0)
    # frames past the encoded length repeat the last one
    assert torch.equal(cond.frames(2, 3)[:, :, 1], cond.cond_concat[:, :, 2])
    ims = frames_to_images(torch.zeros(1, 3, 5, 8, 12))
    assert ims.shape == (5, 8, 12, 3) and torch.all(ims == 0.5)

"""Finding and downloading the official files (no network here: the offline path must be clear)."""
import os

import pytest

from matrix_game_core.checkpoints import CLIP_FILE, DIT_FILES, VAE_FILE, download, files_for_mode, find_file
from matrix_game_core.errors import MatrixGameError
from matrix_game_core.pipeline import load_components


def test_files_for_each_mode():
    assert files_for_mode("universal") == [DIT_FILES["universal"], VAE_FILE, CLIP_FILE]
    assert files_for_mode("templerun", with_encoders=False) == ["templerun_distilled_model/templerun_7dim_onlykey.safetensors"]
    assert files_for_mode("gta_drive")[0].endswith("gta_keyboard2dim.safetensors")
    with pytest.raises(MatrixGameError, match="choose one of"):
        files_for_mode("minecraft")


def test_download_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MatrixGameError) as e:
        download("gta_drive", str(tmp_path), with_encoders=False)
    msg = str(e.value)
    assert "could not download gta_distilled_model/gta_keyboard2dim.safetensors" in msg
    assert "HF_HUB_OFFLINE" in msg and str(tmp_path) in msg


def test_download_keeps_files_already_there(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = tmp_path / "sub" / "base_distill.safetensors"
    p.parent.mkdir()
    p.write_bytes(b"x")
    assert download("universal", str(tmp_path), with_encoders=False) == {DIT_FILES["universal"]: str(p)}
    assert find_file(str(tmp_path), DIT_FILES["universal"]) == str(p)


def test_load_components_names_missing_files(tmp_path):
    (tmp_path / VAE_FILE).write_bytes(b"x")
    with pytest.raises(MatrixGameError) as e:
        load_components(str(tmp_path), "universal")
    assert DIT_FILES["universal"] in str(e.value) and CLIP_FILE in str(e.value)
    assert "python -m matrix_game_core download --mode universal" in str(e.value)
    with pytest.raises(MatrixGameError, match="does not exist"):
        load_components(os.path.join(str(tmp_path), "nope"), "universal")

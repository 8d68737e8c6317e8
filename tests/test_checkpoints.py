"""Finding and downloading the official files (no network here: the offline path must be clear)."""
import os
import time

import pytest
import torch

from matrix_game_core.checkpoints import CLIP_FILE, DIT_FILES, VAE_FILE, download, files_for_mode, find_file
from matrix_game_core.config import preset
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
    official = tmp_path / DIT_FILES["universal"]          # the official layout
    official.parent.mkdir()
    official.write_bytes(b"x")
    assert download("universal", str(tmp_path), with_encoders=False) == {DIT_FILES["universal"]: str(official)}
    flat = tmp_path / "flat" / "base_distill.safetensors"  # the folder itself
    flat.parent.mkdir()
    flat.write_bytes(b"x")
    assert find_file(str(flat.parent), DIT_FILES["universal"]) == str(flat)


def test_find_file_looks_only_where_the_layout_puts_files(tmp_path, monkeypatch):
    elsewhere = tmp_path / "unrelated" / "deep" / "base_distill.safetensors"
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(b"x")
    assert find_file(str(tmp_path), DIT_FILES["universal"]) is None      # no recursive search by name

    def no_walk(*a, **k):
        raise AssertionError("find_file must not walk the folder")

    monkeypatch.setattr(os, "walk", no_walk)
    assert find_file("/", DIT_FILES["universal"]) is None
    assert find_file("/", VAE_FILE) is None


@pytest.mark.parametrize("make", ["file", "below_a_file"])
def test_download_into_a_file_is_refused(tmp_path, make):
    f = tmp_path / "a_file"
    f.write_bytes(b"x")
    target = f if make == "file" else f / "models"
    with pytest.raises(MatrixGameError, match="is a file, not a folder"):
        download("templerun", str(target), with_encoders=False)
    assert f.read_bytes() == b"x"


def test_download_without_network_fails_fast_and_leaves_no_folders(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc
    for v in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(hc, "ENDPOINT", "https://matrix-game-test.invalid")    # .invalid never resolves
    t0 = time.monotonic()
    with pytest.raises(MatrixGameError, match="cannot reach matrix-game-test.invalid") as e:
        download("templerun", str(tmp_path / "new" / "models"), with_encoders=False)
    assert time.monotonic() - t0 < 10
    assert "\n" not in str(e.value)
    assert os.listdir(tmp_path) == []                    # the folders it created are gone


def test_load_components_names_missing_files(tmp_path):
    (tmp_path / VAE_FILE).write_bytes(b"x")
    with pytest.raises(MatrixGameError) as e:
        load_components(str(tmp_path), "universal")
    assert DIT_FILES["universal"] in str(e.value) and CLIP_FILE in str(e.value)
    assert "python -m matrix_game_core download --mode universal" in str(e.value)
    with pytest.raises(MatrixGameError, match="does not exist"):
        load_components(os.path.join(str(tmp_path), "nope"), "universal")


# ---------------------------------------------------------------------------------------------- DiT config
def _hf_config(mode):
    """The Hugging Face repo's config.json beside each DiT file: diffusers ``WanModel`` fields at full
    size, no ``local_attn_size`` (not what the official inference reads)."""
    kb = {"universal": 4, "gta_drive": 2, "templerun": 7}[mode]
    return {"_class_name": "WanModel", "_diffusers_version": "0.33.1", "model_type": "i2v", "dim": 1536,
            "ffn_dim": 8960, "freq_dim": 256, "in_dim": 36, "num_heads": 12, "num_layers": 30, "out_dim": 16,
            "eps": 1e-6, "action_config": {"blocks": list(range(15)), "keyboard_dim_in": kb,
                                           "enable_mouse": mode != "templerun"}}


@pytest.mark.parametrize("mode,window", [("universal", 6), ("gta_drive", 4), ("templerun", 6)])
def test_hf_config_beside_the_dit_does_not_override_the_mode_preset(tmp_path, mode, window):
    import json
    from matrix_game_core.checkpoints import load_dit, save_dit
    from matrix_game_core.pipeline import random_tiny
    path = tmp_path / os.path.basename(DIT_FILES[mode])
    tiny = random_tiny(mode).dit
    save_dit(tiny, str(path))
    (tmp_path / "config.json").write_text(json.dumps(_hf_config(mode)))
    m = load_dit(str(path), mode=mode, dtype=torch.float32)
    assert m.window_frames == window == preset(mode).local_attn_size
    assert m.cfg.denoising_step_list == preset(mode).denoising_step_list
    assert m.cfg.dim == tiny.cfg.dim                                  # shapes from the tensors
    # an inference config (CausalWanModel fields) does override it
    cfg = tiny.cfg.to_dict()
    cfg.update(_class_name="CausalWanModel", local_attn_size=5)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert load_dit(str(path), mode=mode, dtype=torch.float32).window_frames == 5


def test_is_inference_config():
    from matrix_game_core.checkpoints import is_inference_config
    assert not is_inference_config(_hf_config("gta_drive"))
    assert not is_inference_config({**_hf_config("gta_drive"), "local_attn_size": 4})     # WanModel class
    assert is_inference_config({**_hf_config("gta_drive"), "_class_name": "CausalWanModel", "local_attn_size": 4})
    assert is_inference_config(preset("gta_drive").to_dict())                              # engine-written
    assert not is_inference_config([1, 2])


def test_dit_with_only_action_keys_or_nan_weights(tmp_path):
    from safetensors.torch import save_file
    from matrix_game_core.checkpoints import load_dit
    from matrix_game_core.pipeline import random_tiny
    sd = {"model." + k: v.contiguous() for k, v in random_tiny("universal").dit.state_dict().items()}
    p = tmp_path / "actions_only.safetensors"
    save_file({k: v for k, v in sd.items() if "action_model" in k}, str(p))
    with pytest.raises(MatrixGameError, match="lacks the DiT backbone .*patch_embedding.weight") as e:
        load_dit(str(p), mode="universal")
    assert "base_distill.safetensors" in str(e.value)
    bad = dict(sd)
    bad["model.blocks.1.ffn.0.weight"] = torch.full_like(bad["model.blocks.1.ffn.0.weight"], float("nan"))
    p = tmp_path / "nan.safetensors"
    save_file(bad, str(p))
    with pytest.raises(MatrixGameError, match=r"nan.safetensors has NaN/inf weights in blocks\.1\.ffn\.0\.weight"):
        load_dit(str(p), mode="universal", dtype=torch.float32)

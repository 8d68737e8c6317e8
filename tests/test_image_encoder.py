"""CLIP ViT-H/14 image encoder (``matrix_game_core.image_encoder``) against the golden data.

Golden cases ``clip_*`` (official ``VisionTransformer`` + ``CLIPModel.encode_video`` preprocessing,
float32): pixels, features after all-but-last blocks (``use_31_block``) and after all blocks. Also:
the full-size key/shape manifest, the ComfyUI (HF-transformers) key layout, and loader errors.
"""
import math
import os
import re

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from conftest import GOLDEN_TOL, golden_cases, golden_root, load_json, rel_err
from matrix_game_core.errors import MatrixGameError
from matrix_game_core.image_encoder import (CLIP_MEAN, CLIP_STD, CLIPVisionTower, VisionConfig,
                                            convert_comfy_clip_vision, convert_official_clip,
                                            encode_image, infer_vision_config, load_image_encoder,
                                            preprocess)

CASES = golden_cases("clip_")
MANIFEST = os.path.join(golden_root(), "manifests", "clip_xlmr_vit_h14.json")


@pytest.mark.golden
def test_golden_cases_exist():
    assert CASES, "no clip_* golden case found"


def _case(case_dir):
    cfg = VisionConfig.from_dict(load_json(os.path.join(case_dir, "config.json"))["vision_transformer"])
    weights = load_file(os.path.join(case_dir, "weights.safetensors"))
    data = load_file(os.path.join(case_dir, "clip_data.safetensors"))
    return cfg, weights, data


def _tower(cfg, weights, **cfg_overrides):
    if cfg_overrides:
        cfg = VisionConfig(**{**cfg.to_dict(), **cfg_overrides})
    tower = CLIPVisionTower(cfg)
    tower.load_state_dict(convert_official_clip(weights), strict=True)
    return tower.eval()


# ---------------------------------------------------------------------------------------------
# golden parity
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case_dir", CASES, ids=os.path.basename)
def test_preprocess_matches_golden(case_dir):
    cfg, _, data = _case(case_dir)
    px = preprocess(data["image"][:, :, 0], cfg.image_size)
    assert px.dtype == torch.float32 and px.shape == data["pixel_values"].shape
    assert rel_err(px, data["pixel_values"]) <= GOLDEN_TOL
    # a 5-D video [B,3,T,H,W] is flattened frame by frame like encode_video
    assert torch.equal(preprocess(data["image"], cfg.image_size), px)


@pytest.mark.parametrize("case_dir", CASES, ids=os.path.basename)
def test_features_match_golden(case_dir):
    cfg, weights, data = _case(case_dir)
    tower = _tower(cfg, weights)
    with torch.no_grad():
        f31 = tower(data["pixel_values"], use_31_block=True)
        fall = tower(data["pixel_values"], use_31_block=False)
    assert f31.shape == (1, cfg.num_tokens, cfg.dim)
    e31, eall = rel_err(f31, data["features_31"]), rel_err(fall, data["features_all_blocks"])
    print(f"{os.path.basename(case_dir)}: rel_err features_31 {e31:.2e}, all_blocks {eall:.2e}")
    assert e31 <= GOLDEN_TOL and eall <= GOLDEN_TOL
    # end to end from the [-1,1] frame, and through the file loader
    vc = encode_image(tower, data["image"][:, :, 0])
    assert vc.dtype == torch.float32
    assert rel_err(vc, data["features_31"]) <= GOLDEN_TOL
    loaded = load_image_encoder(os.path.join(case_dir, "weights.safetensors"),
                                config=load_json(os.path.join(case_dir, "config.json")))
    assert loaded.cfg == cfg and not loaded.training
    assert rel_err(encode_image(loaded, data["image"][:, :, 0]), data["features_31"]) <= GOLDEN_TOL


@pytest.mark.parametrize("case_dir", CASES, ids=os.path.basename)
def test_golden_discriminates_semantics(case_dir):
    """The golden comparison can fail: other plausible choices miss it by far more than the bound."""
    cfg, weights, data = _case(case_dir)
    px = data["pixel_values"]
    with torch.no_grad():
        wrong = {
            "quick_gelu": _tower(cfg, weights, activation="quick_gelu")(px),
            "post_norm blocks": _tower(cfg, weights, post_norm=True)(px),
            "all blocks": _tower(cfg, weights)(px, use_31_block=False),
        }
    for name, out in wrong.items():
        assert rel_err(out, data["features_31"]) > 10 * GOLDEN_TOL, name
    # an antialiased resize (ComfyUI clip_preprocess style) instead of the official plain bicubic
    img = data["image"][:, :, 0]
    anti = F.interpolate(img, size=(cfg.image_size,) * 2, mode="bicubic", antialias=True)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    assert rel_err((anti * 0.5 + 0.5 - mean) / std, px) > 10 * GOLDEN_TOL


# ---------------------------------------------------------------------------------------------
# full-size skeleton vs the official key manifest
# ---------------------------------------------------------------------------------------------

def _manifest_visual():
    shapes = load_json(MANIFEST)["shapes"]
    return {k[len("visual."):]: tuple(v) for k, v in shapes.items() if k.startswith("visual.")}


@pytest.mark.golden
def test_full_size_keys_match_manifest():
    manifest = load_json(MANIFEST)
    want = _manifest_visual()
    tower = CLIPVisionTower(VisionConfig(), device="meta")
    got = {k: tuple(v.shape) for k, v in tower.state_dict().items()}
    assert got == want
    assert len(got) == manifest["num_visual_tensors"] == 392
    assert sum(math.prod(s) for s in got.values()) == manifest["num_visual_params"]
    assert VisionConfig().num_tokens == 257


@pytest.mark.golden
def test_full_size_config_inferred_from_shapes():
    meta = {k: torch.empty(s, device="meta") for k, s in _manifest_visual().items()}
    assert infer_vision_config(meta) == VisionConfig()           # heads = 1280 // 80 = 16
    assert infer_vision_config(convert_comfy_clip_vision(_to_comfy_layout(meta))) == VisionConfig()
    assert infer_vision_config(meta, num_heads=20).num_heads == 20


# ---------------------------------------------------------------------------------------------
# ComfyUI clip_vision_h.safetensors layout (HF-transformers CLIPVisionModelWithProjection names)
# ---------------------------------------------------------------------------------------------

def _to_comfy_layout(native):
    """Inverse of convert_comfy_clip_vision, written independently from the HF layout."""
    out = {}
    for k, v in native.items():
        m = re.match(r"^transformer\.(\d+)\.(.+)$", k)
        if m:
            n, rest = m.group(1), m.group(2)
            p = f"vision_model.encoder.layers.{n}."
            if rest.startswith("attn.to_qkv."):
                kind = rest.rsplit(".", 1)[1]
                for name, part in zip(("q", "k", "v"), v.chunk(3, dim=0)):
                    out[f"{p}self_attn.{name}_proj.{kind}"] = part
                continue
            for ours, hf in (("norm1.", "layer_norm1."), ("norm2.", "layer_norm2."),
                             ("attn.proj.", "self_attn.out_proj."), ("mlp.0.", "mlp.fc1."),
                             ("mlp.2.", "mlp.fc2.")):
                if rest.startswith(ours):
                    out[p + hf + rest[len(ours):]] = v
                    break
            else:
                raise AssertionError(k)
        elif k == "cls_embedding":
            out["vision_model.embeddings.class_embedding"] = v.reshape(-1)
        elif k == "pos_embedding":
            out["vision_model.embeddings.position_embedding.weight"] = v[0]
        elif k == "patch_embedding.weight":
            out["vision_model.embeddings.patch_embedding.weight"] = v
        elif k.startswith("pre_norm."):
            out["vision_model.pre_layrnorm." + k.split(".")[1]] = v
        elif k.startswith("post_norm."):
            out["vision_model.post_layernorm." + k.split(".")[1]] = v
        elif k == "head":
            out["visual_projection.weight"] = v.t()
        else:
            raise AssertionError(k)
    return out


def _hf_reference(sd, pixels, heads, n_layers, eps):
    """HF CLIPVisionModel semantics on the HF-layout dict: hidden_states[n_layers] (no post norm)."""
    pre = "vision_model."
    x = F.conv2d(pixels, sd[pre + "embeddings.patch_embedding.weight"],
                 stride=sd[pre + "embeddings.patch_embedding.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = sd[pre + "embeddings.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], 1) + sd[pre + "embeddings.position_embedding.weight"]
    ln = lambda t, name: F.layer_norm(t, t.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps)
    lin = lambda t, name: F.linear(t, sd[name + ".weight"], sd[name + ".bias"])
    x = ln(x, pre + "pre_layrnorm")
    b, s, c = x.shape
    for i in range(n_layers):
        p = f"{pre}encoder.layers.{i}."
        h = ln(x, p + "layer_norm1")
        q, k, v = (lin(h, p + f"self_attn.{n}_proj").view(b, s, heads, -1).transpose(1, 2) for n in "qkv")
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // heads), -1) @ v
        x = x + lin(a.transpose(1, 2).reshape(b, s, c), p + "self_attn.out_proj")
        x = x + lin(F.gelu(lin(ln(x, p + "layer_norm2"), p + "mlp.fc1")), p + "mlp.fc2")
    return x


@pytest.mark.parametrize("case_dir", CASES, ids=os.path.basename)
def test_comfy_layout_loads_identically(case_dir, tmp_path):
    cfg, weights, data = _case(case_dir)
    official = load_image_encoder(weights, config=cfg)
    hf = _to_comfy_layout(convert_official_clip(weights))
    hf["vision_model.embeddings.position_ids"] = torch.arange(cfg.num_tokens)[None]   # older HF exports
    # the HF-layout dict, run with HF semantics, reproduces the golden penultimate features
    ref = _hf_reference(hf, data["pixel_values"], cfg.num_heads, cfg.num_layers - 1, cfg.norm_eps)
    assert rel_err(ref, data["features_31"]) <= GOLDEN_TOL
    # ... and loads (dict and .safetensors file) into a tower with identical weights and features
    path = str(tmp_path / "clip_vision_h.safetensors")
    save_file({k: v.contiguous() for k, v in hf.items()}, path)
    for src in (hf, path):
        comfy = load_image_encoder(src, config=cfg)
        assert comfy.state_dict().keys() == official.state_dict().keys()
        for k, v in official.state_dict().items():
            assert torch.equal(comfy.state_dict()[k], v), k
        assert torch.equal(encode_image(comfy, data["image"][:, :, 0]),
                           encode_image(official, data["image"][:, :, 0]))


@pytest.mark.golden          # uses the first clip_* case's weights
def test_operations_namespace_and_dtype():
    case_dir = CASES[0]
    cfg, weights, data = _case(case_dir)
    calls = []

    class Ops:
        class Linear(torch.nn.Linear):
            def forward(self, x):
                calls.append("Linear")
                return super().forward(x)
        LayerNorm = torch.nn.LayerNorm
        Conv2d = torch.nn.Conv2d

    tower = load_image_encoder(weights, config=cfg, operations=Ops)
    encode_image(tower, data["image"][:, :, 0])
    assert calls.count("Linear") == 4 * (cfg.num_layers - 1)
    bf = load_image_encoder(weights, config=cfg, dtype=torch.bfloat16)
    assert bf.pos_embedding.dtype == torch.bfloat16
    out = encode_image(bf, data["image"][:, :, 0])
    assert out.dtype == torch.float32 and rel_err(out, data["features_31"]) < 5e-2


# ---------------------------------------------------------------------------------------------
# loader errors
# ---------------------------------------------------------------------------------------------

def _raises(match, fn, *a, **kw):
    with pytest.raises(MatrixGameError, match=match) as ei:
        fn(*a, **kw)
    return str(ei.value)


@pytest.mark.golden          # uses the first clip_* case's weights
def test_loader_errors(tmp_path):
    case_dir = CASES[0]
    cfg, weights, _ = _case(case_dir)
    good = os.path.join(case_dir, "weights.safetensors")

    msg = _raises("not found", load_image_encoder, str(tmp_path / "nope.safetensors"))
    assert "clip_vision_h.safetensors" in msg
    _raises("is a folder", load_image_encoder, str(tmp_path))
    (tmp_path / "empty.safetensors").write_bytes(b"")
    _raises("empty", load_image_encoder, str(tmp_path / "empty.safetensors"))

    with open(good, "rb") as f:
        blob = f.read()
    (tmp_path / "cut.safetensors").write_bytes(blob[: len(blob) // 2])
    msg = _raises("truncated or corrupt", load_image_encoder, str(tmp_path / "cut.safetensors"))
    assert "download it again" in msg
    torch.save(weights, str(tmp_path / "w.pth"))
    with open(tmp_path / "w.pth", "rb") as f:
        pth = f.read()
    (tmp_path / "cut.pth").write_bytes(pth[: len(pth) // 2])
    _raises("truncated or corrupt", load_image_encoder, str(tmp_path / "cut.pth"))
    (tmp_path / "junk.pth").write_bytes(b"this is not a checkpoint" * 10)
    _raises("truncated or corrupt", load_image_encoder, str(tmp_path / "junk.pth"))
    # the intact .pth loads (official layout, torch.load(weights_only=True))
    assert load_image_encoder(str(tmp_path / "w.pth"), config=cfg).cfg == cfg

    vae_like = {"encoder.conv1.weight": torch.zeros(1), "decoder.conv1.weight": torch.zeros(1)}
    assert "VAE" in _raises("not a CLIP vision", load_image_encoder, vae_like)
    _raises("only the CLIP text tower", load_image_encoder, {"textual.head.0.weight": torch.zeros(1)})
    _raises("OpenCLIP", load_image_encoder, {"visual.conv1.weight": torch.zeros(1)})
    _raises("file path or a state dict", load_image_encoder, 42)

    incomplete = dict(weights)
    del incomplete["visual.transformer.1.mlp.2.bias"]
    assert "transformer.1.mlp.2.bias" in _raises("missing", load_image_encoder, incomplete, config=cfg)
    extra = dict(weights, **{"visual.bogus": torch.zeros(1)})
    _raises("unexpected", load_image_encoder, extra, config=cfg)
    hf = _to_comfy_layout(convert_official_clip(weights))
    del hf["vision_model.encoder.layers.0.self_attn.k_proj.weight"]
    _raises("lacks self_attn.k_proj.weight", load_image_encoder, hf, config=cfg)

    # tiny dim 64 is not a multiple of ViT-H's 80-channel heads: the head count must be given
    assert "num_heads=" in _raises("Cannot infer the attention head count", load_image_encoder, weights)
    assert load_image_encoder(weights, num_heads=cfg.num_heads).cfg == cfg
    _raises("not divisible", load_image_encoder, weights, num_heads=3)
    wrong = VisionConfig(**{**cfg.to_dict(), "num_layers": cfg.num_layers + 1})
    _raises("does not match the checkpoint", load_image_encoder, weights, config=wrong)

    # input validation
    tower = load_image_encoder(weights, config=cfg)
    _raises("RGB image", preprocess, torch.zeros(1, 4, 32, 32))
    _raises(r"expects 224x224", tower, torch.zeros(1, 3, 112, 112))


def test_comfy_layout_round_trip_of_the_full_size_keys():
    """convert_to_comfy_clip_vision is the exact inverse of convert_comfy_clip_vision."""
    from matrix_game_core.image_encoder import (CLIPVisionTower, VisionConfig, convert_comfy_clip_vision,
                                                convert_to_comfy_clip_vision)
    tower = CLIPVisionTower(VisionConfig(dim=64, num_heads=2, num_layers=2, out_dim=32))
    sd = tower.state_dict()
    hf = convert_to_comfy_clip_vision(sd)
    assert "vision_model.encoder.layers.1.self_attn.k_proj.weight" in hf and "visual_projection.weight" in hf
    back = convert_comfy_clip_vision(hf)
    assert sorted(back) == sorted(sd) and all(torch.equal(back[k], sd[k]) for k in sd)

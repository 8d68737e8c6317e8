"""Wan-2.1 VAE (matrix_game_core.vae) against the official implementation's golden data.

Every ``vae_*`` case under the golden root is replayed with the sizes of its own config.json:
encoder mean, latent normalisation, streaming decode (two block calls, one latent per call),
one-shot decode; plus the full-size key/shape manifest, start-image conditioning and the loader's
error handling.
"""
import os
import types

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import GOLDEN_TOL, golden_cases, golden_filter, golden_root, load_json, rel_err
from matrix_game_core.errors import MatrixGameError
from matrix_game_core.vae import (CACHE_T, LATENT_MEAN, LATENT_STD, StreamingDecoder, WanVAE,
                                  denormalize_latents, encode_start_image, load_wan_vae,
                                  normalize_latents)

CASES = golden_cases("vae_")
_IDS = [os.path.basename(c) for c in CASES]
_LOADED = {}


def _case(case_dir):
    """(cfg, vae built from config.json + weights, data, info) -- cached per case."""
    if case_dir not in _LOADED:
        cfg = load_json(os.path.join(case_dir, "config.json"))
        vae = WanVAE(**cfg["VideoVAE_args"])
        vae.load_state_dict(load_file(os.path.join(case_dir, "weights.safetensors")), strict=True)
        vae.eval().requires_grad_(False)
        data = load_file(os.path.join(case_dir, "vae_data.safetensors"))
        info_p = os.path.join(case_dir, "vae_info.json")
        info = load_json(info_p) if os.path.isfile(info_p) else {}
        _LOADED[case_dir] = (cfg, vae, data, info)
    return _LOADED[case_dir]


def _golden_calls(data):
    """Golden streaming calls as [B,3,T,H,W] tensors, in order."""
    calls, i = [], 0
    while f"dec_stream_call{i}" in data:
        calls.append(data[f"dec_stream_call{i}"].permute(0, 2, 1, 3, 4))
        i += 1
    return calls


def _latents_per_call(calls):
    """Latent frames consumed by each call: first call 1 + 4(n-1) frames, later ones 4n."""
    ns = []
    for j, c in enumerate(calls):
        t = c.shape[2]
        ns.append((t - 1) // 4 + 1 if j == 0 else t // 4)
    return ns


def _shape_or_marker(slot):
    return slot if isinstance(slot, str) else list(slot.shape)


def _random_vae(dim=4, seed=0, **kw):
    torch.manual_seed(seed)
    vae = WanVAE(dim=dim, **kw)
    with torch.no_grad():
        for n, p in vae.named_parameters():
            if n.endswith("gamma"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif n.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
    return vae.eval().requires_grad_(False)


@pytest.mark.golden
def test_golden_cases_exist():
    assert CASES, f"no vae_* case under {golden_root()}"


# --------------------------------------------------------------------------------- golden parity
@pytest.mark.parametrize("case_dir", CASES, ids=_IDS)
def test_constants_and_loader_match_config(case_dir):
    cfg, vae, _, _ = _case(case_dir)
    if "latent_mean" in cfg:
        assert tuple(cfg["latent_mean"]) == LATENT_MEAN
        assert tuple(cfg["latent_std"]) == LATENT_STD
    wpath = os.path.join(case_dir, "weights.safetensors")
    loaded = load_wan_vae(wpath)                      # dim inferred from the tensors
    assert loaded.dim == cfg["VideoVAE_args"]["dim"]
    ref = vae.state_dict()
    got = loaded.state_dict()
    assert list(got) == list(ref)
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    dec = load_wan_vae(wpath, decoder_only=True)
    n_dec = sum(1 for k in ref if "decoder." in k or "conv2" in k)
    assert len(dec.state_dict()) == n_dec and not dec.has_encoder


@pytest.mark.parametrize("case_dir", CASES, ids=_IDS)
def test_encode_golden(case_dir):
    _, vae, data, _ = _case(case_dir)
    mu = vae.encode(data["enc_video"])
    e_mu = rel_err(mu, data["enc_mu_raw"])
    e_norm = rel_err(normalize_latents(mu), data["enc_latent_normalized"])
    print(f"\n{os.path.basename(case_dir)} encode: rel_err mu {e_mu:.3e}, normalized {e_norm:.3e}")
    assert e_mu <= GOLDEN_TOL
    assert e_norm <= GOLDEN_TOL
    # the official normalisation formula is bit-exact on the official mu
    assert torch.equal(normalize_latents(data["enc_mu_raw"]), data["enc_latent_normalized"])
    # and denormalisation inverts it (to rounding)
    back = denormalize_latents(data["enc_latent_normalized"])
    assert rel_err(back, data["enc_mu_raw"]) <= 1e-6


@pytest.mark.parametrize("case_dir", CASES, ids=_IDS)
def test_streaming_decode_golden(case_dir):
    _, vae, data, info = _case(case_dir)
    z = data["dec_latent"]
    calls = _golden_calls(data)
    assert calls, "no dec_stream_call* tensors"
    ns = _latents_per_call(calls)
    assert sum(ns) == z.shape[2]
    dec = StreamingDecoder(vae)
    outs, start = [], 0
    for j, (n, ref) in enumerate(zip(ns, calls)):
        out = dec.decode(z[:, :, start:start + n])
        start += n
        assert out.dtype == torch.float32 and out.shape == ref.shape
        assert out.min() >= -1 and out.max() <= 1
        e = rel_err(out, ref)
        print(f"\n{os.path.basename(case_dir)} stream call {j}: rel_err {e:.3e}, "
              f"max abs {(out - ref).abs().max().item():.3e}")
        assert e <= GOLDEN_TOL
        outs.append(out)
        if j == 0 and "cache_after_each_block_call" in info:
            assert [_shape_or_marker(s) for s in dec.cache_slots] == info["cache_after_each_block_call"][0]
    # the cache keeps at most CACHE_T frames per slot
    assert all(isinstance(s, str) or s.shape[2] <= CACHE_T for s in dec.cache_slots)
    stream = torch.cat(outs, dim=2)

    # one-shot decode of the raw latents == streaming (bit-identical officially)
    one = vae.decode(denormalize_latents(z))
    assert one.shape == stream.shape
    assert (one - stream).abs().max().item() <= 1e-5  # CPU conv path sums taps per call

    # one latent per call == block calls; lengths 1, 4, 4, ...
    dec.reset()
    per = [dec.decode(z[:, :, i:i + 1]) for i in range(z.shape[2])]
    lens = [p.shape[2] for p in per]
    assert lens == [1] + [4] * (z.shape[2] - 1)
    if "per_frame_call_output_lengths" in info:
        assert lens == info["per_frame_call_output_lengths"]
    assert (torch.cat(per, dim=2) - stream).abs().max().item() <= 1e-5


SLOT_CASES = golden_filter(CASES, lambda c: "cache_after_first_single_frame_call"
                           in load_json(os.path.join(c, "vae_info.json")))


@pytest.mark.parametrize("case_dir", SLOT_CASES, ids=[os.path.basename(c) for c in SLOT_CASES])
def test_streaming_cache_slots_match_official(case_dir):
    """After latent 0 the two temporal upsamplers hold 'Rep' and every other slot 1 frame; after
    latent 1 every slot holds 2 frames (shapes recorded from the official 32-slot cache; only
    cases whose vae_info.json records them)."""
    _, vae, data, info = _case(case_dir)
    dec = StreamingDecoder(vae)
    dec.decode(data["dec_latent"][:, :, :1])
    assert [_shape_or_marker(s) for s in dec.cache_slots] == info["cache_after_first_single_frame_call"]
    assert sum(1 for s in dec.cache_slots if isinstance(s, str)) == 2
    dec.decode(data["dec_latent"][:, :, 1:2])
    assert [_shape_or_marker(s) for s in dec.cache_slots] == info["cache_after_second_single_frame_call"]


# --------------------------------------------------------------------------------- full size
@pytest.mark.golden
def test_full_size_structure_matches_manifest():
    man = load_json(os.path.join(golden_root(), "manifests", "wan21_vae.json"))
    with torch.device("meta"):
        vae = WanVAE()
    sd = vae.state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == man["shapes"]
    assert len(sd) == man["num_tensors"]
    assert sum(v.numel() for v in sd.values()) == man["num_params"]
    assert vae.decoder.num_cache_slots == 32
    assert sum(1 for k in sd if "decoder." in k or "conv2" in k) == 108


def test_operations_namespace_is_used():
    made = {"Conv2d": 0, "Conv3d": 0}

    class Conv2d(torch.nn.Conv2d):
        def __init__(self, *a, **k):
            made["Conv2d"] += 1
            super().__init__(*a, **k)

    class Conv3d(torch.nn.Conv3d):
        def __init__(self, *a, **k):
            made["Conv3d"] += 1
            super().__init__(*a, **k)

    ops = types.SimpleNamespace(Conv2d=Conv2d, Conv3d=Conv3d, Linear=torch.nn.Linear)
    vae = WanVAE(dim=4, operations=ops)
    ref = WanVAE(dim=4)
    assert made["Conv2d"] > 0 and made["Conv3d"] > 0
    assert {k: v.shape for k, v in vae.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    n_conv = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)) for m in vae.modules())
    assert made["Conv2d"] + made["Conv3d"] == n_conv


# --------------------------------------------------------------------------------- behaviour
def test_encode_start_image():
    vae = _random_vae()
    torch.manual_seed(1)
    image = torch.rand(2, 3, 16, 24) * 2 - 1
    n = 3
    cond = encode_start_image(vae, image, n)
    assert cond.shape == (2, 4 + 16, n, 2, 3) and cond.dtype == torch.float32
    assert torch.all(cond[:, :4, 0] == 1) and torch.all(cond[:, :4, 1:] == 0)
    video = torch.cat([image.unsqueeze(2), torch.zeros(2, 3, 4 * (n - 1), 16, 24)], dim=2)
    ref = normalize_latents(vae.encode(video))
    assert torch.equal(cond[:, 4:], ref)
    # latents after the image are not constant (causal encoding of the grey frames)
    assert not torch.equal(cond[:, 4:, 1], cond[:, 4:, 2]) or n < 3
    with pytest.raises(MatrixGameError):
        encode_start_image(vae, image, 0)
    with pytest.raises(MatrixGameError, match="divisible by 8"):
        encode_start_image(vae, image[:, :, :12], 2)


def test_encode_rejects_bad_frame_count_and_decoder_only():
    vae = _random_vae()
    with pytest.raises(MatrixGameError, match="1 \\+ 4k"):
        vae.encode(torch.zeros(1, 3, 4, 16, 16))
    dec_only = load_wan_vae(vae.state_dict(), decoder_only=True)
    with pytest.raises(MatrixGameError, match="decoder_only=False"):
        dec_only.encode(torch.zeros(1, 3, 1, 16, 16))
    with pytest.raises(MatrixGameError, match="decoder_only=False"):
        encode_start_image(dec_only, torch.zeros(1, 3, 16, 16), 2)
    # the decoder-only model decodes exactly like the full one
    z = torch.randn(1, 16, 3, 2, 2)
    assert torch.equal(StreamingDecoder(dec_only).decode(z), StreamingDecoder(vae).decode(z))


def test_low_precision_follows_parameters():
    vae = _random_vae()
    vb = load_wan_vae(vae.state_dict(), dtype=torch.bfloat16)
    assert vb.dtype == torch.bfloat16
    z = torch.randn(1, 16, 2, 2, 3)
    dec = StreamingDecoder(vb)
    out = dec.decode(z)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 5, 16, 24)
    assert all(isinstance(s, str) or s.dtype == torch.bfloat16 for s in dec.cache_slots if s is not None)
    ref = StreamingDecoder(vae).decode(z)
    assert rel_err(out, ref) < 0.05


def test_reset_starts_a_new_stream():
    vae = _random_vae()
    z = torch.randn(1, 16, 3, 2, 2)
    dec = StreamingDecoder(vae)
    a = dec.decode(z)
    b = dec.decode(z)
    assert a.shape[2] == 9 and b.shape[2] == 12
    dec.reset()
    assert torch.equal(dec.decode(z), a)


# --------------------------------------------------------------------------------- loading
def test_load_round_trip(tmp_path):
    vae = _random_vae()
    sd = vae.state_dict()
    p_st = str(tmp_path / "wan_2.1_vae.safetensors")
    p_pth = str(tmp_path / "Wan2.1_VAE.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, p_st)
    torch.save(sd, p_pth)
    z = torch.randn(1, 16, 2, 2, 2)
    ref = vae.decode(z)
    for p in (p_st, p_pth):
        m = load_wan_vae(p)
        assert m.dim == 4 and not m.training
        assert all(torch.equal(m.state_dict()[k], sd[k]) for k in sd)
        assert torch.equal(m.decode(z), ref)
        assert not any(q.requires_grad for q in m.parameters())
    # bf16 file -> fp32 model; prefixed keys are accepted
    save_file({"first_stage_model." + k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}, p_st)
    m = load_wan_vae(p_st)
    assert m.dtype == torch.float32
    # decoder-only file
    save_file({k: v.contiguous() for k, v in sd.items() if "decoder." in k or "conv2" in k}, p_st)
    assert load_wan_vae(p_st, decoder_only=True).encoder is None


def test_load_errors(tmp_path):
    vae = _random_vae()
    sd = vae.state_dict()

    with pytest.raises(MatrixGameError, match="folder"):
        load_wan_vae(str(tmp_path))
    with pytest.raises(MatrixGameError, match="not found"):
        load_wan_vae(str(tmp_path / "nope.pth"))
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(MatrixGameError, match="empty"):
        load_wan_vae(str(empty))

    for name, writer in (("a.pth", lambda p: torch.save(sd, p)),
                         ("a.safetensors", lambda p: save_file({k: v.contiguous() for k, v in sd.items()}, p))):
        p = str(tmp_path / name)
        writer(p)
        with open(p, "rb") as f:
            blob = f.read()
        with open(p, "wb") as f:
            f.write(blob[: len(blob) // 2])
        with pytest.raises(MatrixGameError, match="truncated or corrupt") as ei:
            load_wan_vae(p)
        assert "Wan2.1_VAE.pth" in str(ei.value)

    missing = dict(sd)
    del missing["decoder.head.2.weight"]
    with pytest.raises(MatrixGameError, match="1 missing keys: decoder.head.2.weight") as ei:
        load_wan_vae(missing)
    assert "Wan2.1_VAE.pth" in str(ei.value)

    extra = dict(sd)
    extra["decoder.bogus.weight"] = torch.zeros(1)
    with pytest.raises(MatrixGameError, match="unexpected keys: decoder.bogus.weight"):
        load_wan_vae(extra)

    wrong = dict(sd)
    wrong["conv2.bias"] = torch.zeros(3)
    with pytest.raises(MatrixGameError, match="wrong shape"):
        load_wan_vae(wrong)

    dec_only = {k: v for k, v in sd.items() if "decoder." in k or "conv2" in k}
    with pytest.raises(MatrixGameError, match="decoder_only=True"):
        load_wan_vae(dec_only)

    with pytest.raises(MatrixGameError, match="Wan 2.2"):
        load_wan_vae({**sd, "decoder.upsamples.0.upsamples.0.residual.2.weight": torch.zeros(1)})
    with pytest.raises(MatrixGameError, match="not a Wan video VAE"):
        load_wan_vae({"model.x": torch.zeros(1)})
    with pytest.raises(MatrixGameError, match="state dict"):
        load_wan_vae({"a": 1})

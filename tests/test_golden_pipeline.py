"""End-to-end parity: DiT + sampler + streaming VAE decode through WorldSession vs the official
``CausalInferencePipeline.inference`` (every ``pipeline_*`` case under the golden root)."""
import os
import re

import pytest
import torch
from safetensors.torch import load_file

from conftest import GOLDEN_TOL, golden_cases, load_json, rel_err
from golden_io import common_inputs, dit_config, dit_state_dict
from matrix_game_core.checkpoints import load_dit
from matrix_game_core.sampling import Conditioning, ReplayNoise, WorldSession
from matrix_game_core.vae import StreamingDecoder, load_wan_vae

pytestmark = pytest.mark.golden      # every test here compares against the golden data
CASES = golden_cases("pipeline_")


def _case_ref(text):
    """'dit_universal_tiny (same config, ...)' / 'vae_tiny/weights.safetensors, ...' -> folder name."""
    return re.match(r"[A-Za-z0-9_.-]+", text).group(0)


def _slice_frames(expr, key):
    """'.../inputs.safetensors['keyboard_cond'][:, 0:21]' -> (file, key, stop)."""
    m = re.match(r"(\S+?)\['(\w+)'\](?:\[:, (?::, )?0:(\d+)\])?", expr)
    assert m and m.group(2) == key, expr
    return m.group(1), int(m.group(3)) if m.group(3) else None


def test_there_are_pipeline_cases():
    assert CASES


@pytest.mark.parametrize("case", CASES, ids=[os.path.basename(c) for c in CASES])
def test_pipeline_video_matches(case):
    conf = load_json(os.path.join(case, "config.json"))
    root = os.path.dirname(case)
    dit_case = os.path.join(root, _case_ref(conf["dit"]))
    vae_case = os.path.join(root, _case_ref(conf["vae_decoder"]))
    cfg = dit_config(dit_case)
    model = load_dit(dit_state_dict(dit_case), mode=cfg.mode, config=cfg, dtype=torch.float32)
    vae = load_wan_vae(load_file(os.path.join(vae_case, "weights.safetensors")), decoder_only=True)
    common = common_inputs(case)
    _, n_latent = _slice_frames(conf["inputs"]["noise"], "noise")
    kb_file, n_rows = _slice_frames(conf["inputs"]["keyboard_cond"], "keyboard_cond")
    acts = load_file(os.path.normpath(os.path.join(case, kb_file)))
    kb = acts["keyboard_cond"][:, :n_rows]
    ms = acts["mouse_cond"][:, :n_rows] if "mouse_cond" in conf["inputs"] else None
    cond = Conditioning(common["cond_concat"][:, :, :n_latent], common["visual_context"])
    session = WorldSession(model, cond, decoder=StreamingDecoder(vae),
                           noise=ReplayNoise(common["noise"][:, :, :n_latent], common["renoise"]))
    latents, video = session.generate(kb, ms, n_latent)
    video = video.permute(0, 2, 1, 3, 4)  # golden layout [B, T, 3, H, W]
    gold = load_file(os.path.join(case, "video.safetensors"))
    stats = load_json(os.path.join(case, "video_stats.json"))
    assert list(video.shape[:2]) == stats["video_shape"][:2]
    assert rel_err(video[:, :, :, ::8, ::8], gold["video_sub8"]) <= GOLDEN_TOL
    assert rel_err(video[:, :, :, -32:, -32:], gold["video_crop_br"]) <= GOLDEN_TOL
    for fs in stats["per_frame"]:
        fr = video[0, fs["frame"]].double()
        assert abs(float(fr.sum()) - fs["sum"]) <= 1e-4 * max(1.0, float(fr.abs().sum()))
        assert abs(float((fr ** 2).sum()) - fs["sum_sq"]) <= 1e-4 * fs["sum_sq"]
        assert abs(int((fr.abs() >= 1).sum()) - fs["n_at_clamp"]) <= max(2, fs["n_at_clamp"] // 500)
    # latents equal the DiT case's block outputs
    trace = load_file(os.path.join(dit_case, "trace.safetensors"))
    if "x0_pred" in trace:
        ref = torch.cat([trace["x0_pred"][b, -1] for b in range(n_latent // 3)], dim=2)
        assert rel_err(latents, ref) <= GOLDEN_TOL

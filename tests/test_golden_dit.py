"""Parity of the DiT, the KV caches and the sampler with the official implementation.

Every ``dit_*`` case under the golden root is replayed through :class:`WorldSession` with the
recorded noise; every recorded model output (flow per denoising step, x0, context-pass flow,
block outputs) must match within ||ours - golden|| / ||golden|| <= 1e-4 (fp32).
"""
import functools
import os

import pytest
import torch
from safetensors.torch import load_file

from conftest import GOLDEN_TOL, golden_cases, golden_filter, golden_root, load_json, rel_err
from golden_io import common_inputs, dit_config, dit_state_dict
from matrix_game_core.checkpoints import load_dit
from matrix_game_core.sampling import Conditioning, FlowMatchScheduler, ReplayNoise, WorldSession

pytestmark = pytest.mark.golden      # every test here compares against the golden data
CASES = golden_cases("dit_")


@functools.lru_cache(maxsize=None)
def run_case(case):
    cfg = dit_config(case)
    conf = load_json(os.path.join(case, "config.json"))
    n_latent = int(conf["latent_frames"])
    model = load_dit(dit_state_dict(case), mode=cfg.mode, config=cfg, dtype=torch.float32)
    common = common_inputs(case)
    inputs = load_file(os.path.join(case, "inputs.safetensors"))
    cond = Conditioning(common["cond_concat"][:, :, :n_latent], common["visual_context"])
    session = WorldSession(model, cond, noise=ReplayNoise(common["noise"][:, :, :n_latent], common["renoise"]))
    calls = []
    orig = model.forward

    def spy(x, t, *a, **k):
        out = orig(x, t, *a, **k)
        calls.append((x.clone(), t.clone(), out.clone()))
        return out

    model.forward = spy
    kb = inputs["keyboard_cond"]
    ms = inputs.get("mouse_cond")
    latents, _ = session.generate(kb, ms, n_latent, decode=False)
    return cfg, session, calls, latents, load_file(os.path.join(case, "trace.safetensors"))


@pytest.fixture(scope="module", params=CASES, ids=[os.path.basename(c) for c in CASES])
def replay(request):
    return request.param, run_case(request.param)


def test_there_are_dit_cases():
    assert len(CASES) >= 1, f"no dit_* cases under {golden_root()}"


def test_flow_per_step_matches(replay):
    case, (cfg, session, calls, latents, trace) = replay
    ns = len(cfg.denoising_step_list)
    flows = trace["flow_pred"]
    n_blocks = flows.shape[0]
    assert len(calls) == n_blocks * (ns + 1)
    worst = 0.0
    for b in range(n_blocks):
        for s in range(ns):
            e = rel_err(calls[b * (ns + 1) + s][2], flows[b, s])
            worst = max(worst, e)
            assert e <= GOLDEN_TOL, f"block {b} step {s}: rel err {e:.2e}"
    print(f"{os.path.basename(case)}: worst flow rel err {worst:.2e}")


def test_timesteps_fed_match_calls_json(replay):
    case, (cfg, session, calls, latents, trace) = replay
    recorded = load_json(os.path.join(case, "calls.json"))["calls"]
    assert len(recorded) == len(calls)
    for rec, (x, t, _out) in zip(recorded, calls):
        want = 0.0 if rec["step"] == "context" else rec["timestep_float32"]
        assert t.dtype == torch.float32
        assert torch.all(t == torch.tensor(want, dtype=torch.float32)), (rec["call"], t, want)
        assert list(x.shape[2:3]) == [3]


def test_x0_and_block_outputs_match(replay):
    case, (cfg, session, calls, latents, trace) = replay
    ns = len(cfg.denoising_step_list)
    if "x0_pred" in trace:
        x0 = trace["x0_pred"]
        for b in range(x0.shape[0]):
            # the context pass's input is the block's x0 (last step)
            ctx_in = calls[b * (ns + 1) + ns][0]
            assert rel_err(ctx_in, x0[b, ns - 1]) <= GOLDEN_TOL
            assert rel_err(latents[:, :, 3 * b:3 * b + 3], x0[b, ns - 1]) <= GOLDEN_TOL
    if "x0_final" in trace:
        xf = trace["x0_final"]
        for b in range(xf.shape[0]):
            assert rel_err(latents[:, :, 3 * b:3 * b + 3], xf[b]) <= GOLDEN_TOL


CONTEXT_CASES = golden_filter(CASES, lambda c: "flow_pred_context" in load_file(os.path.join(c, "trace.safetensors")))


@pytest.mark.parametrize("case", CONTEXT_CASES, ids=[os.path.basename(c) for c in CONTEXT_CASES])
def test_context_pass_matches(case):
    """Only some cases record the t=0 context pass output (golden README §4, size budget)."""
    cfg, session, calls, latents, trace = run_case(case)
    ns = len(cfg.denoising_step_list)
    fc = trace["flow_pred_context"]
    for b in range(fc.shape[0]):
        e = rel_err(calls[b * (ns + 1) + ns][2], fc[b])
        assert e <= GOLDEN_TOL, f"context pass of block {b}: rel err {e:.2e}"


def test_scheduler_tables_match_golden():
    sched_json = load_json(os.path.join(golden_root(), "scheduler.json"))
    s = FlowMatchScheduler(5.0)
    assert torch.equal(s.timesteps, torch.tensor(sched_json["timesteps_table_float32"], dtype=torch.float32))
    assert torch.equal(s.sigmas, torch.tensor(sched_json["sigmas_table_float32"], dtype=torch.float32))
    for mode, m in sched_json["modes"].items():
        w = s.warp(m["denoising_step_list"])
        assert torch.equal(w, torch.tensor(m["warped_timesteps_float32"], dtype=torch.float32)), mode
        sig = torch.stack([s.sigma(float(t)) for t in w])
        assert torch.equal(sig, torch.tensor(m["sigma_float32"], dtype=torch.float32)), mode

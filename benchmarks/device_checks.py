"""Numerical checks that need the device the pack runs on (issue 12): run by ``device_run.sh``.

    python benchmarks/device_checks.py --device cuda      # on a GPU machine
    python benchmarks/device_checks.py --device cpu       # dry run of the same checks on the CPU

On the tiny model of the real architecture (random weights), on ``--device``:

1. bf16 session vs fp32 session (same weights, same seed): latents relative error;
2. compiled block step vs eager (``mode="reduce-overhead"`` = CUDA-graph replay on CUDA;
   inductor on the CPU): latents relative error, graphs compiled after the warm-up blocks,
   graph breaks, CUDA-graph skips;
3. fp8 (e4m3) block weights vs bf16: latents relative error;
4. compiled streaming decoder vs eager: frames relative error.

Prints one table row per check and exits non-zero when a check is outside its bound.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from matrix_game_core.compile import compile_counters  # noqa: E402
from matrix_game_core.config import preset  # noqa: E402
from matrix_game_core.model import build_model  # noqa: E402
from matrix_game_core.ops import cast_ops, quantize_linear_weights  # noqa: E402
from matrix_game_core.sampling import Conditioning, WorldSession  # noqa: E402
from matrix_game_core.vae import StreamingDecoder, WanVAE  # noqa: E402

#: Bounds (relative L2 error of the latents / frames over the blocks run).
BOUNDS = {"bf16 vs fp32": 5e-2, "compiled vs eager": 2e-2, "fp8 vs bf16": 1e-1, "compiled decoder vs eager": 2e-2}


def rel(a, b) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def tiny_model(device, dtype, ops=None):
    torch.manual_seed(0)
    m = build_model(preset("tiny_universal"), dtype=torch.float32, operations=ops)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5 if p.dim() >= 2 else 20))
    return m.to(device=device, dtype=dtype)


def session_latents(model, device, blocks, compile=False):
    g = torch.Generator().manual_seed(1)
    cond = Conditioning(torch.randn(1, 20, 3, 8, 14, generator=g), torch.randn(1, 257, 1280, generator=g))
    s = WorldSession(model, cond.to(device), seed=0, compile=compile)
    out, graphs = [], []
    for b in range(blocks):
        out.append(s.step(torch.tensor([1.0, 0, 0, b % 2]), torch.tensor([0.0, 0.1]), decode=False).latents)
        graphs.append(compile_counters()["graphs"])
    return torch.cat(out, dim=2), graphs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--backend", default="inductor",
                    help="dynamo backend of the compiled checks (aot_eager: a quick CPU dry run of the same graphs)")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    low = torch.bfloat16
    rows = []
    ref32, _ = session_latents(tiny_model(dev, torch.float32), dev, a.blocks)
    lo, _ = session_latents(tiny_model(dev, low), dev, a.blocks)
    rows.append(("bf16 vs fp32", rel(lo, ref32), ""))
    eager, _ = session_latents(tiny_model(dev, low), dev, a.blocks)
    c0 = compile_counters()
    backend = True if a.backend == "inductor" else a.backend
    comp, graphs = session_latents(tiny_model(dev, low), dev, a.blocks, compile=backend)
    c1 = compile_counters()
    rows.append(("compiled vs eager", rel(comp, eager),
                 f"graphs/block {graphs}, after warm-up +{graphs[-1] - graphs[1]}, breaks {c1['graph_breaks']}, "
                 f"cudagraph skips {c1['cudagraph_skips'] - c0['cudagraph_skips']}"))
    bf = tiny_model(dev, low, cast_ops)
    q = copy.deepcopy(bf)
    quantize_linear_weights(q)
    rows.append(("fp8 vs bf16", rel(session_latents(q, dev, a.blocks)[0], session_latents(bf, dev, a.blocks)[0]), ""))
    torch.manual_seed(0)
    vae = WanVAE(dim=8).to(device=dev, dtype=low).eval().requires_grad_(False)
    z = torch.randn(1, 16, 9, 8, 14, device=dev)
    e, c = StreamingDecoder(vae), StreamingDecoder(vae, compile=backend)
    fe = torch.cat([e.decode(z[:, :, i:i + 3]) for i in range(0, 9, 3)], 2)
    fc = torch.cat([c.decode(z[:, :, i:i + 3]) for i in range(0, 9, 3)], 2)
    rows.append(("compiled decoder vs eager", rel(fc, fe), ""))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"\n## device checks on {name} (torch {torch.__version__})\n\n| check | rel. error | bound | notes |\n|---|---|---|---|")
    bad = 0
    for what, err, note in rows:
        ok = err <= BOUNDS[what]
        bad += not ok
        print(f"| {what} | {err:.2e} | {BOUNDS[what]:.0e} | {note}{'' if ok else ' **FAIL**'} |")
    after = graphs[-1] - graphs[1]
    if after or c1["graph_breaks"]:
        print(f"FAIL: {after} graphs after warm-up, {c1['graph_breaks']} graph breaks")
        bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

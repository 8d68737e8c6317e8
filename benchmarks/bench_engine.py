"""Engine throughput: per-block time, FPS (video frames per second, decode included), peak memory.

    python benchmarks/bench_engine.py                       # GPU: full-size universal, bf16
    python benchmarks/bench_engine.py --size tiny --blocks 4 # CPU smoke figure

Random weights time exactly like real ones (same shapes, same kernels). The block loop is the
real :class:`WorldSession` (3 denoising steps + t=0 context pass + streaming VAE decode), so the
figures are what a user gets. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from matrix_game_core.config import preset  # noqa: E402
from matrix_game_core.model import build_model  # noqa: E402
from matrix_game_core.sampling import Conditioning, WorldSession  # noqa: E402
from matrix_game_core.vae import StreamingDecoder, WanVAE  # noqa: E402


def _randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_((torch.randn(p.shape, generator=g) * 0.02).to(p.dtype))


def run(size: str, mode: str, device: str, dtype: torch.dtype, vae_dtype: torch.dtype, blocks: int,
        warmup: int, attention: str):
    dev = torch.device(device)
    cfg = preset(mode if size == "full" else f"tiny_{mode}")
    with torch.device(dev):
        model = build_model(cfg, dtype=dtype, attention_backend=attention)
        vae = WanVAE(dim=96 if size == "full" else 8).to(vae_dtype).eval().requires_grad_(False)
    _randomize(model)
    _randomize(vae, 1)
    n_latent = 3 * (blocks + warmup)
    cond = Conditioning(torch.randn(1, 20, n_latent, 44, 80), torch.randn(1, 257, cfg.img_dim))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    session = WorldSession(model, cond, decoder=StreamingDecoder(vae), seed=0)
    K = cfg.keyboard_dim
    rows = []
    for b in range(blocks + warmup):
        r = session.rows_for_block(b)
        kb = torch.zeros(r, K)
        kb[:, 0] = 1
        ms = torch.full((r, 2), 0.1) if cfg.has_mouse else None
        t0 = time.perf_counter()
        res = session.step(kb, ms)
        wall = time.perf_counter() - t0
        if b >= warmup:
            rows.append((res.frames.shape[2], wall, res.timings))
    peak = torch.cuda.max_memory_allocated(dev) / 2 ** 30 if dev.type == "cuda" else float("nan")
    return rows, peak, session.cache.nbytes() / 2 ** 30


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["full", "tiny"], default="full" if torch.cuda.is_available() else "tiny")
    ap.add_argument("--mode", default="universal", choices=["universal", "gta_drive", "templerun"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--vae-dtype", default=None, choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--blocks", type=int, default=20, help="timed blocks (after warm-up)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--attention", default="auto", choices=["auto", "sdpa", "flash_attn"])
    a = ap.parse_args()
    dts = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    gpu = a.device.startswith("cuda")
    dtype = dts[a.dtype or ("bf16" if gpu else "fp32")]
    vdtype = dts[a.vae_dtype or ("fp16" if gpu else "fp32")]
    if not gpu:
        torch.set_num_threads(os.cpu_count() or 1)
    rows, peak, cache_gb = run(a.size, a.mode, a.device, dtype, vdtype, a.blocks, a.warmup, a.attention)
    dev_name = torch.cuda.get_device_name(0) if gpu else f"CPU ({os.cpu_count()} threads)"
    walls = [w for _, w, _ in rows]
    frames = [f for f, _, _ in rows]
    med = statistics.median(walls)
    fps = statistics.median(f / w for f, w, _ in rows)
    split = {k: statistics.median(t[k] for _, _, t in rows) for k in ("denoise", "context", "decode")}
    print(f"\n## bench_engine: {a.size} {a.mode}, DiT {dtype}, VAE {vdtype}, attention {a.attention}, device {dev_name}\n")
    print("| blocks timed | frames/block | median block ms | DiT steps ms | context ms | VAE decode ms | FPS (decode incl.) | peak GPU GiB | KV cache GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {len(rows)} | {statistics.median(frames):.0f} | {med * 1e3:.1f} | {split['denoise'] * 1e3:.1f} | "
          f"{split['context'] * 1e3:.1f} | {split['decode'] * 1e3:.1f} | {fps:.2f} | {peak:.2f} | {cache_gb:.3f} |")


if __name__ == "__main__":
    main()

"""Streaming benchmark: a live-style session of N blocks, per-stage times, FPS, key-to-frame latency,
peak memory and recompiles.

    python benchmarks/bench_stream.py --size tiny --device cpu --blocks 4          # CPU smoke figure
    python benchmarks/bench_stream.py --size full --device cuda --compile          # GPU, bf16, CUDA graphs
    python benchmarks/bench_stream.py --model-dir matrix_game_core/embedded/vizdoom --device cpu

The loop is what the live session does per block: the actions are latched when the block starts
("key press"), :meth:`WorldSession.step` runs the denoising steps, the t=0 context pass and the
streaming VAE decode, then the frames are converted to uint8 and copied to the host (what a
front end sends). Weights are random unless ``--model-dir`` is given (same shapes and kernels, so
the same time as real weights).

Stages (median over the timed blocks, after ``--warmup`` blocks): ``DiT steps`` (denoising
steps), ``context pass``, ``decode``, ``host copy``; on CUDA they come from CUDA events recorded in
the stream (the loop itself never synchronises), on the CPU from ``time.perf_counter``.

Figures on the last line, which is exactly
``steady_fps=X latency_ms=Y peak_mem_gb=Z recompiles=N``:

* ``steady_fps``: video frames per second of wall time over the timed blocks (12 frames a block);
* ``latency_ms``: key press to the first frame it conditions being on the host. A key pressed at
  a uniformly random time waits on average half a block period for the next block to start
  (actions are latched per block), then that block's first frame (latent frame ``s`` sees rows
  ``[4s-12, 4s)``, which include the block's first new rows) arrives with the block's frames:
  ``0.5 * median period + median (block start -> frames on host)``;
* ``peak_mem_gb``: CUDA ``max_memory_allocated`` (GiB); on the CPU the process's peak resident set
  (GiB, includes Python and torch themselves);
* ``recompiles``: graphs dynamo compiled after the warm-up blocks (0 = every timed block replayed
  a compiled graph); 0 without ``--compile``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from matrix_game_core.compile import compile_counters  # noqa: E402
from matrix_game_core.config import preset  # noqa: E402
from matrix_game_core.model import build_model  # noqa: E402
from matrix_game_core.sampling import Conditioning, WorldSession  # noqa: E402
from matrix_game_core.vae import StreamingDecoder, WanVAE  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def randomize_(module: torch.nn.Module, seed: int = 0) -> None:
    """Fill every parameter with N(0, 0.02) (random weights of the real shapes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_((torch.randn(p.shape, generator=g) * 0.02).to(p.dtype))


def build(size: str, mode: str, device: torch.device, dtype: torch.dtype, vae_dtype: torch.dtype,
          fp8: bool = False, model_dir: str = None, attention: str = "auto"):
    """``(dit, vae, video_hw)``: random full/tiny models, or the DiT + VAE of ``model_dir``.

    ``model_dir``: a folder with ``dit/model.safetensors`` + ``dit/config.json`` +
    ``vae.safetensors`` (the embedded-model layout), or a DiT folder (``model.safetensors`` +
    ``config.json``) with ``vae.safetensors`` in it or beside it. ``config.json`` may carry
    ``"video_size": [H, W]`` (default 352x640).
    """
    from matrix_game_core.ops import cast_ops, quantize_linear_weights
    ops = cast_ops if fp8 else None
    hw = (352, 640)
    if model_dir:
        from matrix_game_core.checkpoints import load_dit
        from matrix_game_core.vae import load_wan_vae
        dit_dir = os.path.join(model_dir, "dit") if os.path.isdir(os.path.join(model_dir, "dit")) else model_dir
        vae_file = next((p for p in (os.path.join(model_dir, "vae.safetensors"),
                                     os.path.join(dit_dir, "vae.safetensors"),
                                     os.path.join(os.path.dirname(os.path.abspath(dit_dir)), "vae.safetensors"))
                         if os.path.isfile(p)), None)
        if vae_file is None:
            raise SystemExit(f"no vae.safetensors in or beside {model_dir}")
        conf = {}
        if os.path.isfile(os.path.join(dit_dir, "config.json")):
            with open(os.path.join(dit_dir, "config.json"), "r", encoding="utf-8") as f:
                conf = json.load(f)
        hw = tuple(conf.get("video_size", hw))
        dit = load_dit(os.path.join(dit_dir, "model.safetensors"), mode=conf.get("mode", mode), device=device,
                       dtype=dtype, operations=ops, attention_backend=attention)
        vae = load_wan_vae(vae_file, device=device, dtype=vae_dtype, decoder_only=True)
    else:
        cfg = preset(mode if size == "full" else f"tiny_{mode}")
        with torch.device(device):
            dit = build_model(cfg, dtype=dtype, operations=ops, attention_backend=attention)
            vae = WanVAE(dim=96 if size == "full" else 8).to(vae_dtype).eval().requires_grad_(False)
        vae.encoder = vae.conv1 = None          # the session only decodes (issue 12: encoders off the GPU)
        randomize_(dit)
        randomize_(vae, 1)
    if fp8:
        quantize_linear_weights(dit)
    return dit, vae, hw


def _host_copy(frames: torch.Tensor) -> torch.Tensor:
    """What a front end ships: ``[B,3,T,H,W]`` in [-1,1] -> uint8 ``[T,H,W,3]`` on the host."""
    u8 = ((frames[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0)
    return u8.cpu()


def run(a) -> dict:
    dev = torch.device(a.device)
    gpu = dev.type == "cuda"
    dtype = DTYPES[a.dtype or ("bf16" if gpu else "fp32")]
    vdtype = DTYPES[a.vae_dtype or ("fp16" if gpu else "fp32")]
    dit, vae, (H, W) = build(a.size, a.mode, dev, dtype, vdtype, a.fp8, a.model_dir, a.attention)
    if a.video:
        H, W = (int(v) for v in a.video.lower().split("x"))
    cfg = dit.cfg
    n_blocks = a.blocks + a.warmup
    cond = Conditioning(torch.randn(1, 20, 3 * n_blocks, H // 8, W // 8, device=dev),
                        torch.randn(1, 257, cfg.img_dim, device=dev))
    if gpu:
        torch.cuda.reset_peak_memory_stats(dev)
    session = WorldSession(dit, cond, decoder=StreamingDecoder(vae), seed=0,
                           compile=(a.compile_backend or True) if a.compile else False)
    K = cfg.keyboard_dim
    rows, starts = [], []
    counters0 = None
    for b in range(n_blocks):
        if b == a.warmup:
            counters0 = compile_counters()
        r = session.rows_for_block(b)
        kb = torch.zeros(r, K)
        kb[:, b % K] = 1                                           # a different key each block
        ms = torch.full((r, 2), 0.1 * ((b % 3) - 1)) if cfg.has_mouse else None
        t0 = time.perf_counter()
        starts.append(t0)
        res = session.step(kb, ms)
        frames = _host_copy(res.frames)                             # synchronous: frames are on the host
        t1 = time.perf_counter()
        res.timings.mark("host copy")
        if b >= a.warmup:
            rows.append({"frames": frames.shape[0], "to_host": t1 - t0, "timings": res.timings})
    starts.append(time.perf_counter())
    counters1 = compile_counters()
    periods = [b - a_ for a_, b in zip(starts[a.warmup:], starts[a.warmup + 1:])]
    frames = sum(r["frames"] for r in rows)
    peak = (torch.cuda.max_memory_allocated(dev) if gpu else
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2 ** 30
    stage = {k: statistics.median(r["timings"][k] for r in rows)
             for k in ("denoise", "context", "decode", "host copy")}
    period = statistics.median(periods)
    return {
        "device": torch.cuda.get_device_name(dev) if gpu else f"CPU ({torch.get_num_threads()} threads)",
        "dtype": str(dtype).replace("torch.", "") + (" + fp8 e4m3 weights" if a.fp8 else ""),
        "vae_dtype": str(vdtype).replace("torch.", ""), "frames_per_block": statistics.median(r["frames"] for r in rows),
        "stage_ms": {k: v * 1e3 for k, v in stage.items()},
        "period_ms": period * 1e3,
        "steady_fps": frames / sum(periods),
        "latency_ms": (0.5 * period + statistics.median(r["to_host"] for r in rows)) * 1e3,
        "peak_mem_gb": peak,
        "kv_cache_gb": session.cache.nbytes() / 2 ** 30,
        "recompiles": counters1["graphs"] - counters0["graphs"],
        "graph_breaks": counters1["graph_breaks"],
        "graphs": counters1["graphs"],
        "cudagraph_skips": counters1["cudagraph_skips"],
        "video": f"{W}x{H}",
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["full", "tiny"], default="full" if torch.cuda.is_available() else "tiny")
    ap.add_argument("--mode", default="universal", choices=["universal", "gta_drive", "templerun"])
    ap.add_argument("--model-dir", default=None, help="DiT (+ vae.safetensors) folder instead of random weights")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="DiT compute dtype (bf16 GPU / fp32 CPU)")
    ap.add_argument("--vae-dtype", default=None, choices=sorted(DTYPES), help="decoder dtype (fp16 GPU / fp32 CPU)")
    ap.add_argument("--video", default=None, metavar="HxW",
                    help="frame size (multiple of 16); default 352x640, or the model dir's video_size")
    ap.add_argument("--fp8", action="store_true", help="DiT block Linear weights stored in float8_e4m3fn")
    ap.add_argument("--compile", action="store_true", help="torch.compile the block step and the decoder")
    ap.add_argument("--compile-backend", default=None, help="dynamo backend (default inductor)")
    ap.add_argument("--blocks", type=int, default=8, help="timed blocks (after warm-up)")
    ap.add_argument("--warmup", type=int, default=2, help="blocks before timing (compiles happen here)")
    ap.add_argument("--attention", default="auto", choices=["auto", "sdpa", "flash_attn"])
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = ap.parse_args(argv)
    if a.blocks < 1 or a.warmup < 1:
        ap.error("--blocks and --warmup must be >= 1")
    res = run(a)
    what = a.model_dir or f"{a.size} {a.mode}"
    print(f"\n## bench_stream: {what}, {res['video']}, DiT {res['dtype']}, VAE {res['vae_dtype']}, "
          f"compile {'on' if a.compile else 'off'}, {res['device']}\n")
    print("| stage | median ms / block |")
    print("|---|---|")
    names = {"denoise": "DiT steps", "context": "context pass", "decode": "decode", "host copy": "host copy"}
    for k, v in res["stage_ms"].items():
        print(f"| {names[k]} | {v:.1f} |")
    print(f"| block period (wall) | {res['period_ms']:.1f} |")
    print(f"\nframes/block {res['frames_per_block']:.0f}, KV cache {res['kv_cache_gb']:.3f} GiB, graphs {res['graphs']}, "
          f"graph breaks {res['graph_breaks']}, cudagraph skips {res['cudagraph_skips']}")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
    print(f"steady_fps={res['steady_fps']:.2f} latency_ms={res['latency_ms']:.1f} "
          f"peak_mem_gb={res['peak_mem_gb']:.2f} recompiles={res['recompiles']}")
    return res


if __name__ == "__main__":
    main()

"""Peak GPU memory of a streaming session at 352x640, computed (no GPU needed): weights + KV caches
+ activations, for bf16 and fp8 (e4m3) DiT weights.

    python benchmarks/memory_table.py            # prints the markdown table of benchmarks/README.md

* weights: the DiT's parameters at their stored dtype (bf16; fp8 = the block Linear weights at 1
  byte + their float32 scales) and the decoder half of the Wan-2.1 VAE (``conv2`` + ``decoder``,
  73.3 M parameters) in fp16. The image encoder and the VAE encoder are not resident: they are
  needed once, for the conditioning, and go back to the CPU (issue 12).
* KV caches: :meth:`ModelCache.nbytes` of a session (self-attention, mouse and keyboard caches of
  every layer, cross-attention K/V of the 257 image tokens), bf16.
* activations: the largest amount of memory live at once during one DiT block step and during
  one latent frame of the streaming decode, measured by running the full-size modules on the
  ``meta`` device under a dispatch mode that counts the bytes of every tensor each op creates
  until the last view of its storage dies (what PyTorch's caching allocator must hold at least;
  allocator rounding and fragmentation come on top on a real GPU: ``device_run.sh`` measures).
  Attention is counted as a fused kernel (FlashAttention / memory-efficient SDPA, as on the GPU):
  its output plus a float32 log-sum-exp, never the ``[S_q, S_k]`` score matrix that the meta
  device's math fallback would build. The decoder's feature cache (32 slots of 2 frames) is
  counted with the activations.
"""
from __future__ import annotations

import contextlib
import os
import sys
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from matrix_game_core.config import preset  # noqa: E402
from matrix_game_core.model import action_window, build_model  # noqa: E402
from matrix_game_core.ops import cast_ops, quantize_linear_weights  # noqa: E402
from matrix_game_core.vae import StreamingDecoder, WanVAE  # noqa: E402

GB = 2 ** 30


class LiveBytes(TorchDispatchMode):
    """Counts bytes of storages created by ops while any tensor viewing them is alive; storages of
    ``exclude`` (weights, caches, inputs: counted elsewhere) are ignored, also when an in-place op
    returns them."""

    def __init__(self, exclude=()):
        super().__init__()
        self.skip = {t.untyped_storage()._cdata for t in exclude}
        self.live = {}          # storage key -> [nbytes, live tensor count]
        self.now = 0
        self.peak = 0

    def _track(self, t):
        if not isinstance(t, torch.Tensor):
            return
        key = t.untyped_storage()._cdata
        if key in self.skip:
            return
        ent = self.live.get(key)
        if ent is None:
            ent = self.live[key] = [t.untyped_storage().nbytes(), 0]
            self.now += ent[0]
            self.peak = max(self.peak, self.now)
        ent[1] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key):
        ent = self.live.get(key)
        if ent is not None:
            ent[1] -= 1
            if ent[1] == 0:
                self.now -= ent[0]
                del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            self._track(t)
        return out


@contextlib.contextmanager
def fused_attention():
    """Replace SDPA by its fused kernels' allocations: output ``[..., S_q, D_v]`` + float32
    log-sum-exp ``[..., S_q]`` (no score matrix)."""
    orig = torch.nn.functional.scaled_dot_product_attention

    def sdpa(q, k, v, attn_mask=None, **kw):
        q.new_empty(q.shape[:-1], dtype=torch.float32)                  # logsumexp (freed at once)
        return q.new_empty(q.shape[:-1] + (v.shape[-1],))

    torch.nn.functional.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = orig


def _param_bytes(m: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))


@torch.no_grad()
def dit_figures(mode: str = "universal", fp8: bool = False, h: int = 44, w: int = 80):
    """``(weight bytes, KV-cache bytes, peak activation bytes of one block step)``."""
    cfg = preset(mode)
    dev = torch.device("meta")
    m = build_model(cfg, device=dev, dtype=torch.bfloat16, operations=cast_ops if fp8 else None)
    if fp8:
        quantize_linear_weights(m)
    cache = m.new_cache(1, (h // 2) * (w // 2))
    m.set_context(cache, torch.empty(1, 257, cfg.img_dim, device=dev))
    x = torch.empty(1, 16, 3, h, w, device=dev, dtype=torch.bfloat16)
    cc = torch.empty(1, 20, 3, h, w, device=dev, dtype=torch.bfloat16)
    rows = torch.empty(1, 1 + 4 * 8, cfg.keyboard_dim, device=dev, dtype=torch.bfloat16)
    mrows = torch.empty(1, 1 + 4 * 8, 2, device=dev, dtype=torch.bfloat16) if cfg.has_mouse else None
    start = 6                                   # a block with a full window (6 frames)
    plan = m.plan_block(cache, start, 3, (h, w), dev)
    kb = action_window(rows, start, 3)
    ms = None if mrows is None else action_window(mrows, start, 3)
    t = torch.empty(1, 3, device=dev)
    held = [t for lc in cache.layers for t in vars(lc).values() if isinstance(t, torch.Tensor)]
    with fused_attention(), LiveBytes(exclude=held) as lb:
        m.step_forward(x, t, cc, kb, ms, cache.layers, plan.rope, plan.arope, plan.slots, plan.valid, 3)
    return _param_bytes(m), cache.nbytes(), lb.peak


@torch.no_grad()
def decoder_figures(h: int = 44, w: int = 80, dtype=torch.float16):
    """``(decoder weight bytes, peak bytes of one steady-state latent frame incl. the feature cache)``."""
    dev = torch.device("meta")
    vae = WanVAE(dim=96).to(device=dev, dtype=dtype)
    vae.encoder = vae.conv1 = None
    dec = StreamingDecoder(vae)
    z = torch.empty(1, 16, 3, h, w, device=dev, dtype=dtype)
    with fused_attention(), LiveBytes() as lb:
        dec.decode(z)                                # block 0 fills the feature cache
        dec.decode(z)                                # a steady-state block
    return _param_bytes(vae), lb.peak


def table() -> str:
    dw, dpeak = decoder_figures()
    lines = ["| DiT weights | weights GiB (DiT + VAE decoder fp16) | KV caches GiB (bf16) | activations GiB "
             "(DiT step / decode) | peak GiB |", "|---|---|---|---|---|"]
    for fp8 in (False, True):
        w, c, a = dit_figures(fp8=fp8)
        peak = w + dw + c + max(a, dpeak)
        lines.append(f"| {'fp8 e4m3 (blocks) + bf16' if fp8 else 'bf16'} | {w / GB:.2f} + {dw / GB:.2f} | {c / GB:.2f} | "
                     f"{a / GB:.2f} / {dpeak / GB:.2f} | **{peak / GB:.2f}** |")
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n## Peak GPU memory at 352x640, universal (computed, benchmarks/memory_table.py)\n")
    print(table())

"""``torch.compile`` of the block step and of the streaming decoder, behind one switch.

* The DiT block step (:meth:`~.model.CausalWanModel.step_forward`) is compiled with
  ``fullgraph=True`` (a graph break is an error) and ``dynamic=False``. With the fixed action
  window and the device-resident RoPE / slot tensors of :class:`~.model.BlockPlan`, the only
  Python values it specialises on are shapes and the number of valid cache slots, which is
  constant once the local window is full: one graph for each distinct ``valid`` of the warm-up
  blocks (2 for the official window of 6 frames), none after. On CUDA the mode is
  ``"reduce-overhead"`` (CUDA-graph replay); the KV caches it writes in place are marked as
  static addresses so the graphs may mutate them.
* The streaming decoder compiles its per-latent-frame step once the feature cache holds only
  tensors (from the third latent frame on; see :mod:`.vae_stream`), without CUDA graphs, as the
  official ``torch.compile(mode="max-autotune-no-cudagraphs")`` of the decoder.

Compiled functions are kept per model / VAE (weakly), so every session of one model shares them.
"""
from __future__ import annotations

import weakref
from typing import Callable, Optional

import torch

_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def default_mode(device: torch.device) -> Optional[str]:
    """``"reduce-overhead"`` (CUDA graphs) on CUDA, inductor's default elsewhere."""
    return "reduce-overhead" if torch.device(device).type == "cuda" else None


def compiled_block_step(model, mode: Optional[str] = "auto", backend: str = "inductor") -> Callable:
    """The compiled :meth:`step_forward` of ``model`` (made on first use, then shared).

    Args:
        mode: ``torch.compile`` mode; ``"auto"`` = :func:`default_mode` of the model's device.
        backend: ``"inductor"``; tests of graph breaks / recompiles may use ``"aot_eager"``
            (dynamo's guards and graphs are the same, without code generation).
    """
    if mode == "auto":
        mode = default_mode(next(model.parameters()).device) if backend == "inductor" else None
    per_model = _STEPS.setdefault(model, {})
    fn = per_model.get((mode, backend))
    if fn is None:
        fn = torch.compile(model.step_forward, mode=mode, backend=backend, fullgraph=True, dynamic=False)
        per_model[(mode, backend)] = fn
    return fn


def mark_cache_static(cache) -> None:
    """Mark every KV-cache tensor of a :class:`~.caches.ModelCache` as a static address, so CUDA
    graphs may write it in place (no-op for the CPU backend)."""
    for lc in cache.layers:
        for t in (lc.k, lc.v, lc.mk, lc.mv, lc.kk, lc.kv, lc.ck, lc.cv):
            if t is not None:
                torch._dynamo.mark_static_address(t)


def compile_counters() -> dict:
    """Dynamo's counters as plain numbers: ``graphs`` (graphs compiled so far in this process; a
    recompile after a guard failure adds one), ``graph_breaks`` (total) and ``cudagraph_skips``
    (inductor refused CUDA-graph replay for a graph). Compare two readings: graphs added after
    the warm-up blocks are the recompiles.
    """
    from torch._dynamo.utils import counters
    return {"graphs": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(counters["graph_break"].values())),
            "cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0))}

"""Shared test fixtures: the golden-data root and case discovery.

The golden root defaults to ``../shared/golden`` (beside the project) and is overridden by the
environment variable ``MATRIX_GAME_GOLDEN_DIR``. Case folders are discovered by prefix
(``dit_*``, ``vae_*``, ``pipeline_*``, ``clip_*``); every size comes from the case's own config.
"""
import json
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

def _cpu_threads() -> int:
    """OMP_NUM_THREADS if set, else the cores this process may run on (taskset), at most 2."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(2, n))


torch.set_num_threads(_cpu_threads())


def golden_root() -> str:
    return os.environ.get("MATRIX_GAME_GOLDEN_DIR",
                          os.path.normpath(os.path.join(ROOT, "..", "shared", "golden")))


def golden_cases(prefix: str):
    """Case folders under the golden root whose name starts with ``prefix`` (sorted).

    A missing root is an error, not a skip: parity with the official code is the engine's proof.
    """
    root = golden_root()
    if not os.path.isdir(root):
        raise FileNotFoundError(f"golden root {root!r} not found; set MATRIX_GAME_GOLDEN_DIR")
    return sorted(os.path.join(root, d) for d in os.listdir(root)
                  if d.startswith(prefix) and os.path.isdir(os.path.join(root, d)))


def load_json(path):
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """||ours - ref||_2 / ||ref||_2 in float64."""
    ours = ours.detach().double().cpu()
    ref = ref.detach().double().cpu()
    assert ours.shape == ref.shape, (tuple(ours.shape), tuple(ref.shape))
    return float((ours - ref).norm() / ref.norm().clamp_min(1e-30))


#: The acceptance bound of the engine issue: ||ours - golden|| / ||golden|| <= 1e-4 in fp32.
GOLDEN_TOL = 1e-4

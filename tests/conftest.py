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


#: What a clone without the golden data is told, once per golden test (and once in the summary).
GOLDEN_MISSING = ("golden data not found at {root}: the faithfulness tests compare the engine with outputs "
                  "of the official code stored there. Put the golden data in ../shared/golden (beside the "
                  "repository) or point MATRIX_GAME_GOLDEN_DIR at it; every other test runs without it.")


class MissingGolden(str):
    """The one placeholder case of :func:`golden_cases` when the golden root is missing: a test that
    receives it fails with :data:`GOLDEN_MISSING` before any fixture touches files."""


def golden_cases(prefix: str):
    """Case folders under the golden root whose name starts with ``prefix`` (sorted).

    A missing root is a failure, not a skip (parity with the official code is the engine's proof),
    but not a collection error either: the list is then one :class:`MissingGolden` placeholder, and
    every test that receives it fails with one clear message.
    """
    root = golden_root()
    if not os.path.isdir(root):
        return [MissingGolden(os.path.join(root, prefix + "*"))]
    return sorted(os.path.join(root, d) for d in os.listdir(root)
                  if d.startswith(prefix) and os.path.isdir(os.path.join(root, d)))


def golden_filter(cases, keep):
    """``[c for c in cases if keep(c)]``, keeping the :class:`MissingGolden` placeholder (``keep``
    would have to read files that are not there)."""
    return [c for c in cases if isinstance(c, MissingGolden) or keep(c)]


def _is_golden(item) -> bool:
    if item.get_closest_marker("golden") is not None:
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(isinstance(v, MissingGolden) for v in params.values())


def pytest_configure(config):
    config.addinivalue_line("markers", "golden: compares against the golden data (fails when it is missing)")


def pytest_runtest_setup(item):
    if _is_golden(item) and not os.path.isdir(golden_root()):
        item._golden_missing = True
        pytest.fail(GOLDEN_MISSING.format(root=golden_root()), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if call.when == "setup" and getattr(item, "_golden_missing", False):
        rep.when = "call"          # reported as a failed test (it is one), not as a fixture error


def pytest_terminal_summary(terminalreporter):
    failed = [r for r in terminalreporter.stats.get("failed", []) if "golden data not found" in str(r.longrepr)]
    if failed:
        terminalreporter.write_line(f"{len(failed)} golden tests failed: " + GOLDEN_MISSING.format(root=golden_root()),
                                    red=True)


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


@pytest.fixture
def node_folders(tmp_path):
    """Empty ``matrix_game`` / ``vae`` / ``clip_vision`` / ``input`` folders for the node tests (the
    plain-PyTorch stand-ins of :mod:`nodes.host`), and its progress log cleared; undone afterwards."""
    from nodes import host
    d = {k: tmp_path / k for k in ("matrix_game", "vae", "clip_vision", "input")}
    for p in d.values():
        p.mkdir()
    host.set_folders(**d)
    host.PROGRESS_LOG.clear()
    yield d
    host.set_folders(matrix_game=None, vae=None, clip_vision=None, input=None)

"""Merge recordings made on several machines into one recording folder (a manifest only).

Record on N machines with different seeds (each a folder of shards + ``manifest.json``), copy
the folders under one parent (or keep them on a shared file system), then::

    python -m matrix_game_core.data merge --out ALL PART0 PART1 ...

writes ``ALL/manifest.json`` whose entries point at the parts' files by relative path (nothing is
copied). Shard names get the part's index as prefix (``p0_ep000000``) so they stay unique; the
split of every shard is kept. The parts must agree on what the model sees: format, frame rate,
mouse units, frame size and action layout; their seeds must differ (the same seed records the
same episodes twice).
"""
from __future__ import annotations

import os
from typing import Dict, List, Sequence

from ..errors import MatrixGameError
from .shards import FORMAT, read_manifest, write_manifest

#: Manifest fields every part must share (what a model trained on the merge sees).
SAME = ("fps", "mouse_units", "keyboard", "mouse")


def _frame_size(m: Dict):
    c = m.get("config", {})
    g = c.get("game") or {}
    return (g.get("height"), g.get("width")) if g else tuple(c.get("size") or ())


def merge_recordings(out: str, parts: Sequence[str]) -> Dict:
    """Write ``out/manifest.json`` listing every shard of ``parts``. Returns the manifest.

    Raises:
        MatrixGameError: fewer than two parts, a part without manifest, parts that disagree on
            :data:`SAME` or the frame size, parts recorded with the same seed, or ``out`` inside a part.
    """
    if len(parts) < 2:
        raise MatrixGameError("merge needs at least two recording folders.")
    os.makedirs(out, exist_ok=True)
    ms = [read_manifest(p) for p in parts]
    ref = ms[0]
    seeds = {}
    for p, m in zip(parts, ms):
        for k in SAME:
            if m.get(k) != ref.get(k):
                raise MatrixGameError(f"{p}/manifest.json has {k} {m.get(k)!r} but {parts[0]} has {ref.get(k)!r}; "
                                      f"merge only recordings made with the same options (except --seed).")
        if _frame_size(m) != _frame_size(ref):
            raise MatrixGameError(f"{p} holds {_frame_size(m)} frames but {parts[0]} {_frame_size(ref)}; record "
                                  f"every part with the same --size.")
        seed = (m.get("config") or {}).get("seed")
        if seed is not None and seed in seeds:
            raise MatrixGameError(f"{p} and {seeds[seed]} were recorded with the same --seed {seed} (the same "
                                  f"episodes twice); record each machine with its own seed.")
        seeds[seed] = p
        if os.path.abspath(out) == os.path.abspath(p):
            raise MatrixGameError(f"--out {out} is one of the parts; merge into a new folder.")
    shards: List[Dict] = []
    for i, (p, m) in enumerate(zip(parts, ms)):
        rel = os.path.relpath(os.path.abspath(p), os.path.abspath(out))
        for e in m["shards"]:
            e = dict(e, name=f"p{i}_{e['name']}", part=i)
            for k in ("meta", "video"):
                if k in e:
                    e[k] = os.path.join(rel, e[k])
            shards.append(e)
    merged = {k: v for k, v in ref.items() if k not in ("shards", "total_frames", "stats", "config")}
    merged.update(format=FORMAT, shards=shards, total_frames=sum(e["frames"] for e in shards),
                  config=dict(ref.get("config") or {}, merged_from=[os.path.abspath(p) for p in parts]),
                  parts=[{"folder": os.path.abspath(p), "shards": len(m["shards"]), "frames": m["total_frames"],
                          "seed": (m.get("config") or {}).get("seed")} for p, m in zip(parts, ms)])
    write_manifest(out, merged)
    return merged

"""``python -m matrix_game_core.train``: train a small Matrix-Game world model from recordings.

One command, end to end (each stage resumes from its checkpoint; finished stages are skipped)::

    python -m matrix_game_core.train all --data REC --out RUN [--preset small|smoke|embedded]
        [--device auto|cpu|cuda] [--bf16] [--workers N]
        [--vae-steps N] [--dit-steps N] [--set dit.batch=32 --set vae.lr=1e-4 ...]
        [--init-from MODEL_DIR]   # warm start from shipped weights (train/warmstart.py)

Stages (also runnable one by one): ``vae`` (stage 1) -> ``decoder`` (stage 1b: decoder fine-tune,
encoder frozen; skipped at ``decoder.steps`` 0) -> ``latents`` (encode recordings) ->
``dit`` (stage 2) -> ``distill`` (stage 3: Self-Forcing/DMD few-step student) -> ``export``
(``RUN/export``: DiT and student safetensors + config.json, VAE safetensors, Freedoom NOTICE; an
unfinished dit stage is exported from its newest checkpoint's EMA weights, saying so).

Data parallel on N GPUs (or N CPU processes, gloo), unchanged otherwise::

    torchrun --nproc_per_node N -m matrix_game_core.train all --data REC --out RUN

The run's configuration is saved in ``RUN/train_config.json`` on first use and
reused on resume; ``--set``/``--*-steps`` change it (e.g. to extend training).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import MatrixGameError
from .config import TrainConfig


def _apply_set(cfg: TrainConfig, items) -> TrainConfig:
    d = cfg.to_dict()
    for it in items or []:
        if "=" not in it:
            raise MatrixGameError(f"--set {it!r}: use KEY=VALUE, e.g. dit.batch=16")
        k, v = it.split("=", 1)
        try:
            val = json.loads(v)
        except ValueError:
            val = v
        node = d
        parts = k.split(".")
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], dict):
                raise MatrixGameError(f"--set {k}: unknown section {p!r} (vae, decoder, dit, distill or top "
                                      f"level).")
            node = node[p]
        if parts[-1] not in node:
            raise MatrixGameError(f"--set {k}: unknown field {parts[-1]!r}; known: {', '.join(node)}")
        node[parts[-1]] = val
    return TrainConfig.from_dict(d)


def load_run_config(out: str, preset: str, overrides, vae_steps=None, dit_steps=None,
                    workers=None, distill_steps=None, save: bool = True) -> TrainConfig:
    """The run's configuration: ``RUN/train_config.json`` if present (else the preset), with the
    command's overrides applied, saved back (by rank 0 only: ``save``)."""
    p = os.path.join(out, "train_config.json")
    if os.path.isfile(p):
        try:
            cfg = TrainConfig.load(p)
        except (ValueError, TypeError) as e:
            raise MatrixGameError(f"{p} is not a training configuration of this recipe ({e}); use another --out "
                                  f"folder.") from e
    else:
        cfg = TrainConfig.preset(preset)
    cfg = _apply_set(cfg, overrides)
    if vae_steps is not None:
        cfg.vae.steps = vae_steps
    if dit_steps is not None:
        cfg.dit.steps = dit_steps
    if distill_steps is not None:
        cfg.distill.steps = distill_steps
    if workers is not None:
        cfg.num_workers = workers
    if save:
        os.makedirs(out, exist_ok=True)
        cfg.save(p + ".tmp")
        os.replace(p + ".tmp", p)
    return cfg


def run_stages(stages, data: str, out: str, cfg: TrainConfig, device_name: str = "auto", bf16: bool = False,
               echo: bool = True, dist=None, teacher=None, student_init=None) -> dict:
    """Run the named stages in order; returns paths of what was written.

    ``dist``: a :class:`~.distributed.Dist` (data parallel under torchrun); None: one process on
    ``device_name``."""
    import torch

    from .common import pick_device
    from .distill import train_distill
    from .distributed import Dist
    from .dit import train_dit
    from .export import export_run
    from .latents import encode_recording
    from .vae import train_vae

    dist = dist or Dist(device=pick_device(device_name))
    dev = dist.device
    res = {}
    if "vae" in stages:
        res["vae"] = train_vae(data, out, cfg, dev, bf16, echo, dist=dist)
    if "decoder" in stages and cfg.decoder.steps > 0:
        from .decoder import train_decoder
        res["decoder"] = train_decoder(data, out, cfg, dev, bf16, echo, dist=dist)
    if "latents" in stages:
        from ..vae import load_wan_vae
        vp = os.path.join(out, "vae", "vae.safetensors")
        if not os.path.isfile(vp):
            raise MatrixGameError(f"{vp} is missing; train the VAE first (python -m matrix_game_core.train vae "
                                  f"--data {data} --out {out}).")
        vae = load_wan_vae(vp, device=dev, dtype=torch.float32)
        res["latents"] = encode_recording(vae, vp, data, os.path.join(out, "latents"), cfg.dit.clip_latents,
                                          cfg.dit.clip_stride, echo=echo and dist.is_main, dist=dist,
                                          clip_encoding=cfg.dit.clip_encoding, cond_latents=cfg.dit.cond_latents,
                                          max_shards=cfg.dit.max_shards)
    if "dit" in stages:
        res["dit"] = train_dit(out, cfg, dev, bf16, echo, dist=dist)
    if "distill" in stages:
        res["distill"] = train_distill(out, cfg, dev, bf16, echo, dist=dist, teacher=teacher,
                                         student_init=student_init)
    if "export" in stages:
        if dist.is_main:
            from .common import JsonlLog
            logs = {s: JsonlLog(os.path.join(out, s, "log.jsonl"), echo=False).read()
                    for s in ("vae", "decoder", "dit", "distill")}
            extra = {"train_config": cfg.to_dict(),
                     "final": {s: (l[-1] if l else None) for s, l in logs.items()}}
            res["export"] = export_run(out, data, extra, train_config=cfg, echo=echo)
        dist.barrier()
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m matrix_game_core.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=("all", "vae", "decoder", "latents", "dit", "distill", "export"))
    p.add_argument("--data", required=True, help="recording folder (python -m matrix_game_core.data record)")
    p.add_argument("--out", required=True, help="run folder (created; resumed if it exists)")
    p.add_argument("--preset", default="small", choices=("small", "smoke", "embedded"))
    p.add_argument("--device", default="auto")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers for the VAE stage")
    p.add_argument("--vae-steps", type=int, default=None)
    p.add_argument("--dit-steps", type=int, default=None)
    p.add_argument("--distill-steps", type=int, default=None)
    p.add_argument("--teacher", default=None,
                   help="distill: the teacher DiT (model.safetensors or its folder; default RUN/dit/model.safetensors)")
    p.add_argument("--student-init", default=None, metavar="DIT",
                   help="distill, new run only: start the student from this DiT (model.safetensors or its folder, the "
                        "teacher's architecture; e.g. an earlier student) instead of the teacher")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                   help="warm start a new run folder from an installed model (e.g. matrix_game_core/embedded/vizdoom) "
                        "or a run's export/: its VAE counts as trained, the DiT trains on from its weights "
                        "(train/warmstart.py)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    from .distributed import setup, teardown
    dist = None
    try:
        dist = setup(a.device)
        # rank 0 settles the configuration first; the others read what it saved
        cfg = load_run_config(a.out, a.preset, a.set, a.vae_steps, a.dit_steps, a.workers, a.distill_steps,
                              save=dist.is_main) if dist.is_main else None
        dist.barrier()
        if not dist.is_main:
            cfg = load_run_config(a.out, a.preset, [], save=False)
        if a.init_from:
            if dist.is_main:
                from .warmstart import warm_start
                ws = warm_start(a.init_from, a.out, cfg)
                if not a.quiet:
                    print(f"warm start from {ws['source']} (DiT {ws.get('source_dit_steps') or '?'} steps); "
                          f"the dit stage trains {cfg.dit.steps} more steps from its weights.", flush=True)
            dist.barrier()
        stages = (["vae", "decoder", "latents", "dit", "distill", "export"] if a.stage == "all"
                  else [a.stage])
        res = run_stages(stages, a.data, a.out, cfg, a.device, a.bf16, echo=not a.quiet, dist=dist,
                         teacher=a.teacher, student_init=a.student_init)
        if dist.is_main:
            print(json.dumps({k: (v if isinstance(v, str) else "ok") for k, v in res.items()}))
    except MatrixGameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

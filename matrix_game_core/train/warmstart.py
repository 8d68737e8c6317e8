"""Warm start: a new run folder seeded from an installed or exported model, so that training goes on
from shipped weights when the run folder that made them is gone.

    python -m matrix_game_core.train latents --data REC --out RUN --preset embedded \\
        --init-from matrix_game_core/embedded/vizdoom --dit-steps 5000 --set dit.lr=3e-5 --set dit.warmup=200
    python -m matrix_game_core.train dit --data REC --out RUN

The source is a folder with ``vae.safetensors`` and ``dit/model.safetensors`` (+ ``dit/config.json``):
the pack's installed embedded model (``matrix_game_core/embedded/vizdoom``) or a run's ``export/``.
Into a run folder with no training state yet, :func:`warm_start` writes

* ``vae/vae.safetensors`` (the source VAE) and a ``vae/ckpt.pt`` at step ``vae.steps``: stage 1 counts
  as finished and is not retrained;
* with ``decoder.steps`` > 0, the same for stage 1b (``decoder/``; the source VAE already holds its
  fine-tuned decoder, and its encoder is stage 1's, so the latents are unchanged);
* ``dit/ckpt.pt`` at **step 0** whose weights *and* EMA are the source DiT's, with a fresh optimizer:
  the dit stage then trains ``dit.steps`` steps on its own warm-up and cosine schedule from those
  weights (pass a lower ``dit.lr`` for a fine-tune);
* ``warm_start.json``: the source, and the source's ``metrics.json`` ``train`` figures when it has
  them (``embedded.build`` adds them to the card: "DiT 50,000 + 5,000 warm-start steps").

The weights are loaded in float32 (a float16 export loses nothing more). The ``latents`` stage still
runs: it encodes the recording with the copied VAE. Running the same command again resumes the run
(an existing ``warm_start.json`` of the same source is left as it is).
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Dict

import torch

from ..errors import MatrixGameError
from .common import EMA, restore_model, save_checkpoint
from .config import TrainConfig

#: What warm_start writes into the run folder (relative paths).
STATE_FILES = ("vae/ckpt.pt", "vae/vae.safetensors", "decoder/ckpt.pt", "dit/ckpt.pt", "dit/model.safetensors")


def _source_files(src: str) -> Dict[str, str]:
    root = src
    if os.path.isfile(os.path.join(src, "export", "dit", "model.safetensors")):
        root = os.path.join(src, "export")
    files = {"vae": os.path.join(root, "vae.safetensors"), "dit": os.path.join(root, "dit", "model.safetensors")}
    missing = [p for p in files.values() if not os.path.isfile(p)]
    if missing:
        raise MatrixGameError(f"--init-from {src}: {', '.join(missing)} missing; give an installed model folder "
                              f"(e.g. matrix_game_core/embedded/vizdoom) or a run's export/ folder.")
    files["metrics"] = os.path.join(root, "metrics.json")
    return files


def warm_start(src: str, run: str, cfg: TrainConfig) -> Dict:
    """Seed ``run`` from the model in ``src`` (module docstring). Returns the ``warm_start.json`` dict.

    Raises:
        MatrixGameError: ``src`` lacks the files; ``run`` already holds training state of its own (a
            run started otherwise, or warm-started from another source); the source's VAE or DiT does
            not fit ``cfg`` (another preset or model size: the message names the mismatch).
    """
    from ..checkpoints import load_dit
    from ..vae import load_wan_vae
    from .decoder import decoder_parameters
    from .dit import build_dit, build_optimizer
    from .vae import build_vae

    files = _source_files(src)
    marker = os.path.join(run, "warm_start.json")
    if os.path.isfile(marker):
        with open(marker, "r", encoding="utf-8") as f:
            done = json.load(f)
        if os.path.abspath(done.get("source", "")) != os.path.abspath(src):
            raise MatrixGameError(f"{run} was warm-started from {done.get('source')}, not {src}; use a new --out "
                                  f"folder.")
        return done                                  # resuming: the run's own checkpoints take over
    have = [p for p in STATE_FILES if os.path.isfile(os.path.join(run, p))]
    if have:
        raise MatrixGameError(f"{run} already holds training state ({', '.join(have)}); --init-from seeds a new "
                              f"run folder only: use a new --out folder (or drop --init-from to resume it).")

    # check everything before writing anything
    vae_src = load_wan_vae(files["vae"], device="cpu", dtype=torch.float32)
    vae = build_vae(cfg.vae.dim)
    restore_model(vae, vae_src.state_dict(), files["vae"], f"VAE (this run's vae.dim is {cfg.vae.dim})")
    dit_src = load_dit(files["dit"], mode="universal", device="cpu", dtype=torch.float32)
    mcfg = cfg.dit.model_config()
    dit = build_dit(mcfg)
    restore_model(dit, dit_src.state_dict(), files["dit"],
                  f"DiT (this run: dim {mcfg.dim}, {mcfg.num_layers} layers)")
    src_train = None
    if os.path.isfile(files["metrics"]):
        with open(files["metrics"], "r", encoding="utf-8") as f:
            src_train = json.load(f).get("train")

    def stage_ckpt(stage: str, steps: int) -> None:
        # a fresh optimizer over what the stage trains (train/vae.py: all of the VAE; decoder.py: the decoder)
        opt = torch.optim.AdamW(vae.parameters() if stage == "vae" else decoder_parameters(vae), lr=1e-4)
        save_checkpoint(os.path.join(run, stage, "ckpt.pt"), model=vae.state_dict(), optimizer=opt.state_dict(),
                        step=int(steps), world=1, warm_start=os.path.abspath(src))

    os.makedirs(os.path.join(run, "vae"), exist_ok=True)
    shutil.copyfile(files["vae"], os.path.join(run, "vae", "vae.safetensors"))
    stage_ckpt("vae", cfg.vae.steps)
    if cfg.decoder.steps > 0:
        os.makedirs(os.path.join(run, "decoder"), exist_ok=True)
        shutil.copyfile(files["vae"], os.path.join(run, "decoder", "vae.safetensors"))
        with open(os.path.join(run, "decoder", "vae.json"), "w", encoding="utf-8") as f:
            json.dump({"step": int((src_train or {}).get("decoder_steps") or cfg.decoder.steps)}, f)
        stage_ckpt("decoder", cfg.decoder.steps)
    opt = build_optimizer(dit, cfg.dit.lr, cfg.dit.weight_decay, cfg.dit.action_lr_mult)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    # the latents are encoded later, with the VAE copied above: record its hash as theirs will be
    from .latents import file_sha256
    save_checkpoint(os.path.join(run, "dit", "ckpt.pt"), model=dit.state_dict(), ema=EMA(dit, 0.0).state_dict(),
                    optimizer=opt.state_dict(), generator=gen.get_state(), step=0,
                    vae_sha256=file_sha256(os.path.join(run, "vae", "vae.safetensors")), world=1,
                    warm_start=os.path.abspath(src))
    info = {"source": os.path.abspath(src), "source_train": src_train,
            "source_dit_steps": (src_train or {}).get("dit_steps")}
    with open(marker + ".tmp", "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    os.replace(marker + ".tmp", marker)
    return info

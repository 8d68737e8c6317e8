"""Package a trained run for inference, and load it back.

``RUN/export/`` holds everything the engine needs, in its own formats, plus the data notice::

    export/dit/model.safetensors    # official DiT format (model.-prefixed keys), EMA weights
    export/dit/config.json          # ModelConfig (incl. denoising_step_list); load_dit reads it;
                                    # plus "video_size" [H, W] trained at, "image_encoder": null
    export/vae.safetensors          # Wan2.1_VAE keys at the trained width (load_wan_vae infers it)
    export/student/                 # the distilled few-step student (same files), after `train distill`
    export/NOTICE.md                # Freedoom BSD-3 notice (trained on Freedoom imagery)
    export/info.json                # provenance: data manifest summary, configs, final losses

Use: ``components = load_trained("RUN")`` -> :class:`~matrix_game_core.pipeline.Components`
(``image_encoder=None``: the model is image-encoder free; ``encode_conditioning(vae, None, ...)``
gives the zero image tokens it was trained with).
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Dict, Optional

import torch

from ..errors import MatrixGameError

FREEDOOM_NOTICE = """\
This model was trained on frames rendered by ViZDoom from Freedoom: Phase 2 (freedoom2.wad),
which carries the following license:

Copyright (c) 2001-2024 Contributors to the Freedoom project. All rights reserved.

Redistribution and use in source and binary forms, with or without modification, are permitted
provided that the following conditions are met:

  * Redistributions of source code must retain the above copyright notice, this list of
    conditions and the following disclaimer.
  * Redistributions in binary form must reproduce the above copyright notice, this list of
    conditions and the following disclaimer in the documentation and/or other materials provided
    with the distribution.
  * Neither the name of the Freedoom project nor the names of its contributors may be used to
    endorse or promote products derived from this software without specific prior written
    permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR
IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND
FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT OWNER OR
CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,
DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER
IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF
THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.

For a list of contributors to the Freedoom project, see https://freedoom.github.io/ (CREDITS).
"""


def _model_config_json(src_cfg: str, run: str) -> Dict:
    """A trained DiT's ``config.json`` plus what front ends need (ignored by ``ModelConfig.from_dict``):
    the frame size the model was trained at, and that it takes zero image tokens instead of CLIP
    features."""
    with open(src_cfg, "r", encoding="utf-8") as f:
        cfg = json.load(f)
    meta_p = os.path.join(run, "latents", "meta.json")
    if os.path.isfile(meta_p):
        with open(meta_p, "r", encoding="utf-8") as f:
            hw = json.load(f).get("latent_hw") or []
        if len(hw) == 2:
            cfg["video_size"] = [8 * int(hw[0]), 8 * int(hw[1])]
    cfg["image_encoder"] = None
    cfg["vae_file"] = "../vae.safetensors"
    return cfg


def _copy_dit(src_dir: str, dst_dir: str, run: str) -> None:
    os.makedirs(dst_dir, exist_ok=True)
    shutil.copyfile(os.path.join(src_dir, "model.safetensors"), os.path.join(dst_dir, "model.safetensors"))
    with open(os.path.join(dst_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(_model_config_json(os.path.join(src_dir, "config.json"), run), f, indent=1)


def dit_from_checkpoint(run: str, train_config) -> Optional[int]:
    """The EMA weights of an unfinished dit stage: ``RUN/dit/ckpt.pt`` (read without pickle
    execution) -> ``RUN/dit/partial/{model.safetensors, config.json}``. Returns the checkpoint's
    step, or None when there is no checkpoint."""
    from .common import read_checkpoint
    from .dit import ema_model, write_dit

    ck = os.path.join(run, "dit", "ckpt.pt")
    st = read_checkpoint(ck)
    if st is None:
        return None
    mcfg = train_config.dit.model_config()
    try:
        m = ema_model(mcfg, st["ema"])
    except (KeyError, RuntimeError) as e:
        raise MatrixGameError(f"{ck} does not match this run's dit configuration ({type(e).__name__}); export "
                              f"with the run's own train_config.json.") from e
    write_dit(m, os.path.join(run, "dit", "partial"))
    return int(st["step"])


def export_run(run: str, data: Optional[str] = None, extra: Optional[Dict] = None, train_config=None,
               echo: bool = True) -> str:
    """Assemble ``RUN/export`` from the VAE (``RUN/decoder/vae.safetensors``, the decoder fine-tune,
    when present, else stage 1's ``RUN/vae/vae.safetensors``), ``RUN/dit/*`` and, when the
    distillation stage has finished, ``RUN/distill/*`` (as ``export/student``). Returns the folder.

    An unfinished dit stage (no ``model.safetensors`` yet, a ``ckpt.pt``) is exported from the
    newest checkpoint's EMA weights when ``train_config`` is given, saying so (also in
    ``info.json``: ``dit_from_checkpoint_step``).
    """
    src_vae = os.path.join(run, "vae", "vae.safetensors")
    dit_dir = os.path.join(run, "dit")
    info = dict(extra or {})
    tuned = os.path.join(run, "decoder", "vae.safetensors")
    if os.path.isfile(tuned):          # stage 1b: same encoder (latents unchanged), fine-tuned decoder
        src_vae = tuned
        info["vae_decoder_finetuned"] = True
        side = os.path.join(run, "decoder", "vae.json")
        if os.path.isfile(side):
            with open(side, "r", encoding="utf-8") as f:
                info["vae_decoder_step"] = json.load(f).get("step")
    if not os.path.isfile(os.path.join(dit_dir, "model.safetensors")) and train_config is not None:
        step = dit_from_checkpoint(run, train_config)
        if step is not None:
            dit_dir = os.path.join(run, "dit", "partial")
            info["dit_from_checkpoint_step"] = step
            if echo:
                print(f"note: the dit stage is unfinished; exporting the EMA weights of its checkpoint at step {step} "
                      f"of {train_config.dit.steps}.", flush=True)
    for p in (src_vae, os.path.join(dit_dir, "model.safetensors"), os.path.join(dit_dir, "config.json")):
        if not os.path.isfile(p):
            raise MatrixGameError(f"{p} is missing; finish training first (python -m matrix_game_core.train all ...).")
    out = os.path.join(run, "export")
    os.makedirs(out, exist_ok=True)
    shutil.copyfile(src_vae, os.path.join(out, "vae.safetensors"))
    _copy_dit(dit_dir, os.path.join(out, "dit"), run)
    student = os.path.join(run, "distill")
    if os.path.isfile(os.path.join(student, "model.safetensors")):
        _copy_dit(student, os.path.join(out, "student"), run)
    with open(os.path.join(out, "NOTICE.md"), "w", encoding="utf-8") as f:
        f.write(FREEDOOM_NOTICE)
    if data is not None:
        try:
            from ..data.shards import read_manifest
            m = read_manifest(data)
            info["data"] = {"folder": os.path.abspath(data), "total_frames": m["total_frames"], "fps": m["fps"],
                            "mouse_units": m["mouse_units"], "shards": len(m["shards"]),
                            "vizdoom_version": m.get("vizdoom_version")}
        except MatrixGameError:
            pass
    with open(os.path.join(out, "info.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    return out


def _resolve(path: str, model: str = "dit") -> str:
    for root in (os.path.join(path, "export"), path):
        if os.path.isfile(os.path.join(root, model, "model.safetensors")) and os.path.isfile(
                os.path.join(root, "vae.safetensors")):
            return root
    if model == "student" and os.path.isfile(os.path.join(path, "export", "dit", "model.safetensors")):
        raise MatrixGameError(f"{path!r} has no distilled student (export/student/); run "
                              f"`python -m matrix_game_core.train distill` and `... export` first.")
    raise MatrixGameError(f"{path!r} is neither a training run with export/ nor an export folder "
                          f"({model}/model.safetensors + vae.safetensors).")


def load_trained(path: str, device="cpu", dtype: torch.dtype = torch.float32, model: str = "dit"):
    """Load an exported run as :class:`~matrix_game_core.pipeline.Components` (DiT, VAE, no image encoder).

    Args:
        path: the run folder or its ``export/`` folder.
        model: ``"dit"`` (the diffusion-forcing model, 8 steps) or ``"student"`` (the distilled
            few-step student of ``export/student``).
    Raises:
        MatrixGameError: missing files or files that do not match the engine.
    """
    from ..checkpoints import load_dit
    from ..pipeline import Components
    from ..vae import load_wan_vae

    root = _resolve(path, model)
    dit = load_dit(os.path.join(root, model, "model.safetensors"), mode="universal", device=device, dtype=dtype)
    vae = load_wan_vae(os.path.join(root, "vae.safetensors"), device=device, dtype=torch.float32)
    what = "distilled student" if model == "student" else "trained small model"
    return Components(dit, vae, None, f"{what} ({os.path.abspath(root)})")

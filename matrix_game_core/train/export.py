"""Package a trained run for inference, and load it back.

``RUN/export/`` holds everything the engine needs, in its own formats, plus the data notice::

    export/dit/model.safetensors    # official DiT format (model.-prefixed keys), EMA weights
    export/dit/config.json          # ModelConfig (incl. denoising_step_list); load_dit reads it;
                                    # plus "video_size" [H, W] trained at, "image_encoder": null
    export/vae.safetensors          # Wan2.1_VAE keys at the trained width (load_wan_vae infers it)
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


def export_run(run: str, data: Optional[str] = None, extra: Optional[Dict] = None) -> str:
    """Assemble ``RUN/export`` from ``RUN/vae/vae.safetensors`` and ``RUN/dit/*``. Returns the folder."""
    src_vae = os.path.join(run, "vae", "vae.safetensors")
    src_dit = os.path.join(run, "dit", "model.safetensors")
    src_cfg = os.path.join(run, "dit", "config.json")
    for p in (src_vae, src_dit, src_cfg):
        if not os.path.isfile(p):
            raise MatrixGameError(f"{p} is missing; finish training first (python -m matrix_game_core.train all ...).")
    out = os.path.join(run, "export")
    os.makedirs(os.path.join(out, "dit"), exist_ok=True)
    shutil.copyfile(src_vae, os.path.join(out, "vae.safetensors"))
    shutil.copyfile(src_dit, os.path.join(out, "dit", "model.safetensors"))
    with open(src_cfg, "r", encoding="utf-8") as f:
        cfg = json.load(f)
    # extra keys (ignored by ModelConfig.from_dict) that front ends need: the frame size the model
    # was trained at, and that it takes zero image tokens instead of CLIP features
    meta_p = os.path.join(run, "latents", "meta.json")
    if os.path.isfile(meta_p):
        with open(meta_p, "r", encoding="utf-8") as f:
            hw = json.load(f).get("latent_hw") or []
        if len(hw) == 2:
            cfg["video_size"] = [8 * int(hw[0]), 8 * int(hw[1])]
    cfg["image_encoder"] = None
    cfg["vae_file"] = "../vae.safetensors"
    with open(os.path.join(out, "dit", "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(out, "NOTICE.md"), "w", encoding="utf-8") as f:
        f.write(FREEDOOM_NOTICE)
    info = dict(extra or {})
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


def _resolve(path: str) -> str:
    if os.path.isfile(os.path.join(path, "export", "dit", "model.safetensors")):
        return os.path.join(path, "export")
    if os.path.isfile(os.path.join(path, "dit", "model.safetensors")) and os.path.isfile(
            os.path.join(path, "vae.safetensors")):
        return path
    raise MatrixGameError(f"{path!r} is neither a training run with export/ nor an export folder "
                          f"(dit/model.safetensors + vae.safetensors).")


def load_trained(path: str, device="cpu", dtype: torch.dtype = torch.float32):
    """Load an exported run as :class:`~matrix_game_core.pipeline.Components` (DiT, VAE, no image encoder).

    Args:
        path: the run folder or its ``export/`` folder.
    Raises:
        MatrixGameError: missing files or files that do not match the engine.
    """
    from ..checkpoints import load_dit
    from ..pipeline import Components
    from ..vae import load_wan_vae

    root = _resolve(path)
    dit = load_dit(os.path.join(root, "dit", "model.safetensors"), mode="universal", device=device, dtype=dtype)
    vae = load_wan_vae(os.path.join(root, "vae.safetensors"), device=device, dtype=torch.float32)
    return Components(dit, vae, None, f"trained small model ({os.path.abspath(root)})")

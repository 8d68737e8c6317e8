"""Readers for the golden-data format (shared/golden/README.md), shared by the parity tests."""
import json
import os

import torch
from safetensors.torch import load_file

from matrix_game_core.config import ModelConfig


def load_json(path):
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def dit_config(case: str) -> ModelConfig:
    """The case's ``CausalWanModel_constructor_args`` + pipeline args as a ModelConfig."""
    c = load_json(os.path.join(case, "config.json"))
    pipe = next(v for k, v in c.items() if k.startswith("pipeline_args"))
    return ModelConfig.from_dict(c["CausalWanModel_constructor_args"], mode=c["mode"],
                                 denoising_step_list=list(pipe["denoising_step_list"]),
                                 num_frame_per_block=int(pipe["num_frame_per_block"]),
                                 context_noise=int(pipe["context_noise"]),
                                 timestep_shift=float(pipe["model_kwargs"]["timestep_shift"]))


def dit_state_dict(case: str):
    """Complete official-format state dict (``model.`` keys) of a golden DiT case, resolving
    ``weights_manifest.json`` (tensors shared with another case) when there is no full file."""
    full = os.path.join(case, "weights.safetensors")
    if os.path.exists(full):
        return load_file(full)
    manifest = load_json(os.path.join(case, "weights_manifest.json"))["keys"]
    files, out = {}, {}
    for e in manifest:
        src = os.path.normpath(os.path.join(case, e["source"]))
        if src not in files:
            files[src] = load_file(src)
        out[e["key"]] = files[src][e["key"]]
    return out


def common_inputs(case: str):
    return load_file(os.path.join(os.path.dirname(case), "common_inputs.safetensors"))

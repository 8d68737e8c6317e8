"""ComfyUI-MatrixGame: Matrix-Game 2.0 world model nodes for ComfyUI.

ComfyUI imports this package; the nodes live in ``nodes/`` (V3 schema API) and the browser side
in ``js/``. The engine, ``matrix_game_core``, never imports ComfyUI. Outside ComfyUI (pytest, the
CLI) importing this file does nothing.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # make `matrix_game_core` importable as a top-level package
    sys.path.insert(0, _HERE)

WEB_DIRECTORY = "./js"

try:  # only inside ComfyUI
    import comfy_api.latest  # noqa: F401
    _IN_COMFY = True
except Exception:
    _IN_COMFY = False

if _IN_COMFY:
    from .nodes import comfy_entrypoint  # noqa: F401

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"] if _IN_COMFY else ["WEB_DIRECTORY"]

"""The pack's demo inputs (copied into ComfyUI's input folder) and the action-following report node.

Part of :mod:`.logic` (which re-exports every name); no ComfyUI import here (see :mod:`.host`).
"""
from __future__ import annotations

import os
import shutil
from typing import List, Optional, Tuple

import torch

from matrix_game_core.errors import MatrixGameError

from . import host

# ================================================================================================ demo files
_PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Demo inputs shipped with the pack (start images, action tracks); copied into ComfyUI's input
#: folder with a ``matrixgame_`` prefix, which is how the example workflows refer to them.
DEMO_SOURCES = ((os.path.join(_PACK_DIR, "assets", "demo_images"), (".png", ".jpg")),
                (os.path.join(_PACK_DIR, "workflows", "tracks"), (".json",)))
DEMO_PREFIX = "matrixgame_"


def demo_inputs() -> List[Tuple[str, str]]:
    """``(source path, name in the input folder)`` of every demo input the pack ships."""
    out = []
    for folder, exts in DEMO_SOURCES:
        if os.path.isdir(folder):
            for f in sorted(os.listdir(folder)):
                if f.lower().endswith(exts) and os.path.isfile(os.path.join(folder, f)):
                    out.append((os.path.join(folder, f), DEMO_PREFIX + f))
    return out


def install_demo_inputs(dest: Optional[str] = None) -> List[str]:
    """Copy the demo inputs into ComfyUI's input folder, never overwriting a file that is already
    there. Returns the names copied."""
    dest = dest or host.input_dir()
    copied = []
    for src, name in demo_inputs():
        dst = os.path.join(dest, name)
        if not os.path.exists(dst):
            os.makedirs(dest, exist_ok=True)
            shutil.copyfile(src, dst)
            copied.append(name)
    return copied


# ================================================================================================ evaluate
def action_following_report(images: torch.Tensor, actions) -> Tuple[str, float]:
    """GameWorld-style action following of a generated video (engine ``evaluate.action_following``).

    Args:
        images: IMAGE ``[T, H, W, 3]`` in 0..1 (e.g. Matrix-Game Decode output).
        actions: the ActionTrack the video was generated with (needs mouse: universal / gta_drive).
    Returns:
        ``(report text, accuracy in [0, 1] or -1 when no block commanded a turn or look)``.
    """
    from matrix_game_core.evaluate import action_following

    if getattr(actions, "mouse", None) is None:
        raise MatrixGameError(f"the {getattr(actions, 'mode', '?')} track has no mouse actions; action following "
                              f"measures camera turns, so use a universal or gta_drive track.")
    rep = action_following(images, actions.mouse)
    lines = [f"action following over {len(rep.blocks)} blocks (sign of global image motion vs mouse command):"]
    for name, v in rep.per_class.items():
        acc = "n/a" if v["accuracy"] is None else f"{100 * v['accuracy']:.0f}%"
        way = "" if v.get("toward_px") is None else f"  ({v['toward_px']:+.2f} px/frame the commanded way)"
        lines.append(f"  {name:<10} {v['correct']}/{v['n']} {acc}{way}")
    total = -1.0 if rep.accuracy is None else float(rep.accuracy)
    lines.append("  overall    " + ("n/a (no block turns or looks)" if total < 0 else f"{100 * total:.0f}%"))
    return "\n".join(lines), total

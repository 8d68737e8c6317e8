"""Render a strip of frames from a generated video (for the README): every N-th frame, labelled
with its frame index, side by side in rows.

    python tools/tour_strip.py out/doom_overlay.mp4 docs/embedded_tour.png [--every 12] [--cols 5]
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from matrix_game_core.video import read_mp4  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video")
    ap.add_argument("out")
    ap.add_argument("--every", type=int, default=12)
    ap.add_argument("--cols", type=int, default=5)
    ap.add_argument("--width", type=int, default=224, help="width of each tile in pixels")
    a = ap.parse_args()
    v = read_mp4(a.video)                                   # [T, H, W, 3] uint8
    idx = list(range(0, v.shape[0], a.every))
    h, w = v.shape[1:3]
    tw, th = a.width, round(a.width * h / w)
    rows = -(-len(idx) // a.cols)
    sheet = Image.new("RGB", (a.cols * tw, rows * (th + 14)), (20, 20, 20))
    d = ImageDraw.Draw(sheet)
    for k, i in enumerate(idx):
        x, y = (k % a.cols) * tw, (k // a.cols) * (th + 14)
        sheet.paste(Image.fromarray(np.asarray(v[i])).resize((tw, th), Image.BILINEAR), (x, y + 14))
        d.text((x + 3, y + 1), f"frame {i}", fill=(230, 230, 230))
    sheet.save(a.out)
    print(a.out, sheet.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of one click on a very large 2D image, as a script meets it.

A ``--side`` x ``--side`` uint8 image (default 20000, 400 MB) is written as a memory-mapped .npy in a
temporary folder: a dim background with noise and one bright disk in the middle. Each mode runs in
a fresh process (``--mode plain``: ``Predictor``; ``zoom``: ``ZoomPredictor``) with the included
model in fp32 with 1 and 4 mirrored views (``--views``): ``set_image``, then one click on the disk and its full-resolution mask. The peak
resident memory (``ru_maxrss``, which counts the mapped image pages touched) is printed after
each step, with the times. Prints one JSON line per mode; ``--json PATH`` writes them all.

    python benchmarks/bench_memory.py [--side 20000] [--mode plain zoom] [--views 1 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = """
import json, resource, sys, time
import numpy as np
import napari_segany as sg
image = np.load(sys.argv[1], mmap_mode="r")
mode, side, views = sys.argv[2], image.shape[0], int(sys.argv[3])
gib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
p = sg.Predictor(sg.load_model(), precision="fp32", views=views)
if mode == "zoom":
    p = sg.ZoomPredictor(p)
t = time.perf_counter(); p.set_image(image); encode_s = time.perf_counter() - t
after_encode = gib()
t = time.perf_counter(); res = p.predict(points=[(side // 2, side // 2)], labels=[1]); mask = res.mask(0)
click_s = time.perf_counter() - t
print(json.dumps({"mode": mode, "side": side, "views": views, "peak_after_encode_gib": round(after_encode, 2),
                  "peak_after_click_gib": round(gib(), 2), "encode_s": round(encode_s, 1),
                  "click_s": round(click_s, 1), "mask_px": int(mask.sum())}))
"""


def make_image(path: Path, side: int) -> None:
    image = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(side, side))
    rng = np.random.default_rng(0)
    for r in range(0, side, 1000):
        image[r:r + 1000] = rng.integers(0, 50, (min(1000, side - r), side), dtype=np.uint8)
    c, radius = side // 2, max(8, side // 220)
    yy, xx = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    image[c - radius:c + radius + 1, c - radius:c + radius + 1][yy ** 2 + xx ** 2 <= radius ** 2] = 200
    image.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--side", type=int, default=20000)
    ap.add_argument("--mode", nargs="+", default=["plain", "zoom"], choices=["plain", "zoom"])
    ap.add_argument("--views", type=int, nargs="+", default=[1, 4], help="mirrored views (the included model's default is 4)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.npy"
        make_image(path, args.side)
        for mode in args.mode:
            for views in args.views:
                out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, str(views)], capture_output=True,
                                     text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": platform.processor()
                                         or platform.machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

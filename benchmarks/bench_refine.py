"""What the included model's boundary refiner costs per mask.

On the 2D nuclei sample (512 x 512, uint16) with ``load_model()`` and its
embedding ready: the median time of one box prompt answered as a full-size
mask (``predict`` + ``mask(0)``) on each of ``--boxes`` nuclei, with the
refiner and with it set aside (``model.refiner = None``, the same decoder
answer), and of masks of the whole image's size (a box around the whole
image). Then the refiner alone (``refine_logits``) on one large object, a
disc filling most of the sample tiled to 1024 and 2048 px square, as it runs
(tile by tile around the outline) and on the whole crop at once, the way it
ran before 2026-12-02 (session 10). Prints a table and one JSON line.

    python benchmarks/bench_refine.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
import torch

from napari_segany import Predictor, load_model
from napari_segany.cli.benchmark import _timed
from napari_segany.engine.refine import _refine_at_once, object_crop, refine_logits
from napari_segany.sample_data import load_sample
from bench_views import boxes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--boxes", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    image, labels = load_sample("nuclei2d"), load_sample("nuclei2d_labels")
    model = load_model(device="cpu")
    refiner = model.refiner
    if refiner is None:
        raise SystemExit("the included model has no refiner: nothing to measure")
    predictor = Predictor(model)
    predictor.set_image(image)
    prompts = {"nucleus": boxes(labels, args.boxes), "whole image": [(0, 0, image.shape[0] - 1, image.shape[1] - 1)]}
    rows = {}
    for what, bxs in prompts.items():
        for refined in (True, False):
            model.refiner = refiner if refined else None
            times = []
            for box in bxs:
                t, _ = _timed(lambda: predictor.predict(box=box, multimask=False).mask(0), args.repeats)
                times.append(float(np.median(t)))
            rows[f"{what}, {'refined' if refined else 'not refined'}"] = 1000 * float(np.median(times))
    model.refiner = refiner
    unit = image.astype(np.float32) / image.max()
    for side in (1024, 2048):
        guide = np.tile(unit, (side // unit.shape[0] + 1, side // unit.shape[1] + 1))[:side, :side]
        rr, cc = np.mgrid[:side, :side]
        logits = torch.from_numpy(((0.42 * side - np.hypot(rr - side / 2, cc - side / 2)) / 2).astype(np.float32))[None]
        crop = object_crop(logits[0].numpy() > 0)
        t, _ = _timed(lambda: refine_logits(refiner, guide, logits, 4.0), args.repeats)
        rows[f"refiner alone, disc in {side} px, tiles around the outline"] = 1000 * float(np.median(t))
        t, _ = _timed(lambda: _refine_at_once(refiner, guide[crop], logits[0].numpy()[crop], 4.0), args.repeats)
        rows[f"refiner alone, disc in {side} px, whole crop at once"] = 1000 * float(np.median(t))
    print("| what | median ms |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.1f} |")
    out = {"benchmark": "refine", "machine": platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(), "torch": torch.__version__, "ms": rows}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

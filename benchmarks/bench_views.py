"""What mirrored views cost with the included model: encoding a whole image, and a zoomed box on a new crop.

For 1, 2, 4 and 8 views (napari_segany.views) and each precision, on the 2D
nuclei sample (512 x 512, uint16) with ``load_model()``: the median time of
``Predictor.set_image`` (``--repeats`` runs after a warm-up) and of a box on
each of ``--boxes`` nuclei through a fresh ``ZoomPredictor`` (every box a new
crop to encode; the whole image's embedding is ready). Quality is not measured
here (see MODEL_CARD.md). Prints a table and one JSON line; ``--json PATH``
also writes it.

    python benchmarks/bench_views.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from napari_segany import Predictor, ZoomPredictor, load_model
from napari_segany.benchmark import _timed
from napari_segany.sample_data import load_sample


def boxes(labels: np.ndarray, n: int) -> list[tuple[int, int, int, int]]:
    ids = np.random.default_rng(0).choice(np.unique(labels[labels > 0]), n, replace=False)
    out = []
    for i in ids:
        rows, cols = np.nonzero(labels == i)
        out.append((int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--boxes", type=int, default=10)
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(device="cpu")
    image, labels = load_sample("nuclei2d"), load_sample("nuclei2d_labels")
    prompts = boxes(labels, args.boxes)
    rows = []
    for precision in args.precision:
        for views in (1, 2, 4, 8):
            pred = Predictor(model, precision=precision, views=views)
            pred.encode(image)  # warm-up
            encode = float(np.median(_timed(lambda: pred.set_image(image), args.repeats)[0]))
            zoom = ZoomPredictor(pred)
            zoom.set_image(image)
            times = []
            for box in prompts:
                t0 = time.perf_counter()
                zoom.predict(box=box, multimask=False).mask(0)
                times.append(time.perf_counter() - t0)
            rows.append({"precision": pred.precision, "views": views, "encode_s": round(encode, 3),
                         "zoomed_box_new_crop_s": round(float(np.median(times)), 3)})
            print(f"{pred.precision:5s} views {views}: encode {encode:.3f} s, zoomed box on a new crop "
                  f"{np.median(times):.3f} s", flush=True)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

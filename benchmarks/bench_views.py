"""What mirrored views cost with the included model: encoding a whole image, and a zoomed box on a new crop.

For 1, 2, 4 and 8 views (napari_segany.engine.views) and each precision, on the 2D
nuclei sample (512 x 512, uint16) with ``load_model()``: the median time of
``Predictor.set_image`` (``--repeats`` runs after a warm-up) and of a box on
each of ``--boxes`` nuclei through a fresh ``ZoomPredictor`` (every box a new
crop to encode; the whole image's embedding is ready), then of the same boxes
again (their crops encoded), each with the default blend of the crop's and the
whole image's answers and with the crop alone (``blend=0``). Quality is not
measured here (see training/HISTORY.md). Prints a table and one JSON line;
``--json PATH`` also writes it.

    python benchmarks/bench_views.py --threads 2 [--views 1 4] [--precision fp32]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from napari_segany import Predictor, ZoomPredictor, load_model
from napari_segany.cli.benchmark import _timed
from napari_segany.sample_data import load_sample
from napari_segany.engine.zoom import BLEND


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
    p.add_argument("--views", nargs="+", type=int, default=[1, 2, 4, 8], choices=(1, 2, 4, 8))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(device="cpu")
    image, labels = load_sample("nuclei2d"), load_sample("nuclei2d_labels")
    prompts = boxes(labels, args.boxes)
    rows = []
    for precision in args.precision:
        for views in args.views:
            pred = Predictor(model, precision=precision, views=views)
            pred.encode(image)  # warm-up
            encode = float(np.median(_timed(lambda: pred.set_image(image), args.repeats)[0]))
            row = {"precision": pred.precision, "views": views, "encode_s": round(encode, 3)}
            for name, blend in (("", BLEND), ("_crop_alone", 0.0)):
                zoom = ZoomPredictor(pred, blend=blend, cache_size=len(prompts))
                zoom.set_image(image)
                for when in ("new", "ready"):
                    times = []
                    for box in prompts:
                        t0 = time.perf_counter()
                        zoom.predict(box=box, multimask=False).mask(0)
                        times.append(time.perf_counter() - t0)
                    row[f"zoomed_box_{when}_crop{name}_s"] = round(float(np.median(times)), 4)
            rows.append(row)
            print(f"{pred.precision:5s} views {views}: encode {encode:.3f} s, zoomed box on a new crop "
                  f"{row['zoomed_box_new_crop_s']:.3f} s (crop alone {row['zoomed_box_new_crop_crop_alone_s']:.3f} s), "
                  f"on an encoded crop {row['zoomed_box_ready_crop_s'] * 1e3:.1f} ms "
                  f"(crop alone {row['zoomed_box_ready_crop_crop_alone_s'] * 1e3:.1f} ms)", flush=True)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

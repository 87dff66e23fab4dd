"""Small images and the model's frame: how much a model may enlarge an image smaller than its frame
(``ModelInfo.max_upscale``), measured on the real 2D nuclei.

Two kinds of small image, the default pipeline of the widget (ZoomPredictor over a Predictor with
the model's views):
- ``crop``: 128 x 128 crops at the image's own scale (nuclei about 20 px across), as when a user
  opens a cut-out; filling the 512 px frame enlarges them 4x.
- ``down``: the whole image shrunk 4x to 128 x 128 (nuclei about 5 px across): tiny objects, which
  gain from being enlarged.
For each setting of the cap: mean IoU of a box and of one click at the deepest point, on every
labelled object not touching the image's edge. Prints one JSON line per cap; ``--save`` writes
``benchmarks/results/small_images_cpu_<date>.json``.

    .venv/bin/python benchmarks/bench_small_images.py --caps none 2 3 [--save]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import subprocess
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.transform import resize

import napari_segany as sg
from napari_segany.sample_data import load_sample

CROPS = ((0, 0), (200, 200), (256, 100))
SIDE = 128


def cases():
    image, labels = load_sample("nuclei2d"), load_sample("nuclei2d_labels")
    for y, x in CROPS:
        yield "crop", image[y:y + SIDE, x:x + SIDE], labels[y:y + SIDE, x:x + SIDE]
    small = resize(image.astype(np.float32), (SIDE, SIDE), anti_aliasing=True, preserve_range=True)
    yield "down", small, resize(labels, (SIDE, SIDE), order=0, anti_aliasing=False,
                                preserve_range=True).astype(labels.dtype)


def ious(zoom, image, labels) -> dict[str, list[float]]:
    zoom.set_image(image)
    out = {"box": [], "click": []}
    for i, found in enumerate(ndimage.find_objects(labels), 1):
        if found is None:
            continue
        truth = labels == i
        r0, c0, r1, c1 = found[0].start, found[1].start, found[0].stop - 1, found[1].stop - 1
        if truth.sum() < 10 or min(r0, c0) == 0 or r1 == labels.shape[0] - 1 or c1 == labels.shape[1] - 1:
            continue
        depth = ndimage.distance_transform_edt(truth)
        point = np.unravel_index(depth.argmax(), depth.shape)
        box = zoom.predict(box=[r0, c0, r1, c1]).masks[0]
        click = zoom.predict(points=[point], labels=[1])
        click = click.masks[int(np.argmax(click.scores))]
        for name, mask in (("box", box), ("click", click)):
            out[name].append(float((mask & truth).sum() / (mask | truth).sum()))
    return out


def run(cap: float | None) -> dict:
    model = sg.load_model()
    model.info = dataclasses.replace(model.info, max_upscale=cap)
    zoom = sg.ZoomPredictor(sg.Predictor(model, precision="fp32", views=model.info.views))
    found: dict[str, dict[str, list[float]]] = {}
    for kind, image, labels in cases():
        for prompt, values in ious(zoom, image, labels).items():
            found.setdefault(kind, {}).setdefault(prompt, []).extend(values)
    return {"max_upscale": cap, **{kind: {p: {"mean_iou": round(float(np.mean(v)), 3), "n": len(v)}
                                          for p, v in per.items()} for kind, per in found.items()}}


def cpu() -> str:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")),
                platform.processor())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caps", nargs="+", default=["none", "2", "3"])
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    rows = []
    for text in args.caps:
        row = run(None if text == "none" else float(text))
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.save:
        date = datetime.date.today().isoformat()
        path = Path(__file__).parent / "results" / f"small_images_cpu_{date}.json"
        path.write_text(json.dumps({"date": date, "cpu": cpu(), "model": "segany_vit_t_512 (included)",
                                    "pipeline": "ZoomPredictor(Predictor(model views, fp32))",
                                    "rows": rows}, indent=1) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    main()

"""Fine-tuning measured (issue 30): the included model fine-tuned on one half of the real 2D nuclei
(its own held-out split inside that half) and scored on the objects of the other half, which it
never saw, before and after: one click, a box, click + 1 and + 2 corrections (the protocol of
:mod:`napari_segany.finetune.report`, one view). Prints a JSON line per direction with the time and
the peak memory (ru_maxrss) of the process.

    .venv/bin/python benchmarks/bench_finetune.py [--minutes 5] [--directions left right] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
import torch

import napari_segany as sg
from napari_segany.finetune.loop import Prepared
from napari_segany.finetune.report import evaluate
from napari_segany.sample_data import load_sample


def halves(direction: str):
    image, labels = load_sample("nuclei2d"), load_sample("nuclei2d_labels")
    half = image.shape[1] // 2
    left = (image[:, :half], labels[:, :half])
    right = (image[:, half:], labels[:, half:])
    return (left, right) if direction == "left" else (right, left)


def test_set(model, image, labels) -> list[Prepared]:
    """The other half's objects (whole ones: those cut by the middle line are left out)."""
    predictor = sg.Predictor(model, precision="fp32", views=1)
    emb = predictor.encode(image, views=1)
    edge = np.unique(np.concatenate([labels[:, 0], labels[:, -1]]))
    ids = np.array([i for i in np.unique(labels) if i and i not in edge])
    return [Prepared(emb, torch.from_numpy(emb.features)[None], labels, ids, "test half")], predictor


def run(direction: str, minutes: float, seed: int) -> dict:
    train_pair, (test_image, test_labels) = halves(direction)
    base = sg.load_model(device="cpu")
    test, base_predictor = test_set(base, test_image, test_labels)
    before = evaluate(base_predictor, test)
    t = time.monotonic()
    result = sg.finetune(base, [train_pair], max_minutes=minutes, seed=seed)
    seconds = time.monotonic() - t
    after = evaluate(sg.Predictor(result.trained, precision="fp32", views=1), test)
    return {"direction": f"train {direction} half -> test the other half", "minutes_budget": minutes,
            "seconds": round(seconds, 1), "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "test_before": before, "test_after": after, "held_out_before": result.report.before,
            "held_out_after": result.report.after, "improved_held_out": result.improved,
            "steps": result.report.steps, "best_step": result.report.best_step, "stopped": result.report.stopped,
            "phases_s": result.report.seconds, "data": result.report.data, "torch_threads": torch.get_num_threads()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--directions", nargs="+", default=["left", "right"], choices=["left", "right"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for d in args.directions:
        print(json.dumps(run(d, args.minutes, args.seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Propagation through large slices: on crops (``zoom=True``, the default) against whole slices.

The real 3D nuclei stack (60 x 256 x 256, 20 labelled nuclei) tiled ``n x n``
in-plane, so that the same nuclei sit in slices of 256 x n px (labels: the
middle tile's only). Each nucleus is seeded with its true mask on the slice
where it is largest, and all are propagated in one call with the included
model (``load_model()``, one view, cold in-memory store), once on whole
slices and once zoomed. Prints, per tiling, the mean 3D IoU, the encoder
passes (whole slices and crops) and the time, and one JSON line. With
``--disk-cache`` the zoomed run uses a disk cache (a temporary folder) and is
repeated with a new store on the same folder, as a second session would: the
slices and crops are then read from disk, not encoded.

    python benchmarks/bench_propagate_zoom.py --threads 2 --tiles 1 2 4 [--disk-cache]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import numpy as np
import torch

from napari_segany import EmbeddingStore, Predictor, load_model, propagate
from napari_segany.sample_data import load_sample, voxel_size


def tiled_stack(n: int):
    volume, labels = load_sample("nuclei3d"), load_sample("nuclei3d_labels")
    z, h, w = volume.shape
    big = np.zeros((z, n * h, n * w), labels.dtype)
    big[:, n // 2 * h : n // 2 * h + h, n // 2 * w : n // 2 * w + w] = labels
    return np.tile(volume, (1, n, n)), big


def run(predictor, volume, labels, zoom: bool, cache_dir=None) -> dict:
    ids = [int(i) for i in np.unique(labels) if i]
    seeds = np.zeros_like(labels)
    for i in ids:
        z = int(np.argmax((labels == i).sum(axis=(1, 2))))
        seeds[z][labels[z] == i] = i
    store = EmbeddingStore(predictor, volume, prefetch=0, cache_dir=cache_dir)
    t0 = time.perf_counter()
    result = propagate(volume, labels=seeds, store=store, spacing=voxel_size("nuclei3d"), zoom=zoom)
    seconds = time.perf_counter() - t0
    ious = [float(((result.labels == i) & (labels == i)).sum() / ((result.labels == i) | (labels == i)).sum())
            for i in ids]
    crops = store.stats["crops_encoded"]
    return {"iou": round(float(np.mean(ious)), 4), "slices_encoded": store.stats["encoded"] - crops,
            "crops_encoded": crops, "read_from_disk": store.stats["disk_hits"] + store.stats["crop_disk_hits"],
            "seconds": round(seconds, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--tiles", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--disk-cache", action="store_true",
                   help="zoomed runs with a disk cache, then again from it (a second session)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor(load_model(device="cpu"))
    rows = {}
    print("| slices | whole slices: IoU, encodes, s | zoomed: IoU, slice + crop encodes, s | IoU gain | time ratio |")
    print("|---|---|---|---|---|")
    for n in args.tiles:
        volume, labels = tiled_stack(n)
        whole = run(predictor, volume, labels, False)
        with tempfile.TemporaryDirectory() as folder:
            cache = folder if args.disk_cache else None
            zoomed = run(predictor, volume, labels, True, cache)
            again = run(predictor, volume, labels, True, cache) if cache else None
        rows[f"{volume.shape[1]} px"] = {"whole": whole, "zoomed": zoomed, **({"again": again} if again else {})}
        print(f"| {volume.shape[1]} px | {whole['iou']:.3f}, {whole['slices_encoded']}, {whole['seconds']} | "
              f"{zoomed['iou']:.3f}, {zoomed['slices_encoded']} + {zoomed['crops_encoded']}, {zoomed['seconds']} | "
              f"{zoomed['iou'] - whole['iou']:+.3f} | {zoomed['seconds'] / whole['seconds']:.1f}x |", flush=True)
        if again:
            print(f"| {volume.shape[1]} px, zoomed again from the disk cache | IoU {again['iou']:.3f}, "
                  f"{again['read_from_disk']} read, {again['slices_encoded']} + {again['crops_encoded']} encoded, "
                  f"{again['seconds']} s | | | {again['seconds'] / zoomed['seconds']:.2f}x of the first zoomed run |",
                  flush=True)
    out = {"benchmark": "propagate_zoom", "machine": platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(), "torch": torch.__version__, "results": rows}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

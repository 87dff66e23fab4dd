"""Volumes: lazy per-slice embedding vs embedding every slice up front.

On the 60 x 256 x 256 nuclei stack (sample_data), reports:

* time to the first usable mask on a fresh volume when only the slice on
  screen is embedded (lazy store), vs after embedding every slice first;
* propagation time per slice with the embeddings cached (one object, and all
  objects of the slice batched);
* disk and memory per slice.

Embedding all 60 slices with vit_b takes many minutes on a CPU, so the
up-front numbers embed ``--slices`` slices and extrapolate linearly to the
whole stack (printed as such). Default model: vit_b with random weights
(speed does not depend on the weights); ``--model`` takes a registry name or a
checkpoint file.

    python benchmarks/bench_volume.py [--model vit_b] [--slices 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def random_model(arch: str, folder: Path):
    import torch

    from napari_segany import load_model
    from napari_segany.model import build_sam

    torch.manual_seed(0)
    path = folder / f"random_{arch}.pth"
    torch.save(build_sam(arch).state_dict(), path)
    return load_model(path, device="cpu")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vit_b", help="architecture for random weights (vit_b, vit_t...), "
                    "a registry name prefixed with 'registry:', or a checkpoint file")
    ap.add_argument("--slices", type=int, default=3, help="slices embedded for the up-front estimate (default 3)")
    ap.add_argument("--repeats", type=int, default=5, help="propagation repeats for ms/slice (default 5)")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)

    import torch

    import napari_segany as sg
    from napari_segany.sample_data import load_sample

    volume, truth = load_sample("nuclei3d"), load_sample("nuclei3d_labels")
    n, z = volume.shape[0], 30
    tmp = Path(tempfile.mkdtemp(prefix="bench-volume-"))
    if Path(args.model).is_file():
        model = sg.load_model(args.model, device="cpu")
    elif args.model.startswith("registry:"):
        model = sg.load_model(args.model.split(":", 1)[1], device="cpu")
    else:
        model = random_model(args.model, tmp)
    pred = sg.Predictor(model)
    ids = [int(i) for i in np.unique(truth[z]) if i]
    one = truth[z] == ids[len(ids) // 2]
    rows, cols = np.nonzero(one)
    point = (int(np.median(rows)), int(np.median(cols)))
    print(f"model {model.info.name} ({model.info.arch}), torch threads {torch.get_num_threads()}, "
          f"volume {volume.shape} {volume.dtype}", file=sys.stderr)

    # -- lazy: open the volume, embed only the slice on screen, first mask ----------
    t0 = time.perf_counter()
    store = sg.EmbeddingStore(pred, volume, cache_dir=tmp / "cache", prefetch=0)
    pred.set_embedding(store.get(z, prefetch=False))
    t_encode_done = time.perf_counter()
    mask = pred.predict(points=[point], labels=[1]).mask(0)
    t_first = time.perf_counter() - t0
    decode_ms = (time.perf_counter() - t_encode_done) * 1000

    # -- embed a few more slices to time encodes and to propagate through ----------
    h = max(1, (args.slices - 1) // 2)  # slices z-h..z+h, symmetric around the one on screen
    extra = [s for s in range(z - h, z + h + 1) if s != z]
    times = []
    for s in extra:
        t = time.perf_counter()
        store.get(s, prefetch=False)
        times.append(time.perf_counter() - t)
    encode_s = statistics.median(times + [t_encode_done - t0])
    cached = sorted([z, *extra])
    reach = min(z - cached[0], cached[-1] - z)

    # -- propagation with cached embeddings ------------------------------------------
    loose = {"iou_threshold": -np.inf, "area_change": np.inf, "max_distance": reach}

    def per_slice(seed) -> tuple[float, int]:
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            res = sg.propagate(volume, {z: seed}, store=store, **loose)
            runs.append((time.perf_counter() - t) * 1000 / max(1, res.slices_decoded))
        return statistics.median(runs), res.slices_decoded

    ms_one, decoded = per_slice(one)
    ms_all, _ = per_slice(truth[z])

    disk = store.disk_bytes() / len(cached)
    mem = store.memory_bytes() / len(cached)
    upfront_embed = encode_s * n
    report = {
        "model": model.info.name, "arch": model.info.arch, "volume_shape": list(volume.shape),
        "encode_s_per_slice": round(encode_s, 3), "decode_ms_single_prompt": round(decode_ms, 1),
        "lazy_first_mask_s": round(t_first, 2),
        "upfront_first_mask_s_extrapolated": round(upfront_embed + decode_ms / 1000, 1),
        "propagation_ms_per_slice_one_object": round(ms_one, 1),
        "propagation_ms_per_slice_all_objects": round(ms_all, 1), "objects_batched": len(ids),
        "slices_decoded_per_run": decoded,
        "disk_bytes_per_slice": int(disk), "memory_bytes_per_slice_lru_float16": int(mem),
        "upfront_disk_bytes_extrapolated": int(disk * n),
        "upfront_memory_bytes_float32_all_slices": int(256 * 64 * 64 * 4 * n),
        "slices_embedded_for_estimate": len(cached), "first_mask_area_px": int(mask.sum()),
    }
    mib = 2**20
    print(f"\n{'':44s}{'lazy (this store)':>20s}{'embed all up front':>22s}")
    print(f"{'time to first usable mask':44s}{t_first:>18.1f} s{report['upfront_first_mask_s_extrapolated']:>20.1f} s*")
    print(f"{'slices embedded before the first mask':44s}{1:>20d}{n:>22d}")
    print(f"{'propagation, 1 object (cached embeddings)':44s}{ms_one:>15.1f} ms/sl{ms_one:>17.1f} ms/sl")
    print(f"{f'propagation, {len(ids)} objects batched':44s}{ms_all:>15.1f} ms/sl{ms_all:>17.1f} ms/sl")
    print(f"{'disk per slice (zarr, float16, Blosc-zstd)':44s}{disk / mib:>16.2f} MiB{disk / mib:>18.2f} MiB")
    print(f"{'memory per slice':44s}{mem / mib:>16.2f} MiB{4.0:>18.2f} MiB (float32)")
    print(f"{'disk / memory for the whole 60-slice stack':44s}{'only what is visited':>20s}"
          f"{disk * n / mib:>10.0f} / {4 * n:.0f} MiB")
    print(f"\n* up front = {n} slices x {encode_s:.2f} s/slice (median of {len(cached)} measured encodes), "
          "extrapolated, plus one decode.")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

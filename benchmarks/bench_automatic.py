"""Segment everything (issue 29): quality against ground truth and a classical baseline, and the
speed of our grid mode against segment-anything's ``SamAutomaticMaskGenerator``.

``--quality``: on the real 2D nuclei (512 x 512, 125 labelled nuclei) and the 3D stack
(60 x 256 x 256, 20 labelled nuclei), for each method: precision, recall, F1 and AP at IoU 0.5,
mean IoU of the matched objects, object counts, and seconds (embedding apart from segmenting).
Objects are matched one to one (Hungarian assignment that first maximises the number of pairs
with IoU >= 0.5, then their IoU, as StarDist's ``matching``); AP is the cell-segmentation
literature's "average precision" at one threshold, TP / (TP + FP + FN) (StarDist, Cellpose),
not the area under a precision-recall curve. Methods:

1. grid mode, default ``GridSettings(mode="grid")`` (the included model: 16 points per side);
2. grid mode with a denser grid (``--grid2d``, default 32 points per side; ``--grid3d`` in 3D);
3. classical baseline from the image alone: Gaussian smoothing (sigma 1 px), Otsu threshold, holes
   filled, objects under 20 px (3D: 67 voxels, the ball whose cross-section is 20 px) removed,
   distance-transform seeded watershed (scikit-image's example) with
   ``peak_local_max(min_distance=r)``, r the equivalent radius of the median foreground component
   (measured on the image's own mask, never on the labels), in 3D on the volume directly with the
   sample's voxel size in the distance transform;
4. head mode, ``GridSettings(mode="head")``: one box and click per object the model's instance head
   finds (reported "not available" for a model without a head).

In 3D the slices are embedded first into an ``EmbeddingStore`` (timed as the embedding; it keeps
float16 embeddings), then ``segment_volume`` segments every slice and links them.

``--speed``: seconds per 512 x 512 image after the embedding: the included model at default
settings and at 32 points per side; and vit_b with seeded random weights (one state dict, loaded
into ``segment_anything.sam_model_registry["vit_b"]`` and through our ``load_model``), ours against
``SamAutomaticMaskGenerator`` on the same uint8 RGB image, the same grid (``--points``), the same
thresholds, crop_n_layers=0, min_mask_region_area=0, with the reference's ``set_image`` done once
beforehand and reused (its embedding is not timed; ours segments a ready embedding). Then the
share of the reference's masks that one of our objects matches at IoU >= 0.95. Our output is a
label image without overlaps and the reference's masks may overlap, so each reference mask is
compared with our best-overlapping object; a second share compares our objects with the
reference's masks painted by our own rule (best first, each keeping only free pixels, dropped
when under half of it is left), which removes that difference.

    python benchmarks/bench_automatic.py --quality --speed --threads 2 --save
    python benchmarks/bench_automatic.py --quality --crop 128 --slices 4   # a quick look

Prints tables and writes ``benchmarks/results/automatic_<quality|speed>_cpu_<date>.json`` with
``--save`` (or one file with ``--json PATH``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from automatic_metrics import AP_DEFINITION, best_overlap_iou, classical, match, paint_like_ours, z_profile

RESULTS = Path(__file__).parent / "results"


def methods(predictor, extra_grid: int) -> list:
    """(name, settings) of the model's methods: the default grid, a denser grid, and head mode when
    the model has an instance head."""
    from napari_segany.auto.grid import GridSettings

    out = [("grid default", GridSettings(mode="grid")),
           (f"grid {extra_grid}/side", GridSettings(points_per_side=extra_grid, mode="grid"))]
    if getattr(predictor.model, "instance_head", None) is not None:
        out.append(("head", GridSettings(mode="head")))
    return out


# -- environment -----------------------------------------------------------------------------------

def cpu_info() -> dict:
    name, flags = "", set()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
        flags = set(next((ln.split(":", 1)[1].split() for ln in out.splitlines() if ln.startswith("Flags")), []))
    except (OSError, subprocess.SubprocessError):
        pass
    return {"model_name": name or "unknown", "cores": os.cpu_count(), "avx512f": "avx512f" in flags,
            "avx512_bf16": "avx512_bf16" in flags, "amx": sorted(f for f in flags if f.startswith("amx"))}


def _git() -> str:
    """HEAD, and whether the engine's sources differ from it (others edit the tree while a run lasts)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" (src/ modified)" if dirty else "")


def env(args) -> dict:
    import torch

    return {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_info(), "torch": torch.__version__, "git": _git(),
            "torch_threads": torch.get_num_threads(), "command": " ".join(["python", *sys.argv]),
            "load_avg_1min_at_start": round(os.getloadavg()[0], 2)}


def _round(d: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def _settings(s) -> dict:
    from dataclasses import asdict

    return asdict(s)


# -- part A: quality ---------------------------------------------------------------------------------

def quality(args) -> dict:
    import napari_segany as sg
    from napari_segany.sample_data import load_sample, voxel_size
    from napari_segany.auto.volume import segment_volume

    c = args.crop
    image, truth = load_sample("nuclei2d")[:c, :c], load_sample("nuclei2d_labels")[:c, :c]
    z0 = (60 - args.slices) // 2 if args.slices else 0
    zs = slice(z0, z0 + args.slices) if args.slices else slice(None)
    volume = np.ascontiguousarray(load_sample("nuclei3d")[zs, :c, :c])
    truth3 = np.ascontiguousarray(load_sample("nuclei3d_labels")[zs, :c, :c])
    pred = sg.Predictor(sg.load_model(device="cpu"), precision=args.precision)
    out = {"precision_used": pred.precision, "model": pred.model.info.name, "ap_definition": AP_DEFINITION,
           "image2d": f"nuclei2d {image.shape}", "volume": f"nuclei3d {volume.shape}", "rows": []}

    pred.encode(image, views=1)  # warm-up
    t0 = time.perf_counter()
    emb = pred.encode(image, views=1)
    embed_2d = time.perf_counter() - t0
    for name, s in methods(pred, args.grid2d):
        t0 = time.perf_counter()
        labels = sg.segment_everything(pred, embedding=emb, settings=s).labels
        seg = time.perf_counter() - t0
        _row(out, "2D", name, match(truth, labels), embed_2d, seg, settings=_settings(s))
    t0 = time.perf_counter()
    labels, params = classical(image)
    _row(out, "2D", "classical (Otsu + watershed)", match(truth, labels), 0.0, time.perf_counter() - t0, params=params)
    _head_row(out, "2D", pred)

    store = sg.EmbeddingStore(pred, volume, prefetch=0, memory_bytes=2**31)
    t0 = time.perf_counter()
    for z in range(volume.shape[0]):
        store.get(z, prefetch=False)
    embed_3d = time.perf_counter() - t0
    for name, s in methods(pred, args.grid3d):
        t0 = time.perf_counter()
        labels = segment_volume(pred, volume, settings=s, store=store).labels
        seg = time.perf_counter() - t0
        _row(out, "3D", name, match(truth3, labels), embed_3d, seg, settings=_settings(s), **z_profile(truth3, labels))
    store.close()
    t0 = time.perf_counter()
    labels, params = classical(volume, sampling=voxel_size("nuclei3d"))
    _row(out, "3D", "classical (Otsu + watershed)", match(truth3, labels), 0.0, time.perf_counter() - t0,
         params=params, **z_profile(truth3, labels))
    _head_row(out, "3D", pred)
    return out


def _row(out, data, method, m, embed, seg, **extra):
    row = {"data": data, "method": method, **_round(m), "embed_s": round(embed, 2), "segment_s": round(seg, 2), **extra}
    out["rows"].append(row)
    print(f"  {data} {method:30s} F1 {m['f1']:.3f} AP {m['ap']:.3f} P {m['precision']:.3f} R {m['recall']:.3f} "
          f"mIoU {m['mean_iou_matched']:.3f} objects {m['n_pred']}/{m['n_true']}  "
          f"embed {embed:.1f} s + segment {seg:.1f} s" + (f"; per-slice F1 {extra['slice_f1_mean']:.3f}, slices "
          f"spanned {extra['z_extent_median_pred']:.0f} (truth {extra['z_extent_median_true']:.0f})"
          if "slice_f1_mean" in extra else ""), flush=True)


def _head_row(out, data, predictor):
    if getattr(predictor.model, "instance_head", None) is None:
        out["rows"].append({"data": data, "method": "head", "status": "not available"})
        print(f"  {data} head mode: not available (the model has no instance head)", flush=True)


def quality_table(res: dict) -> str:
    lines = [f"Quality vs ground truth ({res['ap_definition']}); model {res['model']}, {res['precision_used']}",
             "| data | method | F1@0.5 | AP@0.5 | precision | recall | mean IoU matched | objects (truth) "
             "| embed s | segment s | 3D: F1 per slice, slices spanned (truth) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        if r.get("status"):
            lines.append(f"| {r['data']} | {r['method']} | {r['status']} | | | | | | | | |")
            continue
        lines.append(f"| {r['data']} | {r['method']} | {r['f1']:.3f} | {r['ap']:.3f} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {r['mean_iou_matched']:.3f} | {r['n_pred']} ({r['n_true']}) | "
                     f"{r['embed_s'] or '-'} | {r['segment_s']} | " + (f"{r['slice_f1_mean']:.3f}, "
                     f"{r['z_extent_median_pred']:.0f} ({r['z_extent_median_true']:.0f})" if "slice_f1_mean" in r
                     else "") + " |")
    return "\n".join(lines)


# -- part B: speed ---------------------------------------------------------------------------------

def speed(args) -> dict:
    from napari_segany.sample_data import load_sample

    image = load_sample("nuclei2d")[:args.crop, :args.crop]
    out = {"image": f"nuclei2d {image.shape}", "repeats": args.repeats}
    if not args.skip_included:
        out["included"] = speed_included(args, image)
    if not args.skip_vit_b:
        out["vit_b"] = speed_vit_b(args, image)
    return out


def speed_included(args, image) -> dict:
    """The included model's grid mode at default settings and at 32 points per side, and its head mode."""
    import napari_segany as sg

    pred = sg.Predictor(sg.load_model(device="cpu"), precision=args.precision)
    pred.encode(image, views=1)  # warm-up
    t0 = time.perf_counter()
    emb = pred.encode(image, views=1)
    embed = time.perf_counter() - t0
    settings = dict(methods(pred, 32))
    fns = [lambda s=s: sg.segment_everything(pred, embedding=emb, settings=s) for s in settings.values()]
    for fn in fns:
        fn()  # warm-up
    out = {"precision_used": pred.precision, "model": pred.model.info.name, "embed_s": round(embed, 3), "rows": []}
    for (name, s), (t, res) in zip(settings.items(), _interleaved(fns, args.repeats)):
        out["rows"].append({"settings": name, **t, "objects": len(res.table), "grid": _settings(s)})
        print(f"  included model, {name}: {t['median_s']:.2f} s median ({t['min_s']:.2f} min), "
              f"{len(res.table)} objects", flush=True)
    return out


def speed_vit_b(args, image) -> dict:
    """vit_b with seeded random weights: ours against SamAutomaticMaskGenerator (see module doc)."""
    import torch
    from segment_anything import SamAutomaticMaskGenerator

    import napari_segany as sg
    from napari_segany.cli.benchmark import reference_model
    from napari_segany.auto.everything import MIN_FREE_SHARE
    from napari_segany.auto.grid import GridSettings
    from napari_segany.engine.preprocess import intensity_window, to_unit_range

    unit = to_unit_range(image, intensity_window(image[..., None]))
    rgb = np.repeat((unit * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
    ref_model = reference_model("vit_b")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random_vit_b.pth"
        torch.save(ref_model.state_dict(), path)
        ours_model = sg.load_model(path, device="cpu")
    n, iou_t, stab_t, nms = args.points, args.min_iou, args.min_stability, args.nms
    # SAM skips a filter whose threshold is 0 (keeping negative scores) where ours keeps scores >= its
    # threshold; a stability threshold of 0 keeps every candidate on both sides
    ref_iou_t = iou_t or 1e-6
    gen = SamAutomaticMaskGenerator(ref_model, points_per_side=n, points_per_batch=64, pred_iou_thresh=ref_iou_t,
                                    stability_score_thresh=stab_t, stability_score_offset=1.0, box_nms_thresh=nms,
                                    crop_n_layers=0, min_mask_region_area=0, output_mode="binary_mask")
    t0 = time.perf_counter()
    gen.predictor.set_image(rgb)
    ref_embed = time.perf_counter() - t0
    _reuse_embedding(gen.predictor)
    ours = sg.Predictor(ours_model, precision="fp32", regions=args.regions)
    t0 = time.perf_counter()
    emb = ours.encode(rgb, views=1)
    ours_embed = time.perf_counter() - t0
    s = GridSettings(points_per_side=n, min_iou=iou_t, min_stability=stab_t, stability_offset=1.0, nms_iou=nms,
                     min_area=0)
    before_nms = _candidates_before_nms(gen, rgb, ours, emb, s)  # also the warm-ups
    (ref_t, anns), (our_t, res) = _interleaved(
        [lambda: gen.generate(rgb), lambda: sg.segment_everything(ours, embedding=emb, settings=s)], args.repeats)

    masks = [a["segmentation"] for a in anns]
    best = best_overlap_iou(masks, res.labels)
    order = sorted(range(len(anns)), key=lambda k: (-anns[k]["predicted_iou"], -anns[k]["stability_score"]))
    painted = paint_like_ours(masks, order, s.min_area, MIN_FREE_SHARE)
    best_painted = best_overlap_iou([painted == i for i in range(1, int(painted.max()) + 1)], res.labels)

    def share(ious):
        return round(float((ious >= 0.95).mean()), 4) if len(ious) else 0.0

    v = {"weights": "seeded random (napari_segany.cli.benchmark.reference_model('vit_b'), seed 0), one state dict",
         "precision": "fp32 (both)", "ours_regions": args.regions, "points_per_side": n,
         "thresholds": {"pred_iou_thresh = min_iou": iou_t, "stability_score_thresh = min_stability": stab_t,
                        "stability_offset": 1.0, "box_nms_thresh = nms_iou": nms,
                        "min_mask_region_area = min_area": 0, "crop_n_layers": 0, "points_per_batch (ref)": 64,
                        "batch (ours)": s.batch},
         "reference_pred_iou_thresh_passed": ref_iou_t,
         "reference_set_image_s": round(ref_embed, 3), "ours_encode_s": round(ours_embed, 3),
         "candidates_before_nms_and_decoder_s": before_nms,
         "reference": {**ref_t, "masks": len(anns), "empty_masks": int(sum(not m.any() for m in masks))},
         "ours": {**our_t, "objects": len(res.table)},
         "speedup_reference_over_ours": round(ref_t["median_s"] / our_t["median_s"], 2),
         "reference_masks_matched_iou95": int((best >= 0.95).sum()), "reference_masks_matched_iou95_share": share(best),
         "reference_painted_objects": len(best_painted), "reference_painted_matched_iou95_share": share(best_painted),
         "reference_best": [{k: round(float(a[k]), 4) for k in ("predicted_iou", "stability_score", "area")}
                            for a in sorted(anns, key=lambda a: -a["predicted_iou"])[:3]],
         "ours_best": [{k: r[k] for k in ("predicted_iou", "stability", "area")} for r in res.table[:3]]}
    print(f"  vit_b {n}x{n}: reference {ref_t['median_s']:.2f} s ({len(anns)} masks), ours {our_t['median_s']:.2f} s "
          f"({len(res.table)} objects): {v['speedup_reference_over_ours']:.2f}x; reference masks matched at "
          f"IoU>=0.95: {share(best):.1%}, of the reference painted without overlaps: {share(best_painted):.1%}",
          flush=True)
    return v


def _interleaved(fns, repeats: int):
    """Each function timed ``repeats`` times, taking turns (drift on a shared machine hits all alike)."""
    times = [[] for _ in fns]
    outs = [None] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t0)
    return [({"min_s": round(min(t), 3), "median_s": round(statistics.median(t), 3),
              "runs_s": [round(x, 3) for x in t]}, o) for t, o in zip(times, outs)]


def _candidates_before_nms(gen, rgb, ours, emb, settings) -> dict:
    """Candidates each side keeps before box NMS, and the seconds spent in the mask decoder (its
    predictor call), in one untimed run each, which is also the warm-up."""
    import napari_segany as sg
    from napari_segany.auto import everything as automatic

    out = {"reference": 0, "ours": 0, "reference_decoder_s": 0.0, "ours_decoder_s": 0.0}

    def counted(fn, key, size):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            res = fn(*a, **k)
            if size is None:
                out[key] += time.perf_counter() - t0
            else:
                out[key] += size(res)
            return res
        return wrapper

    gen._process_batch = counted(gen._process_batch, "reference", lambda d: len(d["iou_preds"]))
    gen.predictor.predict_torch = counted(gen.predictor.predict_torch, "reference_decoder_s", None)
    grid, batch = automatic.grid_candidates, ours.predict_batch
    automatic.grid_candidates = counted(grid, "ours", len)
    ours.predict_batch = counted(batch, "ours_decoder_s", None)
    try:
        gen.generate(rgb)
        sg.segment_everything(ours, embedding=emb, settings=settings)
    finally:
        del gen._process_batch, gen.predictor.predict_torch, ours.predict_batch
        automatic.grid_candidates = grid
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def _reuse_embedding(predictor) -> None:
    """Make a SamPredictor's set_image/reset_image keep the embedding it holds: the generator
    calls both on every generate(), and the embedding is timed apart."""
    kept = {k: getattr(predictor, k) for k in ("features", "original_size", "input_size", "is_image_set")}
    predictor.set_image = lambda image, image_format="RGB": predictor.__dict__.update(kept)
    predictor.reset_image = lambda: None


def speed_table(res: dict) -> str:
    lines = [f"Speed after the embedding, {res['image']}, {res['repeats']} runs after a warm-up",
             "| model | method | grid | min s | median s | objects / masks |", "|---|---|---|---|---|---|"]
    inc = res.get("included")
    for r in inc["rows"] if inc else []:
        lines.append(f"| included ({inc['precision_used']}) | ours | {r['settings']} | {r['min_s']} | "
                     f"{r['median_s']} | {r['objects']} |")
    v = res.get("vit_b")
    if v:
        g = f"{v['points_per_side']}/side"
        for name, r, k in (("SamAutomaticMaskGenerator", v["reference"], "masks"), ("ours", v["ours"], "objects")):
            lines.append(f"| vit_b random (fp32) | {name} | {g} | {r['min_s']} | {r['median_s']} | {r[k]} |")
        lines.append(f"\nreference / ours: {v['speedup_reference_over_ours']}x; reference masks matched by ours at "
                     f"IoU >= 0.95: {v['reference_masks_matched_iou95']}/{v['reference']['masks']} "
                     f"({v['reference_masks_matched_iou95_share']:.1%}); of the reference painted without overlaps "
                     f"({v['reference_painted_objects']} objects): {v['reference_painted_matched_iou95_share']:.1%}; "
                     f"candidates before NMS and decoder seconds: {v['candidates_before_nms_and_decoder_s']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quality", action="store_true", help="part A: quality against the labels")
    p.add_argument("--speed", action="store_true", help="part B: speed, ours against the reference")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="auto", help="the included model's precision (auto, fp32, bf16)")
    p.add_argument("--grid2d", type=int, default=32, help="points per side of the second 2D grid")
    p.add_argument("--grid3d", type=int, default=24, help="points per side of the second 3D grid")
    p.add_argument("--points", type=int, default=32, help="points per side for vit_b against the reference")
    p.add_argument("--min-iou", type=float, default=0.0, help="pred_iou_thresh = min_iou for vit_b (random weights)")
    p.add_argument("--min-stability", type=float, default=0.0, help="stability_score_thresh = min_stability for vit_b")
    p.add_argument("--nms", type=float, default=0.7, help="box_nms_thresh = nms_iou for vit_b (0.7: both defaults)")
    p.add_argument("--regions", default="all", help="our predictor's regions for vit_b ('all': masks as the "
                   "reference's; 'prompted' is the library default)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-vit-b", action="store_true", help="speed: the included model only")
    p.add_argument("--skip-included", action="store_true", help="speed: vit_b against the reference only")
    p.add_argument("--crop", type=int, default=None, help="development: the top-left N x N pixels only")
    p.add_argument("--slices", type=int, default=None, help="development: N middle slices of the 3D stack only")
    p.add_argument("--save", action="store_true", help="write benchmarks/results/automatic_<part>_cpu_<date>.json")
    p.add_argument("--name", default="", help="with --save: a suffix for the file names (e.g. _vit_b)")
    p.add_argument("--json", default=None, help="write all results to this file")
    args = p.parse_args(argv)
    if not (args.quality or args.speed):
        p.error("choose --quality and/or --speed")
    import torch

    torch.set_num_threads(args.threads)
    results = {}
    for part, fn, table in (("quality", quality, quality_table), ("speed", speed, speed_table)):
        if getattr(args, part):
            print(f"{part}:", flush=True)
            res = {"benchmark": f"automatic_{part}", **env(args), "subset": {"crop": args.crop, "slices": args.slices},
                   **fn(args), "load_avg_1min_at_end": round(os.getloadavg()[0], 2)}
            print(table(res))
            results[part] = res
            if args.save:
                path = RESULTS / f"automatic_{part}{args.name}_cpu_{res['date']}.json"
                path.write_text(json.dumps(res, indent=1))
                print(f"wrote {path}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

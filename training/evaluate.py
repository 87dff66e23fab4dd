"""Evaluation on the real sample data (never used for training), for a model and a classical baseline.

    python -m training.evaluate --model model.pt --out results/eval      # model + baseline
    python -m training.evaluate --baseline-only --out results/baseline

Protocols (prompts derived from the ground truth, identical for both methods):

- 2D nuclei (``nuclei2d``, 125 objects), per object:
  ``click``: one positive click at the interior point farthest from the
  boundary (multimask output, best-scored candidate);
  ``box``: the tight box (inclusive maxima, single-mask output);
  ``click+k``: from the ``click`` result, up to 4 correction clicks, each at
  the centre of the largest error region (positive on a miss, negative on a
  spurious region; :func:`training.prompts.centre_correction`), all clicks
  plus the previous logits as ``mask_input`` (single-mask output). IoU after
  each click is reported (an exact mask stays exact).
- 3D nuclei (``nuclei3d``, 20 objects): one click (rule above) on the
  object's middle slice (mid-way between its first and last slice, or the
  nearest slice holding it), then :func:`napari_segany.propagate` with its
  defaults and the sample's voxel size; 3D IoU of the result.

The classical baseline is :mod:`training.baseline`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from napari_segany.engine.crop_geometry import CONTRASTS
from napari_segany.sample_data import load_sample, voxel_size
from napari_segany.engine.views import VIEW_COUNTS

from . import baseline
from .prompts import centre_correction, farthest_interior_point, tight_box

N_CORRECTIONS = 4


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean arrays (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def objects(labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(id, bool mask) per non-zero label, in id order."""
    return [(int(i), labels == i) for i in np.unique(labels) if i != 0]


def middle_slice(mask3d: np.ndarray) -> int:
    """The slice mid-way between the first and last slice holding the object (or the nearest holding it)."""
    zs = np.flatnonzero(mask3d.any(axis=(1, 2)))
    mid = (zs[0] + zs[-1]) // 2
    return int(zs[np.argmin(np.abs(zs - mid))])


class ModelMethod:
    """The protocols' prompts served by a :class:`napari_segany.Predictor`."""

    name = "model"

    def __init__(self, predictor, zoom: bool = False, **zoom_options) -> None:
        from napari_segany.engine.zoom import ZoomPredictor

        self.predictor = predictor
        # the 2D protocols go through the ZoomPredictor when asked; propagation zooms by itself (never on
        # slices under 427 px, so not on the 256 px sample)
        self.prompter = ZoomPredictor(predictor, **zoom_options) if zoom else predictor

    def set_image(self, image: np.ndarray) -> None:
        self.prompter.set_image(image)

    def click(self, point, prompter=None):
        pred = (prompter or self.prompter).predict(points=[point], multimask=True)
        self.last_score = float(pred.scores[0])
        return pred.mask(0), (pred.logits[0], pred.window)  # the state: logits and the crop they live in

    def box(self, box):
        pred = self.prompter.predict(box=box, multimask=False)
        self.last_score = float(pred.scores[0])
        return pred.mask(0)

    def refine(self, points, labels, state):
        logits, window = state
        where = {} if self.prompter is self.predictor else {"mask_window": window}
        pred = self.prompter.predict(points=points, labels=labels, mask_input=logits, multimask=False, **where)
        return pred.mask(0), (pred.logits[0], pred.window)

    def volume(self, volume, z, point, spacing):
        from napari_segany import EmbeddingStore, propagate

        if getattr(self, "_volume", None) is not volume:  # one store (embeddings) per volume
            self._store = EmbeddingStore(self.predictor, volume, axis=0, prefetch=0)
            self._volume = volume
        self.predictor.set_embedding(self._store.get(z))
        seed, _ = self.click(point, self.predictor)
        if not seed.any():  # nothing to propagate: the object is missed on every slice
            return np.zeros(volume.shape, bool)
        result = propagate(volume, {z: seed}, store=self._store, spacing=spacing, label_id=1)
        return result.labels == 1


class BaselineMethod:
    """The same prompts answered by :mod:`training.baseline`."""

    name = "baseline"

    def set_image(self, image: np.ndarray) -> None:
        self.image = baseline.prepare(image)

    def click(self, point):
        mask = baseline.segment_click(self.image, point)
        return mask, mask  # the state carried to corrections is the previous mask

    def box(self, box):
        return baseline.segment_box(self.image, box)

    def refine(self, points, labels, state):
        mask = baseline.segment_clicks(self.image, points, labels, previous=state)
        return mask, mask

    def volume(self, volume, z, point, spacing):
        return baseline.segment_volume(volume, z, point)


def eval_2d(method, image, labels) -> dict:
    """The three 2D protocols; returns per-object IoUs and their means."""
    method.set_image(image)
    res = {"click": [], "box": [], "corrections": []}
    scored = []  # (predicted IoU, true IoU) of the click and box masks, for methods that score masks
    for _, gt in objects(labels):
        point = farthest_interior_point(gt)
        mask, state = method.click(point)
        res["click"].append(iou(mask, gt))
        scored.append((getattr(method, "last_score", None), res["click"][-1]))
        res["box"].append(iou(method.box(tight_box(gt)), gt))
        scored.append((getattr(method, "last_score", None), res["box"][-1]))
        points, labs, curve = [point], [1], [res["click"][-1]]
        for _ in range(N_CORRECTIONS):
            click = centre_correction(mask, gt)
            if click is None:
                curve.append(curve[-1])
                continue
            points.append(click[:2])
            labs.append(click[2])
            mask, state = method.refine(points, labs, state)
            curve.append(iou(mask, gt))
        res["corrections"].append(curve)
    curves = np.array(res["corrections"])
    out = {"n": len(res["click"]), "click": float(np.mean(res["click"])), "box": float(np.mean(res["box"])),
           "after_clicks": [float(v) for v in curves.mean(0)], "per_object": res}
    if scored[0][0] is not None:
        out["score_calibration"] = calibration(np.array(scored, float))
    return out


def calibration(pairs: np.ndarray) -> dict:
    """How the model's predicted IoU (column 0) relates to the true IoU (column 1)."""
    pred, true = pairs[:, 0], pairs[:, 1]
    bins = {}
    edges = (0.0, 0.5, 0.6, 0.7, 0.8, 1.01)
    for lo, hi in zip(edges, edges[1:]):
        sel = (pred >= lo) & (pred < hi)
        if sel.any():
            bins[f"{lo:.1f}-{min(hi, 1.0):.1f}"] = {"n": int(sel.sum()), "true_iou": float(true[sel].mean())}
    return {"n": len(pairs), "predicted_mean": float(pred.mean()), "true_mean": float(true.mean()),
            "correlation": float(np.corrcoef(pred, true)[0, 1]), "by_predicted": bins}


def eval_3d(method, volume, labels, spacing) -> dict:
    """One click on each object's middle slice, then propagation; 3D IoU per object."""
    ious = []
    for _, gt in objects(labels):
        z = middle_slice(gt)
        point = farthest_interior_point(gt[z])
        ious.append(iou(method.volume(volume, z, point, spacing), gt))
    return {"n": len(ious), "propagate": float(np.mean(ious)), "per_object": ious}


def eval_synthetic(method, n_images: int, seed: int = 0, per_image: int = 20, **scene) -> dict:
    """1-click and box protocols on held-out generated 512 x 512 scenes (kinds in turn).

    The scenes come from seeds ``[seed, 2_000_000 + i]``, which training never
    draws (it uses ``[seed, step]`` and ``[seed, 1_000_000 + i]``): the same
    distribution as training, different images. Up to ``per_image`` objects of
    at least 30 px per scene; ``scene``: further options of
    :func:`training.synth.generate` (e.g. ``brightness_sigma``). Returns mean
    IoUs per kind.
    """
    from .synth import KINDS, generate

    res: dict[str, dict[str, list[float]]] = {k: {"click": [], "box": []} for k in KINDS}
    for i in range(n_images):
        kind = KINDS[i % len(KINDS)]
        sample = generate(np.random.default_rng([seed, 2_000_000 + i]), (512, 512), kind, **scene)
        method.set_image(sample.image)
        masks = [m for m in sample.masks if np.count_nonzero(m) >= 30][:per_image]
        for gt in masks:
            res[kind]["click"].append(iou(method.click(farthest_interior_point(gt))[0], gt))
            res[kind]["box"].append(iou(method.box(tight_box(gt)), gt))
    return {k: {"n": len(v["click"]), "click": float(np.mean(v["click"])), "box": float(np.mean(v["box"]))}
            for k, v in res.items() if v["click"]}


def _model_method(path: str, threads: int | None, zoom: bool = False, views: int = 1, **zoom_options) -> ModelMethod:
    import torch

    from napari_segany import Predictor
    from napari_segany.weights.load import load_model

    if threads:
        torch.set_num_threads(threads)
    method = ModelMethod(Predictor(load_model(path, device="cpu"), views=views), zoom=zoom, **zoom_options)
    scale, contrast = zoom_options.get("max_scale"), zoom_options.get("contrast")
    method.name = (f"model ({Path(path).name})" + (", zoomed" if zoom else "") + (f" x{scale:g}" if scale else "")
                   + (f", crops at the {contrast}'s contrast" if contrast else "")
                   + (f", {views} views" if views > 1 else ""))
    return method


def table(results: dict) -> str:
    """Markdown tables: real data (one row per method, one column per protocol), then the
    held-out generated scenes where they were scored."""
    head = ["method", "1 click", "box", "+1 corr.", "+2 corr.", "+3 corr.", "+4 corr.", "3D propagate"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    real = {k: r for k, r in results.items() if "2d" in r or "3d" in r}
    for name, r in real.items():
        d2, d3 = r.get("2d", {}), r.get("3d", {})
        ac = d2.get("after_clicks", [float("nan")] * 5)
        vals = [d2.get("click", float("nan")), d2.get("box", float("nan")), *ac[1:], d3.get("propagate", float("nan"))]
        rows.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    synthetic = {k: r["synthetic"] for k, r in results.items() if "synthetic" in r}
    if synthetic:
        rows = (rows if real else []) + ["", "| held-out synthetic | kind | n | 1 click | box |", "|---|---|---|---|---|"]
        rows += [f"| {name} | {kind} | {v['n']} | {v['click']:.3f} | {v['box']:.3f} |"
                 for name, syn in synthetic.items() for kind, v in syn.items()]
    return "\n".join(rows).strip()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="checkpoint path or registry name (served through load_model + Predictor)")
    p.add_argument("--baseline-only", action="store_true")
    p.add_argument("--no-3d", action="store_true", help="skip the 3D protocol")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="also score N held-out generated scenes (in-distribution check)")
    p.add_argument("--synthetic-brightness-sigma", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="held-out scenes with this nucleus-brightness spread (default: the generator's)")
    p.add_argument("--synthetic-bright-fraction", type=float, default=None,
                   help="held-out scenes with up to this fraction of condensed bright nuclei (default: none)")
    p.add_argument("--synthetic-only", action="store_true",
                   help="score only the held-out generated scenes, with the model only (no real data, no baseline)")
    p.add_argument("--zoom", action="store_true",
                   help="also score the model through ZoomPredictor (small objects from enlarged crops)")
    p.add_argument("--zoom-max-scale", type=float, default=None, metavar="S",
                   help="with --zoom: largest enlargement of image pixels (default: napari_segany.engine.zoom.MAX_SCALE)")
    p.add_argument("--crop-contrast", default=None, choices=CONTRASTS,
                   help="with --zoom: the crops' intensity window (default: napari_segany.engine.zoom's, image)")
    p.add_argument("--views", type=int, default=1, choices=VIEW_COUNTS,
                   help="mirrored views averaged in the 2D protocols (napari_segany.engine.views; 3D never uses them)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, required=True, help="output stem: writes STEM.json and STEM.md")
    args = p.parse_args(argv)
    if not args.model and not args.baseline_only:
        p.error("pass --model PATH or --baseline-only")
    if args.synthetic_only and not (args.model and args.synthetic):
        p.error("--synthetic-only needs --model and --synthetic N")
    scene = {}
    if args.synthetic_brightness_sigma:
        scene["brightness_sigma"] = tuple(args.synthetic_brightness_sigma)
    if args.synthetic_bright_fraction is not None:
        scene["bright_fraction"] = args.synthetic_bright_fraction
    img2, lab2 = load_sample("nuclei2d"), load_sample("nuclei2d_labels")
    vol, lab3 = load_sample("nuclei3d"), load_sample("nuclei3d_labels")
    spacing = voxel_size("nuclei3d")
    methods = [] if args.synthetic_only else [BaselineMethod()]
    if args.model:
        options = {} if args.zoom_max_scale is None else {"max_scale": args.zoom_max_scale}
        if args.crop_contrast:
            options["contrast"] = args.crop_contrast
        methods[:0] = [_model_method(args.model, args.threads, zoom, args.views, **(options if zoom else {}))
                       for zoom in (False, True)[: 1 + args.zoom]]
    results = {}
    for m in methods:
        t0 = time.perf_counter()
        key = m.name
        results[key] = {} if args.synthetic_only else {"2d": eval_2d(m, img2, lab2)}
        if not (args.no_3d or args.synthetic_only):
            results[key]["3d"] = eval_3d(m, vol, lab3, spacing)
        if args.synthetic:
            results[key]["synthetic"] = eval_synthetic(m, args.synthetic, **scene)
            results[key]["synthetic_scene"] = {k: list(v) if isinstance(v, tuple) else v for k, v in scene.items()}
            print(key, "synthetic:", json.dumps(results[key]["synthetic"]), flush=True)
        results[key]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"{key}: {results[key]['seconds']} s", flush=True)
    md = table(results)
    print(md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # STEM + suffix (not with_suffix: a stem like "name.views4" must keep its last part)
    args.out.with_name(args.out.name + ".json").write_text(json.dumps(results, indent=1))
    args.out.with_name(args.out.name + ".md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

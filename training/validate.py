"""The validation rule's numbers: 24 generated scenes drawn like the held-out ones but with seed 1
(kinds in turn, 512 x 512, up to 20 objects of at least 30 px each), served zoomed with one view
(``--views N`` averages N mirrored views; the CLI and the widget serve the model's 4).

    python -m training.validate --model PATH [--no-scorer] [--crop-contrast object] [--views N]
    python -m training.validate --model PATH --kind nuclei --bright-fraction 0.3 --scenes 12

The second form draws only one kind of scene (the same seeds), optionally with condensed bright
nuclei among dim ones (:func:`training.synth.generate`'s ``bright_fraction``, which the shipped
model never saw in training): the check crops windowed to the object were judged by.

Prints one JSON line: per kind the mean IoU of one click, of the tight box and over 4 correction
clicks (the evaluation's rules, :mod:`training.evaluate`); ``mean6``, the mean of the three
kinds' click and box numbers; ``corrections``, the mean over kinds of the correction numbers.
Choices about serving and later training stages are made on these numbers, never on the real
data.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from napari_segany import Predictor
from napari_segany.engine.crop_geometry import CONTRASTS
from napari_segany.engine.views import VIEW_COUNTS
from napari_segany.weights.load import load_model

from .evaluate import N_CORRECTIONS, ModelMethod, iou
from .prompts import centre_correction, farthest_interior_point, tight_box
from .synth import KINDS, generate

SCENES, SEED, OFFSET = 24, 1, 2_000_000


def corrections(method: ModelMethod, gt: np.ndarray, point, mask, state) -> list[float]:
    """IoU after each of up to 4 centre corrections (the last one repeated when none is left)."""
    points, labels, curve = [point], [1], []
    for _ in range(N_CORRECTIONS):
        click = centre_correction(mask, gt)
        if click is None:
            curve.append(curve[-1] if curve else iou(mask, gt))
            continue
        points.append(click[:2])
        labels.append(click[2])
        mask, state = method.refine(points, labels, state)
        curve.append(iou(mask, gt))
    return curve


def validate(method: ModelMethod, scenes: int = SCENES, kinds: tuple[str, ...] = KINDS, **scene) -> dict:
    """Per kind the mean IoUs; ``scene``: further options of :func:`training.synth.generate`."""
    res = {k: {"click": [], "box": [], "corrections": []} for k in kinds}
    for i in range(scenes):
        kind = kinds[i % len(kinds)]
        sample = generate(np.random.default_rng([SEED, OFFSET + i]), (512, 512), kind, **scene)
        method.set_image(sample.image)
        for gt in [m for m in sample.masks if np.count_nonzero(m) >= 30][:20]:
            point = farthest_interior_point(gt)
            mask, state = method.click(point)
            res[kind]["click"].append(iou(mask, gt))
            res[kind]["box"].append(iou(method.box(tight_box(gt)), gt))
            res[kind]["corrections"].append(corrections(method, gt, point, mask, state))
    out: dict = {k: {p: float(np.mean(v)) for p, v in r.items()} for k, r in res.items()}
    out["mean6" if kinds == KINDS else "mean"] = float(np.mean([out[k][p] for k in kinds for p in ("click", "box")]))
    out["corrections"] = float(np.mean([out[k]["corrections"] for k in kinds]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.validate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint path or registry name")
    p.add_argument("--no-scorer", action="store_true", help="serve without the model's candidate scorer")
    p.add_argument("--crop-contrast", default=CONTRASTS[0], choices=CONTRASTS,
                   help="the zoomed crops' intensity window (napari_segany.engine.zoom.ZoomPredictor's contrast)")
    p.add_argument("--kind", choices=KINDS, default=None, help="only scenes of this kind (default: all in turn)")
    p.add_argument("--bright-fraction", type=float, default=0.0,
                   help="nuclei scenes with up to this fraction of condensed bright nuclei (default 0, as trained)")
    p.add_argument("--scenes", type=int, default=SCENES)
    p.add_argument("--views", type=int, default=1, choices=VIEW_COUNTS,
                   help="mirrored views averaged (napari_segany.engine.views; default 1, the rules' setting)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    if args.no_scorer:
        model.scorer = None
    method = ModelMethod(Predictor(model, views=args.views), zoom=True, contrast=args.crop_contrast)
    kinds = KINDS if args.kind is None else (args.kind,)
    scene = {"bright_fraction": args.bright_fraction} if args.bright_fraction else {}
    print(json.dumps(validate(method, args.scenes, kinds, **scene)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

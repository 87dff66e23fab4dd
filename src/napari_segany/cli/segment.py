"""``napari-segany segment``: one object from prompts on a 2D image or one slice."""

from __future__ import annotations

import argparse
import json

import numpy as np

from . import args as cli_args
from ..engine.crop_geometry import CONTRASTS


def register(sub) -> None:
    p = sub.add_parser(
        "segment",
        help="segment one object from point/box prompts and write a label image",
        description="Segment one object on a 2D image (or one slice of a volume) from point and box "
        "prompts, and write the chosen candidate as a label TIFF of the input's shape.",
    )
    p.add_argument("image", help="input image (TIFF, PNG, JPEG...)")
    p.add_argument("-o", "--output", required=True, help="output label TIFF")
    cli_args.add_model_options(p)
    p.add_argument("--point", action="append", type=cli_args.point, default=[], metavar="ROW,COL[,LABEL]",
                   help="a prompt point in pixels; LABEL 1 (default) foreground, 0 background; repeatable")
    p.add_argument("--box", type=cli_args.box, metavar="R0,C0,R1,C1",
                   help="a box prompt (min_row, min_col, max_row, max_col)")
    p.add_argument("--slice", type=int, default=None, metavar="Z", help="slice index along axis 0 of a volume")
    p.add_argument("--channel", type=int, default=None, help="channel (last axis) of a multichannel image")
    p.add_argument("--contrast-limits", type=cli_args.limits, default=None, metavar="LO,HI",
                   help="intensity window (default: 1st-99.8th percentiles)")
    p.add_argument("--no-zoom", action="store_true",
                   help="segment on the whole image only; by default a small object is segmented again on an "
                   "enlarged crop around it (napari_segany.engine.zoom), which gives finer masks")
    p.add_argument("--crop-contrast", default=CONTRASTS[0], choices=CONTRASTS,
                   help="intensity window of the enlarged crop: image (default) keeps the whole image's "
                   "(--contrast-limits or its percentiles); object ends it at the brightest pixels around the "
                   "object, so a dim object beside much brighter ones is seen at full contrast")
    p.add_argument("--views", type=int, default=None, choices=(1, 2, 4, 8),
                   help="mirrored copies of the image whose answers are averaged (better masks, one encoder "
                   "pass each; default: the model's recommendation, 4 for the included model, 1 for SAM)")
    p.add_argument("--candidate", default="best", choices=("best", "0", "1", "2"),
                   help="which candidate mask to keep: best (highest predicted IoU) or the rank 0-2")
    p.add_argument("--label-id", type=int, default=1, help="id written for the object (default 1)")
    p.add_argument("--overlay", default=None, metavar="PNG", help="also write a PNG picture of the result")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def _select_plane(image: np.ndarray, z: int | None, channel: int | None) -> tuple[np.ndarray, tuple]:
    """The 2D (or RGB) plane to segment and the index of that plane in the input."""
    if not 2 <= image.ndim <= 4:
        raise ValueError(f"the image has shape {image.shape}; segment reads a 2D image, RGB(A) or (H, W, C) "
                         "with --channel, or a volume (Z, Y, X) or (Z, Y, X, C) with --slice")
    if z is not None and image.ndim == 2:
        raise ValueError("--slice was given but the image is 2D; leave --slice out")
    rgb_like = image.ndim == 3 and image.shape[-1] in (3, 4) and channel is None and z is None
    if image.ndim == 2 or rgb_like or (image.ndim == 3 and channel is not None and z is None):
        return image, ()
    if z is None:
        raise ValueError(
            f"the image has shape {image.shape}, which looks like a volume; pass --slice Z "
            "(index along the first axis) to segment one slice"
        )
    if image.ndim < 3:
        raise ValueError("--slice was given but the image is 2D")
    if not 0 <= z < image.shape[0]:
        raise ValueError(f"--slice {z} is outside the volume, which has {image.shape[0]} slices (0-{image.shape[0] - 1})")
    return image[z], (z,)


def _check_channel(plane: np.ndarray, channel: int | None) -> None:
    """--channel against the plane, before the model loads (the rule of the API: 0 or none on a 2D
    image, -C to C-1 on an (H, W, C) one)."""
    if channel is None:
        return
    if plane.ndim == 2 and channel != 0:
        raise ValueError(f"--channel {channel} was given but the image is 2D, with a single channel; leave "
                         "--channel out")
    if plane.ndim == 3 and not -plane.shape[2] <= channel < plane.shape[2]:
        raise ValueError(f"--channel {channel} does not exist: the image has {plane.shape[2]} channels "
                         f"(0-{plane.shape[2] - 1})")


def run(args: argparse.Namespace) -> int:
    from ..files import overlay, read_image, write_labels, write_png
    from ..engine.predictor import Predictor
    from ..weights.load import load_model
    from ..engine.zoom import ZoomPredictor

    out = cli_args.check_output_and_prompts(args, [args.image])
    image = read_image(args.image)
    try:
        plane, where = _select_plane(image, args.slice, args.channel)
        _check_channel(plane, args.channel)
    except ValueError as err:
        raise ValueError(f"{args.image}: {err}") from None
    cli_args.check_prompts_fit(args, plane.shape[:2])

    model = load_model(args.model, device=args.device)
    views = model.info.views if args.views is None else args.views
    pred = base = Predictor(model, precision=args.precision, regions=args.regions, views=views, report=cli_args.note)
    if not args.no_zoom:
        pred = ZoomPredictor(pred, contrast=args.crop_contrast)
    pred.set_image(plane, channel=args.channel, contrast_limits=args.contrast_limits)
    points = [(r, c) for r, c, _ in args.point] or None
    labels = [lab for _, _, lab in args.point] or None
    multimask = len(args.point) + (args.box is not None) == 1
    res = pred.predict(points=points, labels=labels, box=args.box, multimask=multimask)
    k = 0 if args.candidate == "best" else int(args.candidate)
    if k >= len(res):
        raise ValueError(f"--candidate {k} does not exist: this prompt gives {len(res)} candidate(s)")
    mask = res.mask(k)

    result = np.zeros(image.shape[: len(where) + 2], np.uint16)  # the input's spatial axes
    result[where] = np.where(mask, args.label_id, 0)
    write_labels(out, result)
    if args.overlay:
        write_png(args.overlay, overlay(plane if args.channel is None else plane[..., args.channel],
                                        result[where]))
    w = res.window
    summary = {
        "output": str(out), "model": model.info.name, "precision": base.precision, "candidate": k,
        "score": round(float(res.scores[k]), 4), "scores": [round(float(s), 4) for s in res.scores],
        "area_px": int(mask.sum()), "slice": args.slice, "views": views, "refined": model.refiner is not None,
        "zoom_window": None if w is None else [w.top, w.left, w.height, w.width],
        "zoom_contrast_limits": None if w is None or w.limits is None else [float(v) for v in w.limits],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        where = "" if res.window is None else (f", segmented on the enlarged crop rows {res.window.top}-"
                                                f"{res.window.top + res.window.height - 1}, columns "
                                                f"{res.window.left}-{res.window.left + res.window.width - 1}")
        print(f"wrote {out}: object {args.label_id}, {summary['area_px']} px, candidate {k} "
              f"(predicted IoU {summary['score']:.3f}) with model {model.info.name} in {base.precision}"
              f"{f' averaged over {views} mirrored views' if views > 1 else ''}"
              f"{', outline refined by its boundary refiner' if summary['refined'] else ''}{where}")
    return 0

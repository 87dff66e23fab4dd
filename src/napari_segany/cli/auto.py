"""``napari-segany auto``: every object of an image, a volume or many images ("segment everything")."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import numpy as np

from . import args as cli_args
from .auto_files import DONE, PICTURE, Job, Layout, compact, count_rows, expand_inputs, layout, plan_jobs, state, \
    table_rows

RULE = ("A 2D input is one image. A 3D input is a volume (Z, Y, X), segmented slice by slice along --axis with "
        "ids kept across slices, unless its last axis holds 3 or 4 values (RGB/RGBA) or --channel is given: "
        "then it is one image (H, W, C); --volume reads every 3D input as a volume. A 4D input is a volume "
        "(Z, Y, X, C) and needs --channel.")


def register(sub) -> None:
    p = sub.add_parser(
        "auto", help="segment every object of images or volumes (no prompts) into label TIFFs and tables",
        description="Segment every object of each input with a grid of point prompts, and write a label "
        "TIFF (uint16, or uint32 above 65535 objects), a CSV table with one row per object and, with "
        f"--overlay, a PNG picture. {RULE} Resumable: an input whose outputs are complete is skipped; "
        "--overwrite segments it again. An input that fails is reported and the others go on; the exit "
        "status is then 1.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image or volume file, folder (its image files, sorted by name) or quoted pattern "
                   "such as 'plates/*.tif'")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--output-dir", "-d", metavar="DIR",
                       help="folder for the outputs: <name>_labels.tif, <name>_objects.csv and with --overlay "
                       "<name>_overlay.png per input")
    where.add_argument("-o", "--output", metavar="OUT.tif",
                       help="for one input: the label TIFF; the table and picture take its name ending in .csv "
                       "and .png")
    grid = p.add_argument_group("grid (which candidates become objects)")
    grid.add_argument("--points-per-side", type=_per_side, default=None, metavar="N",
                      help="prompt points along the longest side of the image (or of each model-sized tile); "
                      "default one every 32 pixels of the model's frame (16 for the included model, 32 for SAM)")
    grid.add_argument("--object-size", type=_diameter, default=None, metavar="PX",
                      help="diameter in pixels of the smallest objects to find: the grid is made dense enough "
                      "that each holds a point (instead of --points-per-side; slower for small sizes)")
    grid.add_argument("--min-iou", type=_fraction("--min-iou"), default=None, metavar="F",
                      help="least predicted IoU of an object (default: the model's propagation level + 0.08; "
                      "0.58 for the included model, 0.88 for SAM)")
    grid.add_argument("--min-stability", type=_fraction("--min-stability"), default=None, metavar="F",
                      help="least stability of the mask under a shift of its cut-off by +/-1 (default: the "
                      "model's; 0.95 for SAM, 0.5 for the included model, whose stability does not tell right "
                      "candidates from wrong)")
    grid.add_argument("--nms-iou", type=_fraction("--nms-iou"), default=0.7, metavar="F",
                      help="a candidate whose box overlaps a better one's by more is dropped (default 0.7)")
    grid.add_argument("--min-area", type=cli_args.count(0), default=20, metavar="PX",
                      help="least object size in pixels (default 20)")
    p.add_argument("--existing", default=None, metavar="LABELS.tif",
                   help="labels already drawn on the (one) input: they are kept and only unlabelled pixels "
                   "get new objects; the table lists the new objects")
    p.add_argument("--volume", action="store_true", help="read every 3D input as a volume (Z, Y, X)")
    p.add_argument("--axis", type=int, default=0, help="axis of a volume whose slices are segmented (default 0)")
    p.add_argument("--channel", type=int, default=None, help="channel (last axis) of an (H, W, C) image or a "
                   "(Z, Y, X, C) volume")
    p.add_argument("--contrast-limits", type=cli_args.limits, default=None, metavar="LO,HI",
                   help="intensity window (default: 1st-99.8th percentiles of each input)")
    cli_args.add_model_options(p)
    p.add_argument("--overlay", action="store_true",
                   help="also write a PNG picture of each result (of a volume: its middle slice along --axis)")
    p.add_argument("--overwrite", action="store_true", help="segment inputs again whose outputs exist")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of lines")
    p.set_defaults(func=run)


def _per_side(text: str) -> int:
    value = cli_args.count(1)(text)
    if value > 256:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 256, got {text!r}")
    return value


def _diameter(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 2.0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be an object diameter of at least 2 pixels, got {text!r}")
    return value


def _fraction(flag: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise argparse.ArgumentTypeError(f"{flag} must be a number from 0 to 1, got {text!r}")
        return value
    return parse


class _Model:
    """The predictor, loaded when the first input needs it (a resumed run of finished inputs
    loads nothing)."""

    def __init__(self, args):
        self.args, self.predictor = args, None

    def get(self):
        if self.predictor is None:
            from ..engine.predictor import Predictor
            from ..weights.load import load_model

            model = load_model(self.args.model, device=self.args.device)
            self.predictor = Predictor(model, precision=self.args.precision, regions=self.args.regions, views=1,
                                       report=cli_args.note)
        return self.predictor


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..auto.grid import GridSettings

    settings = GridSettings(points_per_side=args.points_per_side, object_size=args.object_size,
                            min_iou=args.min_iou,
                            min_stability=args.min_stability, nms_iou=args.nms_iou, min_area=args.min_area)
    sources = expand_inputs(args.inputs)
    if args.existing is not None and len(sources) != 1:
        raise ValueError(f"--existing gives the labels of one input, but {len(sources)} inputs were given; "
                         "segment that input on its own")
    jobs = plan_jobs(sources, output=args.output, output_dir=args.output_dir, overlay=args.overlay,
                     also_read=[args.existing] if args.existing else [])
    existing = None
    if args.existing is not None:
        from ..files import read_image

        existing = read_image(args.existing)
    model = _Model(args)
    results = []
    with tqdm(total=len(jobs), unit="input", desc="auto", disable=len(jobs) < 2) as bar:
        for job in jobs:
            bar.set_postfix_str(job.source.name, refresh=False)
            results.append(_one(job, args, settings, model, existing))
            bar.update(1)
            _say(results[-1], bar, args.json)
    failed = sum(r["status"] == "failed" for r in results)
    if args.json:
        pred = model.predictor
        print(json.dumps({
            "model": None if pred is None else pred.model.info.name,
            "precision": None if pred is None else pred.precision,
            "settings": {k: getattr(settings, k) for k in ("points_per_side", "object_size", "min_iou",
                                                             "min_stability", "nms_iou",
                                                             "min_area")},
            "segmented": sum(r["status"] == "segmented" for r in results),
            "skipped": sum(r["status"] == "skipped" for r in results), "failed": failed, "inputs": results,
        }))
    if len(results) > 1:
        tally = (f"{len(results)} inputs: {sum(r['status'] == 'segmented' for r in results)} segmented, "
                 f"{sum(r['status'] == 'skipped' for r in results)} skipped, {failed} failed")
        if failed:
            cli_args.note(f"error: {failed} of {len(results)} inputs failed (see above); {tally}")
        elif not args.json:
            print(tally)
    return 1 if failed else 0


def _one(job: Job, args, settings, model: _Model, existing) -> dict:
    """Segment one input and write its outputs; a problem with this input is its result ("failed",
    with the sentence), not the end of the run. A model that cannot be loaded ends the run."""
    started = time.perf_counter()
    result = {"path": str(job.source), "kind": None, "status": "failed", "outputs": job.outputs, "objects": None,
              "seconds": 0.0}
    try:
        try:
            from ..files import read_image

            plan = layout(read_image(job.source), volume=args.volume, channel=args.channel, axis=args.axis)
            result["kind"] = plan.kind
            if existing is not None and tuple(existing.shape) != plan.shape:
                raise ValueError(f"--existing {args.existing} has shape {tuple(existing.shape)} but the input's "
                                 f"labels are {plan.shape}; pass the labels of this input")
            if not args.overwrite:
                left, _, labels = state(job, plan.shape)
                if left in (DONE, PICTURE):
                    if left == PICTURE:
                        _write_picture(job, plan, labels, args)
                    result.update(status="skipped", objects=count_rows(job.table))
                    return result
        except (ValueError, TypeError, OSError) as err:
            return _failed(result, job, err)
        predictor = model.get()  # outside the per-input handling: a model that fails stops the run
        try:
            objects = _segment(predictor, plan, args, settings, existing, job.source.name)
            _write(job, plan, objects, args)
        except (ValueError, TypeError, OSError, RuntimeError, MemoryError) as err:
            return _failed(result, job, err)
        result.update(status="segmented", objects=len(objects.table))
        return result
    finally:
        result["seconds"] = round(time.perf_counter() - started, 3)


def _failed(result: dict, job: Job, err: BaseException) -> dict:
    text = str(err) if str(job.source) in str(err) else f"{job.source}: {err}"
    result.update(status="failed", error=text)
    return result


def _segment(predictor, plan: Layout, args, settings, existing, name: str):
    from tqdm import tqdm

    with tqdm(total=None, unit="prompt" if plan.kind == "image" else "slice", desc=name, leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        common = dict(settings=settings, existing=existing, progress=progress, channel=args.channel,
                      contrast_limits=args.contrast_limits)
        if plan.kind == "image":
            from ..auto.everything import segment_everything

            return segment_everything(predictor, plan.data, **common)
        from ..auto.volume import segment_volume

        return segment_volume(predictor, plan.data, axis=args.axis, **common)


def _write(job: Job, plan: Layout, objects, args) -> None:
    """The picture and the table first, the labels last: the labels TIFF marks the input as done."""
    from ..files import write_csv, write_labels

    labels = compact(np.asarray(objects.labels))
    if job.overlay is not None:
        _write_picture(job, plan, labels, args)
    write_csv(job.table, *table_rows(objects.table, plan.kind))
    write_labels(job.labels, labels)


def _write_picture(job: Job, plan: Layout, labels: np.ndarray, args) -> None:
    from ..files import overlay, write_png

    image = plan.data
    if plan.kind == "volume":
        axis = args.axis % 3
        middle = plan.shape[axis] // 2
        image = np.take(image if image.ndim == 3 else image[..., args.channel], middle, axis=axis)
        labels = np.take(labels, middle, axis=axis)
    elif args.channel is not None and image.ndim == 3:
        image = image[..., args.channel]
    write_png(job.overlay, overlay(image, labels))


def _say(result: dict, bar, quiet: bool) -> None:
    """A line per input: a failure on stderr always, what was done on stdout unless --json."""
    path = result["path"]
    if result["status"] == "failed":
        bar.write(f"error: {result['error']}", file=sys.stderr)
    elif quiet:
        return
    elif result["status"] == "skipped":
        bar.write(f"skipped {path}: its outputs are complete ({result['objects']} objects in "
                  f"{result['outputs']['objects']}); pass --overwrite to segment it again")
    else:
        files = ", ".join(result["outputs"].values())
        bar.write(f"wrote {files}: {result['objects']} objects in {result['seconds']:.1f} s")

"""``napari-segany auto``: every object of an image, a volume or many images ("segment everything")."""

from __future__ import annotations

import argparse
import json
import math
import sys

from . import args as cli_args
from ..auto.grid import MODES
from ..batch.inputs import expand_inputs
from ..batch.outputs import plan_jobs

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
    grid.add_argument("--mode", choices=MODES, default="auto",
                      help="where the prompts come from: 'grid' (a grid of points, any model), 'head' (one box "
                      "per object the model's instance head finds: fewer decoder calls), 'auto' (default): the grid "
                      "when --points-per-side or --object-size is given, else the head when the model has one "
                      "(the included model does), else the grid")
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
    cli_args.add_cluster_options(p)
    p.add_argument("--block-slices", type=cli_args.count(1), default=None, metavar="N",
                   help="with --cluster or --scheduler: a volume with more than N slices (first axis) is cut "
                   "into blocks of N slices, one task each, overlapping by --block-overlap slices, and its "
                   "objects are given one id across blocks; for volumes too large for one worker")
    p.add_argument("--block-overlap", type=cli_args.count(1), default=4, metavar="K",
                   help="slices shared by neighbouring blocks, where objects are matched (default 4)")
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


def run(args: argparse.Namespace) -> int:
    from .. import GridSettings
    from ..batch import AutoOptions, run_jobs

    settings = GridSettings(points_per_side=args.points_per_side, object_size=args.object_size,
                            min_iou=args.min_iou, min_stability=args.min_stability, nms_iou=args.nms_iou,
                            min_area=args.min_area, mode=args.mode)
    sources = expand_inputs(args.inputs)
    if args.existing is not None and len(sources) != 1:
        raise ValueError(f"--existing gives the labels of one input, but {len(sources)} inputs were given; "
                         "segment that input on its own")
    jobs = plan_jobs(sources, output=args.output, output_dir=args.output_dir, overlay=args.overlay,
                     also_read=[args.existing] if args.existing else [])
    options = AutoOptions(settings=settings, model=args.model, device=args.device, precision=args.precision,
                          regions=args.regions, volume=args.volume, axis=args.axis, channel=args.channel,
                          contrast_limits=args.contrast_limits, existing=args.existing, overwrite=args.overwrite,
                          block_slices=args.block_slices, block_overlap=args.block_overlap)
    with cli_args.client_for(args) as client:
        results, model = run_jobs(jobs, options, client=client, report=cli_args.note,
                                  on_result=lambda result, bar: _say(result, bar, args.json))
    failed = sum(r["status"] == "failed" for r in results)
    if args.json:
        print(json.dumps({
            "model": None if model is None else model[0],
            "precision": None if model is None else model[1],
            "settings": {k: getattr(settings, k) for k in ("mode", "points_per_side", "object_size", "min_iou",
                                                             "min_stability", "nms_iou", "min_area")},
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

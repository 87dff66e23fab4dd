"""``napari-segany embed`` and ``napari-segany propagate``: volumes from the command line."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from . import args as cli_args
from ..batch.propagate import SEEDS_SUFFIX


def register(sub) -> None:
    e = sub.add_parser(
        "embed", help="precompute the embeddings of every slice of volumes into disk caches",
        description="Embed every slice of each volume along one axis into a zarr disk cache (resumable: "
        "slices already cached are skipped, edited slices are recomputed). A volume that fails is reported "
        "and the others go on; the exit status is then 1.",
    )
    e.add_argument("volumes", nargs="+", metavar="VOLUME",
                   help="volume TIFF (Z, Y, X) or (Z, Y, X, C), zarr array or OME-Zarr image, a folder of them or "
                   "a quoted pattern such as 'stacks/*.tif'")
    e.add_argument("--cache", required=True, metavar="DIR",
                   help="cache folder (one per volume is best: with several volumes each gets DIR/<name>)")
    _common(e)
    cli_args.add_cluster_options(e, "volume")
    e.set_defaults(func=run_embed)

    p = sub.add_parser(
        "propagate", help="propagate objects through volumes: one prompted on a slice, or those drawn in a "
        "seeds file per volume",
        description="One volume: segment an object on slice Z from point/box prompts, propagate it along "
        "--axis and write the labels (-o). Many volumes (--output-dir): each VOLUME comes with "
        "<name>_seeds.tif beside it, a labels volume of its shape with objects drawn on one or more "
        "slices; every object is propagated from the slices where it is drawn, into DIR/<name>_labels.tif "
        "(resumable: existing outputs are skipped; a volume that fails is reported and the others go on).",
    )
    p.add_argument("volumes", nargs="+", metavar="VOLUME",
                   help="volume TIFF (Z, Y, X) or (Z, Y, X, C); with --output-dir also zarr arrays, OME-Zarr "
                   "images, folders of them or quoted patterns such as 'stacks/*.tif'")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", help="output label TIFF (one volume, prompted with --slice and "
                       "--point/--box)")
    where.add_argument("--output-dir", "-d", metavar="DIR",
                       help="folder for <name>_labels.tif of each volume, propagated from its seeds file")
    p.add_argument("--seeds-suffix", default=SEEDS_SUFFIX, metavar="SUFFIX",
                   help=f"with --output-dir: a volume's seeds are <name>SUFFIX.tif beside it (default {SEEDS_SUFFIX})")
    p.add_argument("--slice", type=int, default=None, metavar="Z", help="index of the prompted slice along --axis")
    p.add_argument("--point", action="append", type=cli_args.point, default=[], metavar="ROW,COL[,LABEL]",
                   help="a prompt point on that slice; LABEL 1 (default) foreground, 0 background; repeatable")
    p.add_argument("--box", type=cli_args.box, metavar="R0,C0,R1,C1", help="a box prompt on that slice")
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache folder (reused and filled)")
    p.add_argument("--spacing", type=cli_args.spacing, default=None,
                   metavar="DZ,DY,DX", help="voxel size per axis (physical volumes in the report)")
    p.add_argument("--iou-threshold", type=cli_args.iou_threshold, default=None,
                   help="stop below this predicted IoU (default: the model's; 0.8 for SAM models, 0.5 for the "
                   "included segany_vit_t_512)")
    p.add_argument("--area-change", type=cli_args.area_change, default=2.5,
                   help="stop when the area changes more than this factor between slices (default 2.5)")
    p.add_argument("--label-id", type=int, default=1, help="id written for the object (default 1)")
    p.add_argument("--no-zoom", action="store_true",
                   help="segment on whole slices only; by default an object that is small in a large slice is "
                   "segmented (on the prompted slice and while propagating) on an enlarged crop around it")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    _common(p)
    cli_args.add_cluster_options(p, "volume (with --output-dir)")
    p.set_defaults(func=run_propagate)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--axis", type=int, default=0, help="axis whose slices are segmented (default 0)")
    p.add_argument("--channel", type=int, default=None, help="channel (last axis) of a 4D volume")
    p.add_argument("--contrast-limits", type=cli_args.limits, default=None, metavar="LO,HI",
                   help="intensity window for every slice (default: 1st-99.8th percentiles of the volume)")
    cli_args.add_model_options(p)


def _store(args, volume, cache):
    from ..engine.predictor import Predictor
    from ..volume import EmbeddingStore
    from ..weights.load import load_model

    predictor = Predictor(load_model(args.model, device=args.device), precision=args.precision, regions=args.regions,
                          report=cli_args.note)
    return EmbeddingStore(predictor, volume, axis=args.axis, cache_dir=cache, channel=args.channel,
                          contrast_limits=args.contrast_limits, prefetch=0)


def run_embed(args: argparse.Namespace) -> int:
    from ..batch import AutoOptions, plan_caches, run_embed as embed_all
    from ..batch.inputs import expand_inputs

    cli_args.check_cache_folder(args.cache)
    volumes = plan_caches(expand_inputs(args.volumes), args.cache)
    options = AutoOptions(model=args.model, device=args.device, precision=args.precision, regions=args.regions,
                          axis=args.axis, channel=args.channel, contrast_limits=args.contrast_limits)
    many = len(volumes) > 1
    with cli_args.client_for(args) as client:
        results, _ = embed_all(volumes, options, client=client, report=cli_args.note,
                               on_result=lambda result, bar: _embedded(result, bar, many))
    failed = sum(r["status"] == "failed" for r in results)
    if many:
        tally = f"{len(results)} volumes: {len(results) - failed} embedded, {failed} failed"
        if failed:
            cli_args.note(f"error: {failed} of {len(results)} volumes failed (see above); {tally}")
        else:
            print(tally)
    return 1 if failed else 0


def _embedded(result: dict, bar, many: bool) -> None:
    if result["status"] == "failed":
        bar.write(f"error: {result['error']}", file=sys.stderr)
        return
    bar.write(f"{result['path'] + ': ' if many else ''}{result['slices']} slices along axis {result['axis']}: "
              f"{result['computed']} computed, {result['cached']} already cached, {result['recomputed']} damaged "
              f"and recomputed; cache {result['cache']} ({result['mib']:.1f} MiB)")


def run_propagate(args: argparse.Namespace) -> int:
    if args.output_dir is not None:
        return run_propagate_many(args)
    if (args.cluster, args.scheduler) != (None, None):
        raise ValueError("--cluster and --scheduler propagate many volumes from their seeds files; use them with "
                         "--output-dir DIR")
    if len(args.volumes) != 1:
        raise ValueError(f"{len(args.volumes)} volumes were given with -o, which names one output; to propagate "
                         "the objects drawn in each volume's seeds file use --output-dir DIR")
    if args.slice is None:
        raise ValueError("give the prompted slice with --slice Z (and --point or --box on it)")
    args.volume = args.volumes[0]
    return run_propagate_one(args)


def run_propagate_many(args: argparse.Namespace) -> int:
    from ..batch import AutoOptions, plan_propagations, run_propagations
    from ..batch.inputs import expand_inputs

    if args.slice is not None or args.point or args.box is not None or args.label_id != 1:
        raise ValueError("with --output-dir the objects come from each volume's seeds file, with their ids; leave "
                         "out --slice, --point, --box and --label-id (they prompt one volume, with -o)")
    if args.cache is not None:
        raise ValueError("--cache is for one volume (with -o); with --output-dir each volume is embedded as it "
                         "is propagated (napari-segany embed fills caches for many volumes)")
    jobs = plan_propagations(expand_inputs(args.volumes), args.output_dir, seeds_suffix=args.seeds_suffix)
    options = AutoOptions(model=args.model, device=args.device, precision=args.precision, regions=args.regions,
                          axis=args.axis, channel=args.channel, contrast_limits=args.contrast_limits,
                          overwrite=args.overwrite,
                          propagation={"iou_threshold": args.iou_threshold, "area_change": args.area_change,
                                       "spacing": args.spacing, "zoom": not args.no_zoom})
    with cli_args.client_for(args) as client:
        results, model = run_propagations(jobs, options, client=client, report=cli_args.note,
                                          on_result=lambda result, bar: _propagated(result, bar, args.json))
    failed = sum(r["status"] == "failed" for r in results)
    if args.json:
        print(json.dumps({"model": None if model is None else model[0], "volumes": results,
                          "propagated": sum(r["status"] == "propagated" for r in results),
                          "skipped": sum(r["status"] == "skipped" for r in results), "failed": failed}))
    elif failed:
        cli_args.note(f"error: {failed} of {len(results)} volumes failed (see above)")
    return 1 if failed else 0


def _propagated(result: dict, bar, quiet: bool) -> None:
    if result["status"] == "failed":
        bar.write(f"error: {result['error']}", file=sys.stderr)
    elif not quiet:
        bar.write(f"{result['path']}: " + (f"{result['objects']} objects propagated into {result['output']}"
                                           if result["status"] == "propagated" else
                                           f"skipped, {result['output']} exists (--overwrite redoes it)"))


def run_propagate_one(args: argparse.Namespace) -> int:
    from ..files import read_image, write_labels
    from ..volume import propagate

    out = cli_args.check_output_and_prompts(args, [args.volume])
    volume = read_image(args.volume)
    if volume.ndim < 3:
        raise ValueError(f"{args.volume} is a 2D image (shape {volume.shape}); use `napari-segany segment` for it")
    axis, n_slices = cli_args.check_volume_options(args, volume.shape, args.volume)
    if not 0 <= args.slice < n_slices:  # checked before the model loads
        raise ValueError(f"--slice {args.slice} is outside the volume, which has {n_slices} slices along "
                         f"axis {axis} (0-{n_slices - 1})")
    cli_args.check_prompts_fit(args, tuple(s for i, s in enumerate(volume.shape[:3]) if i != axis), "slice")
    store = _store(args, volume, args.cache)
    prompter = store.predictor
    embedding = store.get(args.slice, prefetch=False)
    prompter.set_embedding(embedding)
    if not args.no_zoom:
        from ..engine.zoom import ZoomPredictor

        prompter = ZoomPredictor(prompter)
        prompter.attach(embedding, store.slice(args.slice), channel=args.channel)
    points = [(r, c) for r, c, _ in args.point] or None
    labels = [lab for _, _, lab in args.point] or None
    res = prompter.predict(points=points, labels=labels, box=args.box,
                           multimask=len(args.point) + (args.box is not None) == 1)
    seed = res.mask(0)
    if not seed.any():
        raise ValueError(f"the prompt gives an empty mask on slice {args.slice}; move the point or draw a box")
    result = propagate(volume, {args.slice: seed}, store=store, axis=args.axis, spacing=args.spacing,
                       label_id=args.label_id, iou_threshold=args.iou_threshold, area_change=args.area_change,
                       zoom=not args.no_zoom)
    write_labels(out, result.labels.astype(np.uint16))
    rep = result.objects[args.label_id]
    if args.json:
        print(json.dumps({
            "output": str(out), "label_id": args.label_id, "seed_slice": args.slice, "seed_score":
            round(float(res.scores[0]), 4), "slices": rep.slices, "voxels": rep.voxels, "volume": rep.volume,
            "stops": [{"direction": s.direction, "last": s.last, "at": s.at, "reason": s.reason} for s in rep.stops],
            "embedded": store.stats["encoded"], "cached": store.stats["disk_hits"],
            "crops": store.stats["crops_encoded"],
        }))
    else:
        print(f"wrote {out}")
        print(result.summary())
    return 0

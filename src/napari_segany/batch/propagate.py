"""Propagation over many volumes (``napari-segany propagate VOLUMES... --output-dir DIR``): each
volume comes with a labels file of its objects drawn on one or more slices (``<name>_seeds.tif``
beside it by default), every object is propagated through the volume from the slices where it is
drawn, and the labels are written to ``DIR/<name>_labels.tif``, in this process or as one task per
volume on a dask cluster. An output that exists is a finished volume (it is written atomically),
skipped unless ``overwrite``."""

from __future__ import annotations

import contextlib
import os
import time
from glob import escape as glob_escape
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .inputs import Source, check_volume, clash, read_input, stem
from .item import ITEM_ERRORS, AutoOptions, failed
from .outputs import LABELS_SUFFIX

#: What is appended to a volume's name for the file of its drawn objects, by default.
SEEDS_SUFFIX = "_seeds"


@dataclass(frozen=True)
class Propagation:
    """A volume, the labels file of its drawn objects, and the labels file to write."""

    source: Path
    seeds: Path
    output: Path


def blank_result(job: Propagation) -> dict:
    """A volume's result before anything is done: "failed" until it is done or skipped."""
    return {"path": str(job.source), "seeds": str(job.seeds), "output": str(job.output), "status": "failed",
            "objects": None, "reached": None, "seconds": 0.0}


def plan_propagations(sources: list[Source], output_dir: str | os.PathLike, *,
                      seeds_suffix: str = SEEDS_SUFFIX) -> list[Propagation]:
    """Each volume with its seeds (``<name><seeds_suffix>.tif`` or ``.tiff`` beside it) and its
    output ``output_dir/<name>_labels.tif``, checked before any work: every seeds file exists, no
    two volumes share an output, and no output is an input or a seeds file. A seeds file or an
    earlier run's output found among the inputs (by a folder or pattern) is not an input of its own."""
    root = Path(output_dir).expanduser()
    names = {os.path.abspath(s.path) for s in sources}
    # a seeds file, or an earlier run's output, found by a folder or pattern beside its volume
    volumes = [s for s in sources if s.named or not any(stem(s.path).endswith(suffix) and
                                                        _volume_of(s.path, suffix, names)
                                                        for suffix in (seeds_suffix, LABELS_SUFFIX))]
    same = clash([(stem(s.path), s.path) for s in volumes])
    if same is not None:
        raise ValueError(f"{str(same[0])!r} and {str(same[1])!r} would both write "
                         f"{str(root / (same[2] + LABELS_SUFFIX + '.tif'))!r} (same name); rename one, or "
                         "propagate them into different --output-dir folders")
    out, read = [], {os.path.abspath(s.path) for s in volumes}
    for s in volumes:
        seeds = _seeds_of(s.path, seeds_suffix)
        read.add(os.path.abspath(seeds))
        out.append(Propagation(s.path, seeds, root / f"{stem(s.path)}{LABELS_SUFFIX}.tif"))
    for p in out:
        if os.path.abspath(p.output) in read:
            raise ValueError(f"the output {str(p.output)!r} would replace an input; choose another --output-dir")
    root.mkdir(parents=True, exist_ok=True)
    return out


def _seeds_of(volume: Path, suffix: str) -> Path:
    for ext in (".tif", ".tiff"):
        candidate = volume.with_name(stem(volume) + suffix + ext)
        if candidate.is_file():
            return candidate
    raise ValueError(f"{volume} has no seeds file: draw its objects on one or more slices and save them as "
                     f"{volume.with_name(stem(volume) + suffix + '.tif')} (a labels volume of the same shape), "
                     "or name the suffix with --seeds-suffix")


def _volume_of(path: Path, suffix: str, names: set[str]) -> bool:
    """Whether ``path`` (named ``<base><suffix>``) belongs to another of the inputs, ``<base>.*``."""
    base = stem(path)[: -len(suffix)]
    return any(os.path.abspath(p) in names and stem(p) == base for p in path.parent.glob(glob_escape(base) + ".*")
               if p != path)


def propagate_volume(job: Propagation, options: AutoOptions, predictor: Callable[[], object], *,
                     compute=contextlib.nullcontext, progress=None) -> dict:
    """Propagate every object of ``job.seeds`` through ``job.source`` along ``options.axis`` and
    write the labels. A problem with this volume is its result ("failed", with the sentence);
    ``predictor()`` is called once the volume and its seeds are known to fit, and what it raises
    ends the run."""
    from ..files import read_image, write_labels
    from ..volume import propagate

    started = time.perf_counter()
    result = blank_result(job)
    try:
        try:
            if job.output.exists() and not options.overwrite:
                result.update(status="skipped")
                return result
            volume = read_input(job.source)
            axis, _ = check_volume(tuple(volume.shape), axis=options.axis, channel=options.channel, path=job.source)
            seeds = read_image(job.seeds)
            if tuple(seeds.shape) != tuple(volume.shape[:3]):
                raise ValueError(f"its seeds {job.seeds} have shape {tuple(seeds.shape)} but the volume's labels "
                                 f"are {tuple(volume.shape[:3])}; save the seeds as a labels volume of its shape")
            if seeds.dtype == bool or not np.issubdtype(seeds.dtype, np.integer) or not seeds.any():
                raise ValueError(f"its seeds {job.seeds} hold no objects (integer labels, 0 = none); draw at "
                                 "least one object on one slice")
        except (ValueError, TypeError, OSError) as err:
            return failed(result, job.source, err)
        model = predictor()
        try:
            with compute():
                done = propagate(volume, labels=seeds, predictor=model, axis=axis, channel=options.channel,
                                 contrast_limits=options.contrast_limits, progress=progress, **options.propagation)
            top = int(done.labels.max(initial=0))
            write_labels(job.output, done.labels.astype(np.uint16 if top < 2**16 else np.uint32))
        except ITEM_ERRORS as err:
            return failed(result, job.source, err)
        reached = {str(oid): [rep.first, rep.last] for oid, rep in sorted(done.objects.items())}
        result.update(status="propagated", objects=len(done.objects), reached=reached)
        return result
    finally:
        result["seconds"] = round(time.perf_counter() - started, 3)

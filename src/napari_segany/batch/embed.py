"""The slice embeddings of many volumes into disk caches (``napari-segany embed`` over several
volumes): one cache folder per volume, filled in this process or by one task per volume on a dask
cluster. A cache is written slice by slice through the store's own atomic writes, so a task that
dies leaves a cache the next run completes."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path

from .inputs import Source, check_volume, clash, read_input, stem
from .item import ITEM_ERRORS, AutoOptions, failed


def plan_caches(sources: list[Source], cache_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(volume, its cache folder): ``cache_dir`` itself for one volume, ``cache_dir/<name>`` for
    each of several (a cache is best kept to one volume); two volumes of one name are refused."""
    root = Path(cache_dir).expanduser()
    if len(sources) == 1:
        return [(sources[0].path, root)]
    same = clash([(stem(src.path), src.path) for src in sources])
    if same is not None:
        raise ValueError(f"{str(same[0])!r} and {str(same[1])!r} would share the cache folder "
                         f"{str(root / same[2])!r} (same name); rename one, or embed them with different --cache "
                         "folders")
    return [(src.path, root / stem(src.path)) for src in sources]


def embed_volume(source: Path, cache: Path, options: AutoOptions, predictor, *, compute=contextlib.nullcontext,
                 progress=None) -> dict:
    """Embed every slice of the volume at ``source`` along ``options.axis`` into ``cache``
    (slices already cached are kept). A problem with this volume, or a cache that cannot be
    written, is its result ("failed", with the sentence); ``predictor()`` is called once the
    volume is known to be one, and what it raises ends the run."""
    from .. import Cancelled, EmbeddingStore

    started = time.perf_counter()
    result = {"path": str(source), "status": "failed", "cache": str(cache), "slices": None, "axis": None,
              "computed": None, "cached": None, "recomputed": None, "mib": None, "seconds": 0.0}
    try:
        try:
            volume = read_input(source)
            axis, n = check_volume(tuple(volume.shape), axis=options.axis, channel=options.channel, path=source)
        except (ValueError, TypeError, OSError) as err:
            return failed(result, source, err)
        model = predictor()
        try:
            with warnings.catch_warnings():  # embed exists to fill the cache: a cache problem ends it (below)
                warnings.simplefilter("ignore", RuntimeWarning)
                store = EmbeddingStore(model, volume, axis=axis, cache_dir=cache, channel=options.channel,
                                       contrast_limits=options.contrast_limits, prefetch=0)
                try:
                    with compute():
                        stats = store.compute_all(progress=progress, should_stop=lambda: store.cache_problem is not None)
                except Cancelled:
                    stats = store.stats
                finally:
                    store.close()
            if store.cache_problem is not None:
                raise OSError(store.cache_problem.split(";")[0] + "; embed stops, as it exists to fill the cache: "
                              "free disk space or pass another --cache folder.")
        except ITEM_ERRORS as err:
            return failed(result, source, err)
        result.update(status="embedded", slices=n, axis=axis, computed=stats["encoded"], cached=stats["disk_hits"],
                      recomputed=stats["corrupted"], cache=str(store.cache_path),
                      mib=round(store.disk_bytes() / 2**20, 1))
        return result
    finally:
        result["seconds"] = round(time.perf_counter() - started, 3)

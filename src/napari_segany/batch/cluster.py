"""Running ``auto``, ``embed`` and ``propagate`` over many inputs: in this process, or as one task
per input on a dask cluster (a ``LocalCluster`` on this machine, or any scheduler started elsewhere). Inputs whose
outputs are complete are skipped before anything is submitted; a failing input is reported and
the others go on; a progress bar follows the inputs as they finish."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .blocks import plan_blocks, scratch_folder
from .embed import embed_volume
from .environ import spawning_with, worker_environ
from .inputs import expand_inputs, input_shape, kind_of
from .item import AutoOptions, ModelUnavailable, failed, load_predictor, segment_item
from .outputs import DONE, Job, count_rows, plan_jobs, state
from .propagate import Propagation, blank_result, propagate_volume

INSTALL = ("running on a dask cluster needs dask.distributed, which is not installed; install it with "
           "pip install 'napari-segany[cluster]' (or pip install distributed), or leave out --cluster and "
           "--scheduler to run in this process")


#: dask settings of our LocalCluster: its workers' statistical profiler (a stack sample every 10 ms,
#: shown only on the dashboard) off, and the event loop's health check and the dashboard's system
#: monitor woken less often. Each wake-up took a core from the model's threads: a worker then switched
#: threads 8 times as often as one process, and a 512 px image took 1.8-2.3 s in it against 1.5-1.7 s
#: with these (AMD EPYC, 2 cores). The memory monitor, which enforces the memory limit, is kept.
QUIET = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
         "distributed.admin.system-monitor.interval": "2s"}


#: how long a client keeps trying to reach a scheduler started elsewhere (dask retries while one starts)
SCHEDULER_TIMEOUT = "20s"


def require_distributed():
    """The ``distributed`` module, or an ImportError that says how to install it."""
    try:
        import distributed
    except ImportError as err:
        raise ImportError(INSTALL) from err
    return distributed


def local_workers(n_workers: int | None = None) -> tuple[int, int]:
    """(workers, threads per worker) of a local cluster: by default one worker per two cores (at
    least one), and the cores shared out so that each is used once."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = n_workers or max(1, cores // 2)
    return n, max(1, cores // n)


@contextlib.contextmanager
def connect(*, local: int | bool | None = None, scheduler: str | None = None, memory_limit="auto"):
    """A dask Client for the run (closed after it), or None to run in this process. ``local``:
    True (default size) or a number of workers for a LocalCluster on 127.0.0.1, each allowed
    ``memory_limit`` (as dask takes it, e.g. "4GiB"; by default this machine's memory shared out);
    ``scheduler``: the address of a scheduler started elsewhere (``tcp://host:8786``)."""
    if local is None or local is False:
        if scheduler is None:
            yield None
            return
    distributed = require_distributed()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=SCHEDULER_TIMEOUT)
        except (OSError, TimeoutError) as err:
            raise OSError(f"could not reach the dask scheduler at {scheduler!r} ({err}); check the address "
                          "(e.g. tcp://host:8786) and that the scheduler is running") from None
        with client:
            yield client
        return
    n, threads = local_workers(None if local is True else int(local))
    import dask

    # one task thread per worker, whose model gets all the worker's cores: a second task thread only
    # overlapped file work with the model, and on few cores that slowed the model more than it saved
    with spawning_with(worker_environ(threads)), dask.config.set(QUIET), \
            distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0", memory_limit=memory_limit) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def run_auto(inputs, output_dir, *, client=None, model: str | None = None, settings=None,
             overlay: bool = False, overwrite: bool = False, volume: bool = False, axis: int = 0,
             channel: int | None = None, contrast_limits=None, device: str = "auto", precision: str = "auto",
             regions: str = "prompted", block_slices: int | None = None, block_overlap: int = 4,
             progress: bool = True) -> list[dict]:
    """Segment every object of each input and write ``<name>_labels.tif`` and
    ``<name>_objects.csv`` (and with ``overlay`` ``<name>_overlay.png``) into ``output_dir``.

    Parameters
    ----------
    inputs : str, path or list of them
        Image files, zarr arrays or OME-Zarr images, folders of them, or patterns ("plates/*.tif").
    client : dask.distributed.Client, optional
        One task per input on its cluster: each worker loads the model once and keeps it. The
        inputs, outputs and model file must be reachable from the workers under the same paths.
        None: in this process, one input after the other.
    model, device, precision, regions, settings, volume, axis, channel, contrast_limits
        As for ``napari-segany auto`` (see :class:`~napari_segany.batch.AutoOptions`).
    block_slices, block_overlap : int, optional
        With a ``client``: a volume with more slices is cut into blocks of ``block_slices``
        slices overlapping by ``block_overlap``, one task each, and its objects stitched across
        blocks (see :mod:`~napari_segany.batch.blocks`).

    Returns
    -------
    list of dict
        Per input, in the inputs' order: ``path``, ``kind`` ("image" or "volume"), ``status``
        ("segmented", "skipped" or "failed" with its ``error``), ``outputs``, ``objects``,
        ``seconds`` (and on a cluster, the ``worker``).
    """
    from .. import GridSettings

    specs = [str(inputs)] if isinstance(inputs, (str, os.PathLike)) else [str(s) for s in inputs]
    jobs = plan_jobs(expand_inputs(specs), output=None, output_dir=str(output_dir), overlay=overlay)
    options = AutoOptions(settings=settings or GridSettings(), model=model, device=device, precision=precision,
                          regions=regions, volume=volume, axis=axis, channel=channel,
                          contrast_limits=contrast_limits, overwrite=overwrite, block_slices=block_slices,
                          block_overlap=block_overlap)
    return run_jobs(jobs, options, client=client, progress=progress)[0]


def run_jobs(jobs: list[Job], options: AutoOptions, *, client=None, progress: bool = True,
             on_result: Callable[[dict, object], None] | None = None,
             report: Callable[[str], None] | None = None) -> tuple[list[dict], tuple[str, str] | None]:
    """(the result of each job in order, (model name, precision) or None when no model was
    loaded). ``on_result(result, bar)`` is called as each input finishes (``bar.write`` prints
    without breaking the bar). A model that cannot be loaded ends the run (RuntimeError)."""
    if options.block_slices is not None:
        if client is None:
            raise ValueError("--block-slices cuts volumes into tasks for a dask cluster; add --cluster local or "
                             "--scheduler ADDRESS, or leave it out")
        if options.axis % 3 != 0 or options.existing is not None:
            raise ValueError("--block-slices cuts a volume along its first axis, without --existing labels; use "
                             "--axis 0 and no --existing with it, or leave it out")
        if options.block_slices < 1 or options.block_overlap < 1:
            raise ValueError("--block-slices needs blocks of at least 1 slice overlapping by at least 1")
    existing = []

    def here(i, predictor):
        if options.existing is not None and not existing:
            from ..files import read_image

            existing.append(read_image(options.existing))
        return segment_item(jobs[i], options, predictor, existing=existing[0] if existing else None,
                            progress=progress)

    def remote(i):
        from .worker import auto_task

        if not (options.overwrite or options.existing is not None):
            done = _finished(jobs[i], options)
            if done is not None:
                return done
        sent = replace(options, existing=None if options.existing is None else os.path.abspath(options.existing))
        long = _long_volume(jobs[i], options)
        if isinstance(long, dict):
            return long
        if long is not None:
            return lambda client, key: submit_blocked(client, _absolute(jobs[i]), long, _sent(sent), key)
        return auto_task, (_absolute(jobs[i]), _sent(sent))

    return execute([j.source for j in jobs], options, here=here, remote=remote, blank=lambda i: _blank(jobs[i]),
                   client=client, progress=progress, on_result=on_result, report=report, unit="input",
                   desc="auto")


def run_embed(volumes: list[tuple[Path, Path]], options: AutoOptions, *, client=None, progress: bool = True,
              on_result: Callable[[dict, object], None] | None = None,
              report: Callable[[str], None] | None = None) -> tuple[list[dict], tuple[str, str] | None]:
    """Embed every slice of each (volume, cache folder) (see
    :func:`~napari_segany.batch.embed.plan_caches`) along ``options.axis``: in this process, or
    one task per volume on ``client``. Returns as :func:`run_jobs` does; each result has
    ``status`` "embedded" or "failed" (with its ``error``), ``slices``, ``computed``, ``cached``
    (already there), ``recomputed`` (damaged), the ``cache`` folder and its size in ``mib``."""
    def here(i, predictor):
        source, cache = volumes[i]
        with _slice_bar(source.name if len(volumes) > 1 else None, "embedding", progress) as advance:
            return embed_volume(source, cache, options, predictor, progress=advance)

    def remote(i):
        from .worker import embed_task

        source, cache = volumes[i]
        return embed_task, (Path(os.path.abspath(source)), Path(os.path.abspath(cache)), _sent(options))

    def blank(i):
        return {"path": str(volumes[i][0]), "status": "failed", "cache": str(volumes[i][1]), "seconds": 0.0}

    return execute([v[0] for v in volumes], options, here=here, remote=remote, blank=blank, client=client,
                   progress=progress, on_result=on_result, report=report, unit="volume", desc="embed")


def run_propagations(jobs: list[Propagation], options: AutoOptions, *, client=None, progress: bool = True,
                     on_result=None, report=None) -> tuple[list[dict], tuple[str, str] | None]:
    """Propagate each job's objects: in this process, or one task per volume on ``client``
    (a worker loads the model once). Returns as :func:`~napari_segany.batch.cluster.run_jobs` does;
    each result has ``status`` "propagated", "skipped" (its output exists) or "failed" (with its
    ``error``), the number of ``objects`` and the slices each ``reached`` (first, last)."""
    def here(i, predictor):
        with _slice_bar(jobs[i].source.name if len(jobs) > 1 else None, "propagating", progress) as advance:
            return propagate_volume(jobs[i], options, predictor, progress=advance)

    def remote(i):
        from .worker import propagate_task

        job = jobs[i]
        if job.output.exists() and not options.overwrite:
            return dict(blank_result(job), status="skipped")
        full = Propagation(*(Path(os.path.abspath(p)) for p in (job.source, job.seeds, job.output)))
        return propagate_task, (full, _sent(options))

    return execute([j.source for j in jobs], options, here=here, remote=remote, blank=lambda i: blank_result(jobs[i]),
                   client=client, progress=progress, on_result=on_result, report=report, unit="volume",
                   desc="propagate")


@contextlib.contextmanager
def _slice_bar(name: str | None, alone: str, progress: bool):
    """A progress bar over one volume's slices (named ``name`` among many, kept when ``alone``);
    yields its ``advance(done, total)``."""
    from tqdm import tqdm

    with tqdm(total=None, unit="slice", desc=name or alone, leave=name is None, disable=not progress) as bar:
        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield advance


def execute(sources: list[Path], options: AutoOptions, *, here, remote, blank, client=None, progress: bool = True,
            on_result=None, report=None, unit: str = "input", desc: str = "") -> tuple[list[dict], tuple | None]:
    """Run one item per source, in this process (``here(i, predictor)``, the model loaded on first
    use and shared) or on ``client`` (``remote(i)`` gives the task's function and arguments, or a
    result when the item needs no task), keeping what the results say as given: the path and
    outputs of each are the caller's, not the absolute ones sent to the workers. ``blank(i)``:
    item i's result before it ran. Returns (results in order, (model name, precision) or None)."""
    from tqdm import tqdm

    results: list[dict | None] = [None] * len(sources)
    with tqdm(total=len(sources), unit=unit, desc=desc, disable=not progress or len(sources) < 2) as bar:
        def finish(i: int, result: dict) -> None:
            results[i] = result
            bar.update(1)
            if on_result is not None:
                on_result(result, bar)

        if client is None:
            loaded = []

            def predictor():
                if not loaded:
                    loaded.append(load_predictor(options, report))
                return loaded[0]

            for i, source in enumerate(sources):
                bar.set_postfix_str(source.name, refresh=False)
                finish(i, here(i, predictor))
            model = (loaded[0].model.info.name, loaded[0].precision) if loaded else None
        else:
            model = _run_on(client, sources, remote, blank, finish)
    return results, model


def _run_on(client, sources, remote, blank, finish) -> tuple[str, str] | None:
    distributed = require_distributed()
    from .worker import ModelKeeper

    client.register_plugin(ModelKeeper())
    run = uuid.uuid4().hex[:8]
    pending = {}
    for i in range(len(sources)):
        call = remote(i)
        if isinstance(call, dict):  # nothing to do (complete outputs)
            finish(i, call)
            continue
        if callable(call):  # several tasks, one future for the item's result
            pending[call(client, f"segany-blocked-{run}-{i}")] = i
            continue
        fn, args = call
        pending[client.submit(fn, *args, key=f"segany-{fn.__name__}-{run}-{i}", pure=False, retries=0)] = i
    model = None
    try:
        for future in distributed.as_completed(list(pending)):
            i = pending[future]
            try:
                result = future.result()
            except ModelUnavailable as err:
                raise RuntimeError(str(err)) from None
            except Exception as err:  # noqa: BLE001 - the item failed on its worker; the others go on
                result = failed(blank(i), sources[i], _task_error(err, distributed))
            model = result.pop("model", None) or model
            given = blank(i)
            result.update({k: given[k] for k in given if k in ("path", "outputs")})  # as given
            finish(i, result)
    finally:
        client.cancel([f for f in pending if not f.done()])
    return model


def submit_blocked(client, job: Job, shape: tuple[int, ...], options: AutoOptions, key: str):
    """The future of a long volume's result: its window, its blocks and their assembly, as tasks
    (``job`` and ``options`` as the workers must see them: absolute paths)."""
    from .worker import assemble_task, block_task, window_task

    blocks = plan_blocks(shape[0], options.block_slices, options.block_overlap)
    scratch = scratch_folder(job)
    window = client.submit(window_task, job.source, options, key=f"{key}-window", pure=False)
    done = [client.submit(block_task, job.source, blk, window, options, scratch, key=f"{key}-block{k}", pure=False)
            for k, blk in enumerate(blocks)]
    return client.submit(assemble_task, job, shape, blocks, options, done, time.time(), key=key, pure=False)


def _sent(options: AutoOptions) -> AutoOptions:
    return replace(options, model=_absolute_model(options.model))


def _finished(job: Job, options: AutoOptions) -> dict | None:
    """The result "skipped" of an input whose outputs are complete, told without reading more of it
    than its shape; None when it must go to a worker (to be segmented, or its problem reported
    there with the data at hand)."""
    shape = input_shape(job.source)
    if shape is None:
        return None
    try:
        kind, labels_shape = kind_of(shape, volume=options.volume, channel=options.channel, axis=options.axis)
        if state(job, labels_shape)[0] != DONE:
            return None
        return dict(_blank(job), kind=kind, status="skipped", objects=count_rows(job.table))
    except (ValueError, OSError):
        return None


def _long_volume(job: Job, options: AutoOptions):
    """A volume to cut into blocks: its labels' shape; or its result "failed" when files in the
    way are not a complete result (as a whole volume's would be); None to segment it whole."""
    if not options.block_slices:
        return None
    shape = input_shape(job.source)
    try:
        kind, labels_shape = kind_of(shape, volume=options.volume, channel=options.channel, axis=options.axis)
    except (TypeError, ValueError):
        return None  # (no shape, or not an input auto reads: the worker says why)
    if kind != "volume" or labels_shape[0] <= options.block_slices:
        return None
    if not options.overwrite:
        try:
            state(job, labels_shape)
        except (FileExistsError, OSError) as err:
            return failed(dict(_blank(job), kind="volume"), job.source, err)
    return labels_shape


def _blank(job: Job) -> dict:
    return {"path": str(job.source), "kind": None, "status": "failed", "outputs": job.outputs, "objects": None,
            "seconds": 0.0}


def _task_error(err: BaseException, distributed) -> str:
    if isinstance(err, distributed.KilledWorker):
        return ("the workers that ran it died before it finished, each time it was tried (out of memory? see the "
                "workers' logs); it was not segmented")
    return f"{type(err).__name__}: {err}"


def _absolute(job: Job) -> Job:
    def full(p):
        return None if p is None else Path(os.path.abspath(p))

    return Job(full(job.source), full(job.labels), full(job.table), full(job.overlay))


def _absolute_model(model: str | None) -> str | None:
    """A checkpoint file named relative to here, as the workers must find it."""
    return os.path.abspath(os.path.expanduser(model)) if model is not None and Path(model).expanduser().is_file() \
        else model

"""What runs on a dask worker: the model kept from one task to the next, and the task itself.
Imported only where dask.distributed is installed and a cluster is used."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

from distributed import WorkerPlugin, get_worker

from .blocks import Block, assemble, segment_block, volume_window_of
from .embed import embed_volume
from .environ import TORCH_THREADS, keep_freed_memory
from .item import AutoOptions, ModelUnavailable, load_predictor, segment_item
from .outputs import Job

NAME = "napari-segany-models"


class ModelKeeper(WorkerPlugin):
    """Registered on every worker (and on workers that join or are restarted later): each worker
    loads a model the first time a task needs it and keeps it for the tasks after. One task uses
    the model at a time, with the torch threads our LocalCluster gave the worker
    (:mod:`~napari_segany.batch.environ`), else as many as the worker has threads, so the workers
    of a machine do not oversubscribe its cores; a worker with more threads reads and writes files
    while the model works."""

    name = NAME
    idempotent = True  # a second run on the same cluster keeps the models already loaded

    def setup(self, worker) -> None:
        keep_freed_memory()
        self.threads = max(1, int(os.environ.get(TORCH_THREADS) or worker.state.nthreads))
        self.address = worker.address
        self.loads = 0
        self._predictors: dict[tuple, object] = {}
        self._loading = threading.Lock()
        self._computing = threading.Lock()

    def predictor(self, options: AutoOptions):
        """The predictor of ``options`` on this worker, loaded on first use."""
        with self._loading:
            if options.model_key not in self._predictors:
                try:
                    with self.compute():
                        self._predictors[options.model_key] = load_predictor(options)
                except Exception as err:  # noqa: BLE001 - whatever it was, no input can be segmented
                    raise ModelUnavailable(f"the model could not be loaded on the worker {self.address}: "
                                           f"{err}") from None
                self.loads += 1
            return self._predictors[options.model_key]

    @contextlib.contextmanager
    def compute(self):
        import torch

        with self._computing:
            torch.set_num_threads(self.threads)
            yield


def keeper() -> ModelKeeper:
    found = get_worker().plugins.get(NAME)
    if found is None:
        raise RuntimeError("this dask worker has no napari-segany model keeper; run through "
                           "napari_segany.batch.run_auto, which registers it")
    return found


def auto_task(job: Job, options: AutoOptions) -> dict:
    """One input segmented on this worker (:func:`~napari_segany.batch.item.segment_item`). Outputs
    are written atomically, the labels last: a task killed with its worker leaves no partial file,
    and the scheduler runs it again elsewhere."""
    return _with_model(options, lambda predictor, compute: segment_item(job, options, predictor, compute=compute))


def embed_task(source: Path, cache: Path, options: AutoOptions) -> dict:
    """One volume's slices embedded into its cache on this worker
    (:func:`~napari_segany.batch.embed.embed_volume`)."""
    return _with_model(options, lambda predictor, compute: embed_volume(source, cache, options, predictor,
                                                                        compute=compute))


def propagate_task(job, options: AutoOptions) -> dict:
    """One volume's drawn objects propagated on this worker
    (:func:`~napari_segany.batch.propagate.propagate_volume`)."""
    from .propagate import propagate_volume

    return _with_model(options, lambda predictor, compute: propagate_volume(job, options, predictor, compute=compute))


def window_task(source: Path, options: AutoOptions) -> dict:
    """The intensity window of a volume segmented in blocks (the whole volume's)."""
    return _with_model(options, lambda predictor, compute: {"window": volume_window_of(source, options, predictor)})


def block_task(source: Path, block: Block, window: dict, options: AutoOptions, scratch: Path) -> dict:
    """One block of a long volume segmented on this worker, its labels saved in ``scratch``."""
    return _with_model(options, lambda predictor, compute: segment_block(source, block, window["window"], options,
                                                                         predictor, scratch, compute=compute))


def assemble_task(job: Job, shape: tuple[int, ...], blocks: list[Block], options: AutoOptions, done: list[dict],
                  started: float) -> dict:
    """A long volume's blocks stitched into its outputs; its result as for a whole volume."""
    result = assemble(job, shape, blocks, done, options, started)
    result["model"] = done[0].get("model")
    return result


def _with_model(options: AutoOptions, work) -> dict:
    """``work(predictor, compute)``'s result, with the worker's address, the time the task held
    and waited for the model, whether it loaded it, and the model's name and arithmetic."""
    mine = keeper()
    used = []
    timer = _Timer(mine)

    def predictor():
        loads = mine.loads
        used.append(mine.predictor(options))
        timer.loaded = mine.loads > loads
        return used[-1]

    result = work(predictor, timer)
    result.update(worker=mine.address, compute_seconds=round(timer.held, 4), wait_seconds=round(timer.waited, 4),
                  loaded_model=timer.loaded)
    if used:
        result["model"] = (used[0].model.info.name, used[0].precision)
    return result


class _Timer:
    """The worker's compute lock, timed: ``waited`` for it (other tasks of this worker had the
    model), ``held`` with the model working for this task; ``loaded``: this task loaded the model."""

    def __init__(self, keeper: ModelKeeper):
        self.keeper, self.waited, self.held, self.loaded = keeper, 0.0, 0.0, False

    @contextlib.contextmanager
    def __call__(self):
        asked = time.perf_counter()
        with self.keeper.compute():
            got = time.perf_counter()
            self.waited += got - asked
            try:
                yield
            finally:
                self.held += time.perf_counter() - got


def worker_stats(dask_worker) -> dict:
    """(for ``client.run``) the process id, threads and models loaded of a worker."""
    found = dask_worker.plugins.get(NAME)
    return {"pid": os.getpid(), "threads": getattr(found, "threads", None), "loads": getattr(found, "loads", 0)}

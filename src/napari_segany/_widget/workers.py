"""Long work off the GUI thread: model loading (with download) and embeddings.

Every job carries what it was started for (an :class:`EmbeddingKey`, or the
model source) and a ``cancelled`` flag the worker polls. The caller decides on
arrival whether the result still applies; stale results are dropped there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from napari.qt.threading import thread_worker
from qtpy.QtCore import QObject, QThreadPool, Signal

from ..engine.predictor import Cancelled, ImageEmbedding, Predictor
from ._compat import guard_triton
from .cache import EmbeddingKey


class ProgressRelay(QObject):
    """A tqdm-like object for downloads that forwards progress to the GUI thread.

    Qt queues signals emitted from a worker thread to receivers in the GUI
    thread. ``update`` raises :class:`Cancelled` once ``cancel()`` was called,
    which aborts the download (its partial file is removed by the registry).
    """

    changed = Signal(int, int)  # done, total (0 = unknown)

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.n = 0
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def update(self, n: int = 1) -> None:
        if self.cancelled:
            raise Cancelled("download was cancelled")
        self.n += int(n)
        self.changed.emit(int(self.n), int(self.total or 0))

    def reset(self) -> None:
        self.n = 0

    def close(self) -> None:
        pass


def ensure_pool_headroom(spare: int = 2) -> None:
    """Let Qt's global thread pool grow so that it keeps ``spare`` idle threads
    after one more worker starts.

    napari's workers run in that pool, and Qt uses the same pool for its own
    parallel work, e.g. scaling the frames of napari's busy spinner, which the
    GUI thread waits for while holding Python's GIL. With every pool thread
    taken by workers that need the GIL (two on a 2-core machine) that wait
    never ends. The pool only grows; threads are created on demand.
    """
    pool = QThreadPool.globalInstance()
    needed = pool.activeThreadCount() + 1 + spare
    if pool.maxThreadCount() < needed:
        pool.setMaxThreadCount(needed)


@dataclass
class Job:
    """One piece of background work; ``worker`` is the napari worker running it."""

    what: Any
    cancelled: bool = False
    worker: Any = field(default=None, repr=False)
    relay: ProgressRelay | None = field(default=None, repr=False)
    automatic: bool = False  # a model load the widget started by itself (a model set meanwhile wins)
    restart: bool = False  # when cancelled to make way: start the wanted work after it
    ended: bool = False  # the worker's result (or error) has reached the GUI thread
    dropped: bool = False  # its owner is gone: the result is not delivered at all
    target: Any = None  # for a propagation: the unique_id of the labels layer it writes into

    def cancel(self) -> None:
        self.cancelled = True
        if self.relay is not None:
            self.relay.cancel()

    def drop(self) -> None:
        """Cancel, and never deliver the result: for an owner that closes."""
        self.cancel()
        self.dropped = True

    @property
    def running(self) -> bool:
        """True until the result has been delivered, not only computed: the worker
        thread ends before its queued result reaches the GUI thread, and work that
        waits for ``not running`` must not see that result arrive afterwards."""
        return self.worker is not None and not self.ended

    def _deliver(self, handler: Callable[[Job, Any], None], value: Any) -> None:
        if not self.dropped:
            handler(self, value)

    def _end(self) -> None:
        self.ended = True


def launch(job: Job, worker, on_done: Callable[[Job, Any], None],
           on_error: Callable[[Job, Exception], None],
           on_yield: Callable[[Job, Any], None] | None = None) -> Job:
    """Start napari ``worker`` for ``job`` with room in Qt's thread pool; its result
    reaches ``on_done(job, value)``, its exception ``on_error(job, exc)`` and what a
    generator worker yields ``on_yield(job, value)``, unless the job was dropped."""
    ensure_pool_headroom()
    if on_yield is not None:  # connected before the start: a quick first yield is not lost
        worker.yielded.connect(lambda value: job._deliver(on_yield, value))
    worker.returned.connect(lambda value: job._deliver(on_done, value))
    worker.errored.connect(lambda exc: job._deliver(on_error, exc))
    worker.finished.connect(job._end)  # emitted after returned/errored, so queued after them
    job.worker = worker
    worker.start()
    return job


def start_embedding(
    key: EmbeddingKey,
    predictor: Predictor,
    image: np.ndarray,
    encode_kwargs: dict,
    on_done: Callable[[Job, ImageEmbedding | None], None],
    on_error: Callable[[Job, Exception], None],
) -> Job:
    """Encode ``image`` (with ``key.views`` mirrored views) in a thread; ``on_done(job, None)`` when cancelled."""
    guard_triton()
    job = Job(key)

    # no napari progress bar: the widget's own busy line shows it, and the activity dock's
    # animation took a measured 25-35 % of the CPU from the encoder on 2 cores (software OpenGL)
    @thread_worker
    def run():
        try:
            return predictor.encode(image, should_stop=lambda: job.cancelled, views=key.views, **encode_kwargs)
        except Cancelled:
            return None

    return launch(job, run(), on_done, on_error)


def start_model_load(
    source: str,
    device: str,
    precision: str,
    on_done: Callable[[Job, Predictor | None], None],
    on_error: Callable[[Job, Exception], None],
    on_progress: Callable[[int, int], None] | None = None,
) -> Job:
    """Load (and if needed download) a model in a thread and wrap it in a
    :class:`Predictor`; ``on_done(job, None)`` when cancelled."""
    from ..weights.load import load_model

    guard_triton()
    relay = ProgressRelay()
    if on_progress is not None:
        relay.changed.connect(on_progress)
    job = Job(source, relay=relay)

    @thread_worker(progress={"total": 0, "desc": f"Segment Anything: loading {source}"})
    def run():
        try:
            model = load_model(source, device, progress=relay)
        except Cancelled:
            return None
        return None if job.cancelled else Predictor(model, precision=precision)

    return launch(job, run(), on_done, on_error)

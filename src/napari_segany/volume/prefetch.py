"""The background prefetch of an :class:`~napari_segany.volume.store.EmbeddingStore`: one worker
thread embeds the slices it was last asked for, in order, one encoder pass at a time, and yields
to a caller who waits for another slice (its running pass is interrupted and retried later)."""

from __future__ import annotations

import atexit
import threading
import weakref
from collections import Counter
from contextlib import contextmanager
from typing import Iterable

import numpy as np

from ..engine.predictor import Cancelled
from .cache import slice_hash

#: Stores whose background worker may be running: closed when Python exits, so that a script ending
#: mid-prefetch stops the worker first (a daemon thread still inside torch aborts the process).
_OPEN: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    for store in list(_OPEN):
        store.close()


class Prefetching:
    """The prefetch half of :class:`~napari_segany.volume.store.EmbeddingStore`. The store provides
    ``slice``, ``stats``, ``_check``, ``_lookup``, ``_encode``, ``_keep`` and ``_write_disk``; callers that encode
    take ``_encode_lock`` and announce what they wait for with ``_wanting``."""

    def _start_prefetching(self, radius: int) -> None:
        self.prefetch_radius = int(radius)
        # threading: one encode at a time; the worker yields to callers
        self._encode_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: list[int] = []
        self._wanted: Counter = Counter()  # slices callers are waiting for
        self._inflight: int | None = None
        self._generation = 0
        self._closed = False
        self._worker: threading.Thread | None = None

    def prefetch(self, indices: Iterable[int]) -> None:
        """Embed these slices in the background, in order, replacing any
        earlier pending request; returns at once."""
        wanted = [self._check(i) for i in indices]
        with self._cond:
            if self._closed:
                return
            self._queue = wanted
            if self._inflight is not None and self._inflight not in wanted:
                self._generation += 1  # interrupt a stale prefetch
            if self._worker is None and wanted:
                self._worker = threading.Thread(target=self._work, name="segany-prefetch", daemon=True)
                _OPEN.add(self)
                self._worker.start()
            self._cond.notify_all()

    def cancel_prefetch(self) -> None:
        """Drop pending prefetches and interrupt the running one."""
        with self._cond:
            self._queue = []
            self._generation += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the background worker (pending prefetches are dropped)."""
        with self._cond:
            self._closed = True
            self._queue = []
            self._generation += 1
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=60)

    @contextmanager
    def _wanting(self, key):
        """A caller waits for ``key`` (a slice's index, or (index, window) for a crop) meanwhile:
        a running prefetch of anything else yields."""
        with self._cond:
            self._wanted[key] += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._wanted[key] -= 1
                if self._wanted[key] <= 0:
                    del self._wanted[key]

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                i = self._queue.pop(0)
                generation = self._generation
            try:
                image = self.slice(i)
                h = slice_hash(image)
                if self._lookup(i, h, count=False) is not None:
                    continue
                self._prefetch_one(i, image, h, generation)
            except Exception:  # a prefetch failure must never kill the worker; get() will report it
                self.stats["prefetch_errors"] += 1

    def _prefetch_one(self, i: int, image: np.ndarray, h: str, generation: int) -> None:
        def stale() -> bool:
            return self._closed or self._generation != generation or any(w != i for w in self._wanted)

        if not self._encode_lock.acquire(timeout=0.5):
            with self._cond:  # a caller is encoding: retry this one later
                if not stale() and i not in self._queue:
                    self._queue.append(i)
            return
        try:
            if stale() or self._lookup(i, h, count=False) is not None:
                return
            with self._cond:
                self._inflight = i
            try:
                features = self._encode(image, stale)
            except Cancelled:
                self.stats["prefetch_cancelled"] += 1
                return
            else:
                self._keep(i, h, features)
                self.stats["prefetched"] += 1
            finally:
                with self._cond:
                    self._inflight = None
                    self._cond.notify_all()
            self._write_disk(i, h, features)
        finally:
            self._encode_lock.release()

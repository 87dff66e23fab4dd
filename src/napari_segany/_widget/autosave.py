"""Saving the target labels after each commit, in a thread, atomically.

A snapshot of the array is taken on the GUI thread (a memory copy) so later
edits cannot tear the file; the write goes through
:func:`napari_segany.files.write_labels` (temporary file, then rename). At most
one write runs at a time; a commit during a write schedules one more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from napari.qt.threading import thread_worker

from ..files import write_labels
from .workers import ensure_pool_headroom


class Autosaver:
    def __init__(self, report: Callable[[str], None], warn: Callable[[str], None]) -> None:
        self.report = report  # a sentence for the status line
        self.warn = warn  # a sentence the user must see
        self._worker = None
        self._pending: tuple[Path, np.ndarray] | None = None
        self.last_path: Path | None = None

    @property
    def busy(self) -> bool:
        return self._worker is not None or self._pending is not None

    def save(self, path: Path, labels: np.ndarray) -> None:
        self._pending = (Path(path), np.array(labels, copy=True))
        if self._worker is None:
            self._start_next()

    def _start_next(self) -> None:
        if self._pending is None:
            self._worker = None
            return
        path, snapshot = self._pending
        self._pending = None

        @thread_worker
        def run():
            return write_labels(path, snapshot)

        ensure_pool_headroom()
        worker = run()
        worker.returned.connect(self._saved)
        worker.errored.connect(lambda exc: self.warn(
            f"Could not save the labels to {path}: {exc}. Save them with File > Save Selected Layers."))
        worker.finished.connect(self._start_next)
        self._worker = worker
        worker.start()

    def _saved(self, path: Path) -> None:
        self.last_path = Path(path)
        self.report(f"Saved labels to {path}.")

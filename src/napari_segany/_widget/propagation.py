"""Propagating the selected object through the volume from the slice on screen.

The work runs in a ``thread_worker`` (the :class:`napari_segany.EmbeddingStore`
embeds only the slices the walk reaches); the result is written into the
target labels layer on the GUI thread as one undoable step.
"""

from __future__ import annotations

import numpy as np
from napari.qt.threading import thread_worker
from qtpy.QtCore import QObject, Signal

from ..volume import EmbeddingStore, propagate
from ._compat import guard_triton
from .layers import find_layer
from .workers import Job, launch


class Propagator(QObject):
    """Runs ``propagate`` for the target layer's selected label.

    Signals: ``status(str)`` for the widget's status line, ``busy(bool)``,
    ``progress(done, total)``.
    """

    status = Signal(str)
    busy = Signal(bool)
    progress = Signal(int, int)

    def __init__(self, controller) -> None:
        super().__init__()
        self.controller = controller
        self.job: Job | None = None
        self._store_key: tuple | None = None
        self._store_obj: EmbeddingStore | None = None
        controller.target_deleted.connect(self._target_deleted)

    # -- what to propagate ----------------------------------------------------
    def _request(self):
        """Everything a propagation needs, read on the GUI thread; ValueError with advice."""
        c = self.controller
        st = c.state
        if st.predictor is None:
            raise ValueError("Load a model first.")
        image, plane, target = st.image_layer, st.plane, c.target_layer
        if image is None or plane is None:
            raise ValueError("Pick an image layer first.")
        if len(plane.shape) < 3:
            raise ValueError("Propagation needs a volume (3D or more); this image is 2D.")
        if plane.rgb:
            raise ValueError("Propagation through RGB volumes is not supported; pick one channel as its own layer.")
        if target is None:
            raise ValueError("Commit an object first (or pick a target labels layer), select its label, "
                             "then press Shift+P.")
        label_id = int(target.selected_label)
        # the slider axis nearest to the displayed ones is the propagation axis (z of t,z,y,x)
        axis, z = plane.fixed[-1]
        others = {ax: i for ax, i in plane.fixed[:-1]}
        sub = tuple(others.get(ax, slice(None)) for ax in range(len(plane.shape)))
        kept = [ax for ax in range(len(plane.shape)) if ax not in others]
        sub_axis = kept.index(axis)
        volume = np.asarray(image.data[sub])
        labels = np.array(target.data[sub])  # a copy: the layer may be edited meanwhile
        if not (np.take(labels, z, axis=sub_axis) == label_id).any():
            raise ValueError(f"Label {label_id} is not on this slice: select (with the label picker) an object "
                             "drawn on the slice on screen, or commit one here first.")
        spacing = tuple(float(image.scale[ax]) for ax in kept)
        window = tuple(float(v) for v in image.contrast_limits)
        return dict(volume=volume, labels=labels, label_id=label_id, axis=sub_axis, z=z, sub=sub,
                    kept=kept, spacing=spacing, window=window, image=image, target=target)

    def _store(self, req) -> EmbeddingStore:
        predictor = self.controller.state.predictor
        fixed = tuple(s for s in req["sub"] if not isinstance(s, slice))
        key = (req["image"].unique_id, fixed, req["axis"], predictor.model_id, req["window"])
        if key != self._store_key:  # another image, axis, model or window: a fresh store
            self._close_store()
            self._store_obj = EmbeddingStore(predictor, req["volume"], axis=req["axis"],
                                             contrast_limits=req["window"])
            self._store_key = key
        return self._store_obj

    def _close_store(self) -> None:
        if self._store_obj is not None:
            self._store_obj.close()
        self._store_key = self._store_obj = None

    # -- running --------------------------------------------------------------
    def start(self) -> bool:
        """Start propagating the selected label; False (with a status message) when not possible."""
        if self.job is not None:
            self.status.emit("A propagation is already running; wait for it or press Cancel.")
            return False
        try:
            req = self._request()
            store = self._store(req)
        except ValueError as exc:
            self.status.emit(str(exc))
            return False
        label_id = req["label_id"]
        job = Job(label_id)
        job.target = req["target"].unique_id
        options = self.controller.state.options
        guard_triton()

        @thread_worker(progress={"total": 0, "desc": f"Segment Anything: propagating label {label_id}"})
        def run():
            return propagate(req["volume"], labels=req["labels"], ids=[label_id], seed_slices=[req["z"]],
                             store=store, axis=req["axis"], spacing=req["spacing"],
                             overwrite=options.overwrite, zoom=options.zoom,
                             progress=lambda d, t: self.progress.emit(d, t),
                             should_stop=lambda: job.cancelled)

        self.job = job
        self.busy.emit(True)
        self.status.emit(f"Propagating label {label_id} from slice {req['z']}...")
        launch(job, run(), lambda j, res: self._done(j, req, res), self._failed)
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancelled = True

    def _target_deleted(self, uid) -> None:
        """The layer a running propagation writes into was deleted: stop it; nothing is written."""
        if self.job is not None and self.job.target == uid:
            self.job.cancel()
            self.status.emit("The target labels layer was deleted: stopping the propagation; nothing will "
                             "be written.")

    def _finish(self) -> None:
        self.job = None
        self.busy.emit(False)

    def _failed(self, job: Job, exc: Exception) -> None:
        self._finish()
        self.status.emit(f"Propagation failed: {exc}")

    def _done(self, job: Job, req, result) -> None:
        self._finish()
        changes = result.changes
        target = find_layer(self.controller.viewer, job.target)
        if target is None:
            self.status.emit(f"Propagation of label {job.what} stopped: its target labels layer was deleted, "
                             "so nothing was written. Pick or make a target layer and propagate again.")
            return
        if len(changes):
            full = self._full_index(changes.index, req)
            with target.block_history():
                target.data_setitem(full, changes.values)
        label_id = job.what
        report = result.objects[label_id]
        walks = "; ".join(f"{'up' if s.direction > 0 else 'down'} to slice {s.last} ({s.reason.replace('_', ' ')})"
                          for s in report.stops)
        verb = "Cancelled after" if result.cancelled else "Propagated"
        self.status.emit(f"{verb} label {label_id}: {len(changes)} voxels written; {walks}. "
                         "Ctrl+Z (labels layer selected) undoes it.")
        self.last_result = result

    @staticmethod
    def _full_index(index: tuple[np.ndarray, ...], req) -> tuple[np.ndarray, ...]:
        """Sub-volume coordinates -> coordinates in the full labels array."""
        n = len(index[0])
        it = iter(index)
        return tuple(next(it) if isinstance(s, slice) else np.full(n, s, dtype=np.intp) for s in req["sub"])

    def close(self) -> None:
        if self.job is not None:
            self.job.drop()  # cancelled, and its partial result is not written after the widget closed
        self._close_store()

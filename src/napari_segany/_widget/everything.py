"""Segment everything: every object of the slice on screen, or of the volume through it, found
from a grid of point prompts (:func:`napari_segany.auto.everything.segment_everything`,
:func:`napari_segany.auto.volume.segment_volume`) in a worker, and written into the target
labels layer on the GUI thread as one undoable step.

What the user sees is what is segmented: the slice on screen with the widget's contrast window
(its embedding is reused when it is computed), or the volume through it with the same window.
Existing objects keep their pixels and ids unless "Replace existing objects" is ticked; then the
result replaces the labels of that slice or volume (ids above every id outside it). Cancel,
closing the dock, deleting the target layer or changing the image's data writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from napari.qt.threading import thread_worker
from qtpy.QtCore import QObject, Signal

from ..engine.predictor import Cancelled
from ..labels import next_label_id
from ._compat import guard_triton
from .commit import check_target
from .geometry import Plane
from .layers import find_layer
from .workers import Job, launch


@dataclass(frozen=True)
class Region:
    """Where a result goes: the slice on screen (``plane``) or, with ``axis``, the volume through
    it (every axis in ``fixed`` held at its index, the others whole, in data order)."""

    plane: Plane
    fixed: tuple[tuple[int, int], ...]
    axis: int | None = None  # the walked axis of the sub-volume (volume only)

    @property
    def index(self) -> tuple:
        held = dict(self.fixed)
        return tuple(held.get(ax, slice(None)) for ax in range(len(self.plane.shape)))

    def read(self, data) -> np.ndarray:
        """A copy of the region's labels: rows first for a slice, data order for a volume."""
        return np.array(self.plane.extract(data) if self.axis is None else data[self.index])

    def nd_index(self, coords: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """Coordinates in :meth:`read`'s array -> coordinates in the whole labels array."""
        if self.axis is None:
            return self.plane.nd_indices(*coords)
        it, n = iter(coords), len(coords[0])
        return tuple(next(it) if isinstance(s, slice) else np.full(n, s, dtype=np.intp) for s in self.index)

    def outside_max(self, data) -> int:
        """The highest id outside the region (0 when it is the whole array)."""
        top = 0
        for axis, i in self.fixed:
            for part in (slice(0, i), slice(i + 1, None)):
                idx = [slice(None)] * len(self.plane.shape)
                idx[axis] = part
                block = np.asarray(data[tuple(idx)])
                if block.size:
                    top = max(top, int(block.max()))
        return top

    def describe(self, preposition: bool = True) -> str:
        """Where, for a sentence: 'on slice 12', 'on the image', 'in the volume (60 slices along axis 0)'
        (without ``preposition``: 'slice 12'...)."""
        if self.axis is not None:
            on, what = "in", f"the volume ({self.plane.shape[self.axis]} slices along axis {self.axis})"
        elif not self.plane.fixed:
            on, what = "on", "the image"
        elif len(self.plane.fixed) == 1:
            on, what = "on", f"slice {self.plane.fixed[0][1]}"
        else:
            on, what = "on", "slice " + ", ".join(f"axis {a} = {i}" for a, i in self.plane.fixed)
        return f"{on} {what}" if preposition else what


def changes(now: np.ndarray, start: np.ndarray | None, result: np.ndarray, *, replace: bool, base: int):
    """What to write into a region whose labels are ``now`` (``start``: they were when the run began,
    None: empty): (coordinates, values, new ids). Kept mode: only pixels unlabelled then and now get
    the result's new objects; replace mode: the region becomes the result. Ids are ``base``,
    ``base + 1``... in the result's order."""
    if replace:
        fresh = result > 0
    else:
        fresh = (result > 0) & (now == 0)
        if start is not None:
            fresh &= start == 0
    found, inverse = np.unique(result[fresh], return_inverse=True)
    ids = np.arange(base, base + len(found), dtype=np.int64)
    if replace:
        final = np.zeros(now.shape, dtype=np.int64)
        final[fresh] = ids[inverse]
        where = np.nonzero(final != now)
        return where, final[where], ids
    return np.nonzero(fresh), ids[inverse], ids


class Everything(QObject):
    """Runs segment-everything for the widget's image into its target labels layer.

    Signals: ``status(str)``, ``busy(bool)``, ``progress(done, total)``, ``written((region, ids))`` after the
    target layer changed.
    """

    status = Signal(str)
    busy = Signal(bool)
    progress = Signal(int, int)
    written = Signal(object)  # (region, new ids)

    def __init__(self, controller) -> None:
        super().__init__()
        self.controller = controller
        self.job: Job | None = None
        self.last = None  # (region, ids) of the last write, for the curious (and the tests)
        self._store_key: tuple | None = None
        self._store_obj = None
        controller.target_deleted.connect(self._target_deleted)

    # -- what to segment -------------------------------------------------------
    def _request(self, volume: bool) -> dict:
        """Everything a run needs, read on the GUI thread; ValueError with advice."""
        c = self.controller
        s = c.state
        if s.predictor is None:
            raise ValueError("Load a model first.")
        image, plane = s.image_layer, s.plane
        if image is None or plane is None:
            raise ValueError("Pick an image layer and show it in 2D first.")
        target = c.target_layer
        if target is not None:
            check_target(target, image)
        window = c.embedding_key().window
        req = dict(image=image.unique_id, generation=s.generation(image.unique_id), window=window,
                   target=None if target is None else target.unique_id, rgb=plane.rgb)
        if not volume:
            region = Region(plane, plane.fixed)
            # the slice's embedding when it is computed, unless the slice is larger than the model's
            # frame: then the engine segments it in frame-sized tiles (same window), which finds
            # small objects that the whole slice shrunk into the frame loses
            usable = s.usable() if max(plane.size) <= int(s.predictor.model.image_size) else None
            req.update(region=region, pixels=c.image2d(), embedding=None if usable is None else usable[1])
        else:
            if len(plane.shape) < 3:
                raise ValueError("'Whole volume' needs a volume (3D or more); this image is 2D: choose "
                                 "'Slice on screen'.")
            if plane.rgb:
                raise ValueError("Segmenting RGB volumes is not supported; pick one channel as its own layer.")
            axis = plane.fixed[-1][0]  # the slider nearest to the displayed axes (z of t,z,y,x)
            region = Region(plane, plane.fixed[:-1], axis=axis)
            kept = [ax for ax in range(len(plane.shape)) if ax not in dict(region.fixed)]
            req.update(region=region, pixels=np.asarray(image.data[region.index]), sub_axis=kept.index(axis))
        req["existing"] = None if target is None else region.read(target.data)
        return req

    def _store(self, req):
        """The volume's embedding store, kept between runs on the same volume, window and model."""
        from ..volume import EmbeddingStore

        predictor = self.controller.state.predictor
        key = (req["image"], req["generation"], req["region"].fixed, req["sub_axis"], predictor.model_id,
               req["window"])
        if key != self._store_key:
            self._close_store()
            self._store_obj = EmbeddingStore(predictor, req["pixels"], axis=req["sub_axis"],
                                             contrast_limits=req["window"])
            self._store_key = key
        return self._store_obj

    def _fits(self, req) -> bool:
        """Whether the volume's slices fit in the model's frame (no tiles needed)."""
        shape = [n for ax, n in enumerate(req["pixels"].shape) if ax != req["sub_axis"]]
        return max(shape) <= int(self.controller.state.predictor.model.image_size)

    def _close_store(self) -> None:
        if self._store_obj is not None:
            self._store_obj.close()
        self._store_key = self._store_obj = None

    # -- running ---------------------------------------------------------------
    def start(self, settings, *, volume: bool = False, replace: bool = False) -> bool:
        """Segment everything on the slice on screen (or the volume through it); False, with a
        status message, when it cannot start."""
        if self.job is not None:
            self.status.emit("Segment everything is already running; wait for it or press Cancel.")
            return False
        try:
            req = self._request(volume)
            settings.uses_head(self.controller.state.predictor.model)  # a head asked of a model without one
            # the volume's embeddings are kept for the next run when its slices fit in the model's
            # frame; larger slices are segmented in frame-sized tiles, encoded as they come
            store = self._store(req) if volume and self._fits(req) else None
        except (ValueError, TypeError) as exc:
            self.status.emit(str(exc))
            return False
        predictor = self.controller.state.predictor
        existing = None if replace else req["existing"]
        if existing is not None and not existing.any():
            existing = None
        job = Job(req["region"])
        job.target = req["target"]
        guard_triton()

        def progress(done, total):
            self.progress.emit(int(done), int(total))

        common = dict(settings=settings, existing=existing, progress=progress, should_stop=lambda: job.cancelled,
                      contrast_limits=req["window"])

        @thread_worker
        def run():
            try:
                if volume:
                    from ..auto.volume import segment_volume

                    pixels = req["pixels"] if store is None else store.volume  # the store's own array
                    return segment_volume(predictor, pixels, axis=req["sub_axis"], store=store, **common)
                from ..auto.everything import segment_everything

                if req["embedding"] is not None:
                    return segment_everything(predictor, embedding=req["embedding"], **common)
                return segment_everything(predictor, req["pixels"], rgb=req["rgb"], **common)
            except Cancelled:
                return None

        self.job = job
        self.busy.emit(True)
        self.progress.emit(0, 0)
        self.status.emit(f"Segmenting everything {req['region'].describe()}... (Cancel stops it; "
                         "nothing is written until it ends)")
        launch(job, run(), lambda j, res: self._done(j, req, res, replace), self._failed)
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _target_deleted(self, uid) -> None:
        if self.job is not None and self.job.target is not None and self.job.target == uid:
            self.job.cancel()
            self.status.emit("The target labels layer was deleted: stopping; nothing will be written.")

    def _finish(self) -> None:
        self.job = None
        self.busy.emit(False)

    def _failed(self, job: Job, exc: Exception) -> None:
        self._finish()
        self.status.emit(f"Segment everything failed: {exc}")

    def _done(self, job: Job, req: dict, result, replace: bool) -> None:
        self._finish()
        region: Region = req["region"]
        where = region.describe()
        if result is None or job.cancelled:
            self.status.emit(f"Segment everything {where} was cancelled; nothing was written.")
            return
        message = self._write(job, req, result, replace)
        self.status.emit(message)

    def _write(self, job: Job, req: dict, result, replace: bool) -> str:
        """Write ``result`` into the target layer (one undo step); the sentence for the status line."""
        c, region = self.controller, req["region"]
        where = region.describe()
        s = c.state
        image = find_layer(c.viewer, req["image"])
        if image is None or s.generation(req["image"]) != req["generation"]:
            return (f"Segment everything {where}: the image was removed or its data changed during the "
                    "run, so nothing was written. Run it again.")
        if req["target"] is not None:
            target = find_layer(c.viewer, req["target"])
            if target is None:
                return (f"Segment everything {where}: the target labels layer was deleted, so nothing was "
                        "written. Pick or make a target layer and run it again.")
        elif s.image_layer is not None and s.image_layer.unique_id == req["image"]:
            target = c.target_layer  # one picked or made (by a commit) meanwhile, else made below
        else:
            return (f"Segment everything {where}: another image was picked meanwhile, so nothing was "
                    "written. Run it again.")
        labels = np.asarray(result.labels)
        try:
            if target is not None:
                check_target(target, image)
                now, data = region.read(target.data), target.data
            else:
                now, data = np.zeros(labels.shape, dtype=np.uint32), None
            if data is None:
                base = 1
            else:
                base = region.outside_max(data) + 1 if replace else next_label_id(data)
            where_, values, ids = changes(now, None if replace else req["existing"], labels, replace=replace,
                                          base=base)
            if len(ids) == 0:
                return (f"Found no new objects {where}; nothing was written. Lower 'Least predicted IoU' or "
                        "'Least stability', or use more points per side.")
            if target is not None:
                dtype = np.dtype(target.data.dtype)
                if np.issubdtype(dtype, np.integer) and int(ids[-1]) > np.iinfo(dtype).max:
                    raise ValueError(f"the labels layer '{target.name}' ({dtype}) cannot hold ids up to "
                                     f"{int(ids[-1])}; convert it to uint32 first")
            target = target if target is not None else c.ensure_target()
            if len(values):
                with target.block_history():
                    target.data_setitem(region.nd_index(where_), values)
        except (ValueError, TypeError) as err:
            return f"Segment everything {where}: nothing was written: {err}"
        c._bind_undo(target)  # Ctrl+Z on the target undoes it and selects the prompt points again
        c.prompts.activate_points()
        c._autosave(target)
        self.last = (region, ids)
        self.written.emit(self.last)
        first, last = int(ids[0]), int(ids[-1])
        span = f"id {first}" if first == last else f"ids {first}-{last}"
        n = len(ids)
        verb = (f"Replaced the labels of {region.describe(False)} with {n} object{'s' * (n != 1)}" if replace else
                f"Segmented {n} new object{'s' * (n != 1)} {where}")
        kept = "" if replace else "; existing objects kept"
        return f"{verb} ({span}) in '{target.name}'{kept}. Ctrl+Z (labels layer selected) undoes it."

    def close(self) -> None:
        if self.job is not None:
            self.job.drop()  # its result never reaches a closed widget
        self._close_store()

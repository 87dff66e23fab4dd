"""Segment everything in a volume: find and follow.

Slice by slice along one axis, the objects not labelled yet are found automatically
(:func:`~napari_segany.auto.everything.segment_everything` on the unlabelled pixels), and each
new object is at once followed through the volume in both directions by propagation
(:func:`~napari_segany.volume.propagate.propagate`, its stop criteria, never over another object).
An object is so found on the slice where the grid first sees it and kept with one id on every
slice propagation follows it to; the slices it reached need no second finding, and every slice is
still searched, so objects that lie only between others' slices are found too, except slices
whose pixels all hold one value (padding): nothing is searched there, and the model does not run on
them. Propagation honours the voxel spacing (``spacing``), so thick slices allow more change per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from .everything import GridSettings, segment_everything, start_labels
from ..engine.predictor import Cancelled
from ..volume.checks import check_axis
from ..volume.propagate import propagate
from ..volume.store import EmbeddingStore
from ..volume.window import single_valued, take_slice

__all__ = ["VolumeObjects", "segment_volume"]

#: Objects of one run that end and begin on neighbouring slices are one when their masks there
#: overlap more than this (IoU).
JOIN_IOU = 0.5


@dataclass(frozen=True)
class VolumeObjects:
    """``labels``: the volume's (Z, Y, X) uint32 labels (with ``existing`` given, those plus the
    new objects); ``table``: one row per new object (id, voxels, bbox as min then max index per
    axis, inclusive, centroid, first and last slice along ``axis``, the slice where the grid found
    it, and its predicted IoU and stability there)."""

    labels: np.ndarray
    table: list[dict]
    axis: int = 0

    @property
    def new_ids(self) -> list[int]:
        return [row["id"] for row in self.table]


def segment_volume(predictor, volume, *, axis: int = 0, settings: GridSettings | None = None, existing=None,
                   first_id: int | None = None, store=None, spacing: tuple[float, ...] | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, channel: int | None = None,
                   contrast_limits: tuple[float, float] | None = None) -> VolumeObjects:
    """Every object of ``volume`` as 3D labels with one id per object.

    Parameters
    ----------
    predictor : Predictor
    volume : (Z, Y, X) or (Z, Y, X, C) array-like
        Read one slice at a time along ``axis``, all slices with one intensity window
        (``contrast_limits`` or the volume's percentiles). Slices that hold a single value are
        not searched, and objects are not followed into them.
    settings : GridSettings, optional
        The grid on each slice (slices larger than the model's frame are searched in tiles).
    existing : labels of the volume's shape, optional
        Objects already there stay as they are; only unlabelled voxels receive new objects,
        numbered from ``existing.max() + 1`` (or ``first_id``, above them).
    store : EmbeddingStore, optional
        Embeddings of this volume's slices along ``axis`` to use and fill; by default one is made
        in memory for this call.
    spacing : (3,) floats, optional
        Voxel size per axis, for propagation's stop criteria (see :func:`~napari_segany.propagate`).
    progress : callable(done, total), optional
        Slices searched.
    should_stop : callable() -> bool, optional
        True raises :class:`~napari_segany.Cancelled` (nothing is returned).
    """
    settings = settings or GridSettings()
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"volume has shape {shape}; pass (Z, Y, X), or (Z, Y, X, C) with channels last")
    axis = check_axis(axis, 3)
    if store is not None and (tuple(store.volume.shape) != shape or store.axis != axis):
        raise ValueError("store= holds the embeddings of another volume or axis; pass the store of this "
                         "volume along this axis, or none")
    labels, next_id = start_labels(existing, shape[:3], first_id)
    own = store is None
    if own:
        store = EmbeddingStore(predictor, volume, axis=axis, channel=channel, contrast_limits=contrast_limits)
    frame = int(predictor.model.image_encoder.img_size)
    n = shape[axis]
    found_on: dict[int, dict] = {}  # id -> its row on the slice where it was found
    try:
        for z in range(n):
            if should_stop is not None and should_stop():
                raise Cancelled("segmentation of everything was cancelled")
            if single_valued(take_slice(volume, axis, z)):  # nothing to see, nothing to find
                if progress is not None:
                    progress(z + 1, n)
                continue
            here = np.array(take_slice(labels, axis, z))
            common = dict(settings=settings, existing=here, first_id=max(next_id, int(here.max(initial=0)) + 1),
                          should_stop=should_stop)
            if max(store.slice_shape) > frame:  # in tiles, on the pixels, with the store's window
                found = segment_everything(predictor, np.asarray(take_slice(volume, axis, z)), channel=channel,
                                           contrast_limits=store.window, **common)
            else:
                found = segment_everything(predictor, embedding=store.get(z, should_stop=should_stop), **common)
            if found.table:
                take_slice(labels, axis, z)[...] = found.labels
                ids = found.new_ids
                next_id = ids[-1] + 1
                found_on.update({row["id"]: dict(row, slice=z) for row in found.table})
                followed = propagate(volume, predictor=predictor, labels=labels, ids=ids, seed_slices=[z],
                                     axis=axis, store=store, spacing=spacing, should_stop=should_stop)
                if followed.cancelled:
                    raise Cancelled("segmentation of everything was cancelled")
                labels = np.asarray(followed.labels, dtype=np.uint32)
            if progress is not None:
                progress(z + 1, n)
    finally:
        if own:
            store.close()
    labels, found_on = join_split_objects(labels, axis, found_on)
    return VolumeObjects(labels, _table(labels, axis, found_on), axis)


def join_split_objects(labels: np.ndarray, axis: int, found_on: dict[int, dict],
                       threshold: float = JOIN_IOU) -> tuple[np.ndarray, dict[int, dict]]:
    """One id for an object the run found twice: propagation stopped following it (its predicted
    IoU or area fell), and the grid found it again on the next slice, where it became a new object.
    Two objects of this run are joined when one ends on the slice before the other begins and their
    masks on those two slices overlap with IoU above ``threshold``; the joined object keeps the id
    found first, and the run's ids are then renumbered in order without gaps. Objects given in
    ``existing`` are never touched."""
    if len(found_on) < 2:
        return labels, found_on
    first_id = min(found_on)
    moved = np.moveaxis(labels, axis, 0)
    boxes = ndimage.find_objects(np.where(labels >= first_id, labels, 0), max_label=max(found_on))
    span = {i: (boxes[i - 1][axis].start, boxes[i - 1][axis].stop - 1) for i in found_on if boxes[i - 1] is not None}
    parent = {i: i for i in span}

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i, (_, last) in sorted(span.items()):
        if last + 1 >= moved.shape[0]:
            continue
        end, after = moved[last] == i, moved[last + 1]
        for j in np.unique(after[end]):
            j = int(j)
            if j in span and j != i and span[j][0] == last + 1:
                start = after == j
                if (end & start).sum() / (end | start).sum() > threshold:
                    a, b = sorted((root(i), root(j)))
                    parent[b] = a
    joined = {i: root(i) for i in span if root(i) != i}
    keep = sorted(i for i in span if i not in joined)
    number = {old: first_id + k for k, old in enumerate(keep)}
    number.update({i: number[r] for i, r in joined.items()})
    olds = np.array(sorted(number), dtype=labels.dtype)
    news = np.array([number[o] for o in olds.tolist()], dtype=labels.dtype)
    out = labels.copy()
    run = labels >= first_id
    values = labels[run]
    at = np.minimum(np.searchsorted(olds, values), len(olds) - 1)
    out[run] = np.where(olds[at] == values, news[at], values)
    return out, {number[i]: found_on[i] for i in keep}


def _table(labels: np.ndarray, axis: int, found_on: dict[int, dict]) -> list[dict]:
    ids = sorted(found_on)
    if not ids:
        return []
    boxes = ndimage.find_objects(np.where(labels >= ids[0], labels, 0), max_label=ids[-1])
    table = []
    for i in ids:
        window = boxes[i - 1]
        if window is None:
            continue
        where = np.nonzero(labels[window] == i)
        coords = [w + s.start for w, s in zip(where, window)]
        table.append({"id": i, "voxels": int(coords[0].size),
                      "bbox": tuple(int(c.min()) for c in coords) + tuple(int(c.max()) for c in coords),
                      "centroid": tuple(round(float(c.mean()), 2) for c in coords),
                      "first_slice": int(coords[axis].min()), "last_slice": int(coords[axis].max()),
                      "found_on_slice": found_on[i]["slice"],
                      "predicted_iou": found_on[i]["predicted_iou"], "stability": found_on[i]["stability"]})
    return table

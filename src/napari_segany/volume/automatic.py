"""Segment everything in a volume: every slice along one axis segmented automatically
(:func:`~napari_segany.engine.automatic.segment_everything`), then the 2D objects of neighbouring
slices linked by overlap into 3D objects with one id each.

Every slice is segmented, so an object that lies only between two others' slices is found too.
Linking compares masks, not distances, so it holds for any voxel spacing; a 2D object joins the
object of the previous slice (or of the one before, when the object was missed on one slice) that
it overlaps most, each object taking at most one per slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from ..engine.automatic import GridSettings, segment_everything, start_labels
from ..engine.predictor import Cancelled
from .checks import check_axis
from .window import take_slice, volume_window

__all__ = ["VolumeObjects", "segment_volume"]


@dataclass(frozen=True)
class VolumeObjects:
    """``labels``: the volume's (Z, Y, X) uint32 labels (with ``existing`` given, those plus the
    new objects); ``table``: one row per new object (id, voxels, bbox as min then max index per
    axis, inclusive, centroid, first and last slice along ``axis``, and the area-weighted mean of
    its slices' predicted IoU and stability)."""

    labels: np.ndarray
    table: list[dict]
    axis: int = 0

    @property
    def new_ids(self) -> list[int]:
        return [row["id"] for row in self.table]


def segment_volume(predictor, volume, *, axis: int = 0, settings: GridSettings | None = None, existing=None,
                   first_id: int | None = None, store=None, link_iou: float = 0.25, max_gap: int = 1,
                   progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, channel: int | None = None,
                   contrast_limits: tuple[float, float] | None = None) -> VolumeObjects:
    """Every object of ``volume`` as 3D labels with ids consistent across slices.

    Parameters
    ----------
    predictor : Predictor
    volume : (Z, Y, X) or (Z, Y, X, C) array-like
        Read one slice at a time along ``axis``, all slices with one intensity window
        (``contrast_limits`` or the volume's percentiles).
    settings : GridSettings, optional
    existing : labels of the volume's shape, optional
        Objects already there stay as they are; only unlabelled voxels receive new objects,
        numbered from ``existing.max() + 1`` (or ``first_id``, above them).
    store : EmbeddingStore, optional
        Embeddings of this volume's slices along ``axis`` to use (each slice then segmented whole,
        not in tiles; the store's slices are the ones segmented, so it must be of these very
        voxels); without one each slice is encoded here.
    link_iou : float
        Least overlap (IoU) of two 2D objects on neighbouring slices to be one 3D object.
    max_gap : int
        Slices an object may be missing from and still continue.
    progress : callable(done, total), optional
        Grid points dealt with over all slices.
    should_stop : callable() -> bool, optional
        True raises :class:`~napari_segany.Cancelled` (nothing is returned).
    """
    settings = settings or GridSettings()
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"volume has shape {shape}; pass (Z, Y, X), or (Z, Y, X, C) with channels last")
    axis = check_axis(axis, 3)
    if not 0.0 < float(link_iou) <= 1.0 or int(max_gap) < 0:
        raise ValueError("link_iou must lie in (0, 1] and max_gap be a whole number >= 0")
    if store is not None and (tuple(store.volume.shape) != shape or store.axis != axis):
        raise ValueError("store= holds the embeddings of another volume or axis; pass the store of this "
                         "volume along this axis, or none")
    labels, first_id = start_labels(existing, shape[:3], first_id)
    window = store.window if store is not None else volume_window(volume, axis, channel=channel,
                                                                  contrast_limits=contrast_limits)
    n = shape[axis]
    tracks = _Tracks(first_id, float(link_iou), int(max_gap))
    for z in range(n):
        if should_stop is not None and should_stop():
            raise Cancelled("segmentation of everything was cancelled")
        before = take_slice(labels, axis, z)

        def advance(done, total, z=z):
            if progress is not None:
                progress(z * total + done, n * total)

        common = dict(settings=settings, existing=before if existing is not None else None, progress=advance,
                      should_stop=should_stop)
        if store is not None:
            found = segment_everything(predictor, embedding=store.get(z, should_stop=should_stop), **common)
        else:
            found = segment_everything(predictor, np.asarray(take_slice(volume, axis, z)), channel=channel,
                                       contrast_limits=window, **common)
        new = np.where(before > 0, 0, found.labels) if found.table else None
        ids = tracks.link(z, new, found.table)
        if new is not None:
            view = take_slice(labels, axis, z)
            local = np.array(sorted(ids), np.int64)
            mark = new > 0
            view[mark] = np.array([ids[i] for i in local], np.uint32)[np.searchsorted(local, new[mark])]
    return VolumeObjects(labels, _table(labels, axis, tracks), axis)


class _Tracks:
    """3D objects being built slice by slice: each one's last 2D mask and where it was seen."""

    def __init__(self, first_id: int, link_iou: float, max_gap: int):
        self.next_id, self.link_iou, self.max_gap = first_id, link_iou, max_gap
        self.last: dict[int, tuple[int, np.ndarray]] = {}  # id -> (slice, mask)
        self.scores: dict[int, list[tuple[int, float, float]]] = {}  # id -> (area, iou, stability) per slice

    def link(self, z: int, new: np.ndarray | None, table: list[dict]) -> dict[int, int]:
        """Global id of each 2D object (by its id in ``new``) on slice ``z``."""
        if new is None:
            return {}
        live = {i: m for i, (seen, m) in self.last.items() if z - seen <= self.max_gap + 1}
        pairs = []
        for row in table:
            mine = new == row["id"]
            for i, theirs in live.items():
                inter = np.count_nonzero(mine & theirs)
                if inter:
                    iou = inter / np.count_nonzero(mine | theirs)
                    if iou >= self.link_iou:
                        pairs.append((-iou, row["id"], i))
        ids, used = {}, set()
        for _, local, global_id in sorted(pairs):
            if local not in ids and global_id not in used:
                ids[local] = global_id
                used.add(global_id)
        for row in table:
            if row["id"] not in ids:
                ids[row["id"]] = self.next_id
                self.next_id += 1
            global_id = ids[row["id"]]
            self.last[global_id] = (z, new == row["id"])
            self.scores.setdefault(global_id, []).append((row["area"], row["predicted_iou"], row["stability"]))
        for i in [i for i, (seen, _) in self.last.items() if z - seen > self.max_gap]:
            del self.last[i]
        return ids


def _table(labels: np.ndarray, axis: int, tracks: _Tracks) -> list[dict]:
    ids = sorted(tracks.scores)
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
        rows = np.array(tracks.scores[i], float)
        weights = rows[:, 0] / rows[:, 0].sum()
        table.append({"id": i, "voxels": int(coords[0].size),
                      "bbox": tuple(int(c.min()) for c in coords) + tuple(int(c.max()) for c in coords),
                      "centroid": tuple(round(float(c.mean()), 2) for c in coords),
                      "first_slice": int(coords[axis].min()), "last_slice": int(coords[axis].max()),
                      "predicted_iou": round(float(weights @ rows[:, 1]), 4),
                      "stability": round(float(weights @ rows[:, 2]), 4)})
    return table

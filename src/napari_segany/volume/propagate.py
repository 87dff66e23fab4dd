"""Mask propagation through a volume, slice by slice, from one or more seed slices."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np

from ..labels import commit_mask, next_label_id
from ..model import ModelInfo
from ..engine.predictor import Cancelled
from .answers import crop_window, slice_answers
from .checks import check_axis, check_label_id, check_slice, check_spacing, check_stops, check_volume
from .prompting import DEFAULT_PROMPT, allowed_area_factor, area_ratio, check_mode, step_ratio
from .report import Changes, ObjectReport, PropagationResult, Stop
from .store import EmbeddingStore
from .window import single_valued, take_slice

__all__ = ["propagate"]


@dataclass
class _Front:
    """A walk of one object from one seed in one direction."""

    label_id: int
    seed: int
    direction: int
    z: int
    mask: np.ndarray
    peak: int

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


def propagate(
    volume,
    seed_masks=None,
    *,
    predictor=None,
    labels=None,
    ids: Iterable[int] | None = None,
    seed_slices: Iterable[int] | None = None,
    label_id: int | None = None,
    axis: int = 0,
    store: EmbeddingStore | None = None,
    spacing: tuple[float, ...] | None = None,
    iou_threshold: float | None = None,
    area_change: float = 2.5,
    min_area: int = 1,
    prompt: str = DEFAULT_PROMPT,
    max_distance: float | None = None,
    approved: Iterable[int] | None = None,
    overwrite: bool = False,
    zoom: bool = True,
    channel: int | None = None,
    contrast_limits: tuple[float, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PropagationResult:
    """Segment objects through a volume from their masks on one or more slices.

    Each slice is prompted from the object's mask on its neighbour (box +
    the mask as ``mask_input`` by default), walking away from every seed slice
    in both directions until a stop criterion. Between two seed slices of the
    same object both walks advance one slice at a time and meet in the middle.
    A walk never enters a slice whose pixels all hold one value (padding: there
    is nothing to follow there).
    All objects on the same slice share one batched decoder call.

    Parameters
    ----------
    volume : array-like, (Z, Y, X) or (Z, Y, X, C) with channels last
    seed_masks : dict {slice: mask} or labels volume, optional
        2D masks on slices along ``axis``: bool (one object, id ``label_id``)
        or integer (each non-zero id is an object). A labels volume of the
        volume's shape is the same as ``labels=``.
    predictor : Predictor
        Needed unless ``store`` is given (the store's predictor is used).
    labels : integer array of the volume's spatial shape, optional
        Existing labels: the objects ``ids`` (default: all) are propagated from
        the slices where they are present (or only ``seed_slices``), and the
        result is written into a copy. Slices of other objects are kept.
    ids, seed_slices : optional
        Which objects of ``labels`` to propagate, and from which slices
        (re-propagation from a corrected slice).
    label_id : int, optional
        Id of a bool seed mask (default: a new id).
    axis : int
        Axis to walk along: 0 for z in (Z, Y, X), 1/2 for the other MRI
        planes; 0 for t in a (T, Y, X) series.
    store : EmbeddingStore, optional
        Reuse (and fill) an existing store with its disk cache; by default an
        in-memory store is made for this call.
    spacing : (3,) floats, optional
        Voxel size per axis (napari layer scale). Slices thicker than the
        in-plane pixel allow more area change per step (``area_change **
        (dz / dxy)``), ``max_distance`` is in these units, and the reported
        volumes and extents are physical. Leave it None for a time axis.
    iou_threshold : float, optional
        Stop when the decoder's predicted IoU falls below it. Default: the
        model's ``info.stop_iou`` (0.8 for SAM models; 0.5 for the included
        ``segany_vit_t_512``, whose scores are calibrated and lower).
    area_change : float
        Stop when the area changes by more than this factor between
        neighbouring slices (one pixel size apart; see ``spacing``).
    min_area : int
        Stop ("vanished") when the mask has fewer pixels.
    prompt : str
        How each slice is prompted from the previous mask: one of
        ``box``, ``points``, ``mask``, ``box+mask`` (default), ``box+points``,
        ``points+mask``, ``box+points+mask``.
    max_distance : float, optional
        Stop this far from the seed (spacing units).
    approved : iterable of int, optional
        Slices that must not change: a walk stops before them.
    overwrite : bool
        Allow writing over other objects (default False: never).
    zoom : bool
        Answer an object that is small in its slice on an enlarged crop around
        its mask on the previous slice (the crops of :mod:`napari_segany.engine.zoom`;
        one more encoder pass per crop, none for objects that the whole slice
        already shows large enough: never on slices under 427 px for the
        included 512 px model, 853 px for SAM's 1024). False: always the
        whole slice.
    progress : callable(done, total), optional
        Called after each slice; ``total`` is an upper bound that shrinks as
        walks stop.
    should_stop : callable() -> bool, optional
        Polled before each slice and during embedding; when True the result
        so far is returned with ``cancelled=True``.

    Returns
    -------
    PropagationResult
        ``labels`` (a new array), per-object reports, and ``changes``.
    """
    spatial = check_volume(volume)
    axis = check_axis(axis, len(spatial))
    n = spatial[axis]
    plane_shape = tuple(s for i, s in enumerate(spatial) if i != axis)
    if min(plane_shape) < 8:
        raise ValueError(f"slices along axis {axis} are {plane_shape[0]} x {plane_shape[1]} pixels, too small to "
                         "segment (at least 8 x 8); choose another axis, or for a 2D RGB image use Predictor")
    spacing = check_spacing(spacing, len(spatial))
    mode = check_mode(prompt)
    check_stops(iou_threshold, area_change, min_area, max_distance)  # the model's own level: checked on loading
    label_id = check_label_id(label_id)
    if store is None:
        if predictor is None:
            raise ValueError("pass predictor= (a napari_segany.Predictor) or store= (an EmbeddingStore)")
        store = EmbeddingStore(predictor, volume, axis=axis, channel=channel, contrast_limits=contrast_limits,
                               prefetch=0)
    else:
        if tuple(store.volume.shape) != tuple(volume.shape) or store.axis != axis:
            raise ValueError(f"the store holds a volume of shape {tuple(store.volume.shape)} along axis "
                             f"{store.axis}, not this one ({tuple(volume.shape)}, axis {axis}); make a "
                             "store for this volume and axis")
        predictor = predictor or store.predictor
    if iou_threshold is None:
        iou_threshold = model_stop_iou(predictor)
    if isinstance(seed_masks, np.ndarray) and seed_masks.shape == spatial:
        labels, seed_masks = seed_masks, None
    original, out = _labels_out(labels, spatial, seed_masks, label_id)
    seeds = _collect_seeds(out, axis, n, plane_shape, seed_masks, labels, ids, seed_slices, label_id, overwrite)
    approved_set = {check_slice(z, n, axis, "approved slice") for z in (approved or ())}

    factor = allowed_area_factor(float(area_change), step_ratio(spacing, axis))
    fronts: list[_Front] = []
    claimed: dict[int, set[int]] = {}
    reports: dict[int, ObjectReport] = {}
    for oid, per_slice in seeds.items():
        claimed[oid] = set(per_slice)
        reports[oid] = ObjectReport(oid, sorted(per_slice))
        for z in sorted(per_slice):
            m = per_slice[z]
            for d in (-1, 1):
                fronts.append(_Front(oid, z, d, z, m, int(np.count_nonzero(m))))
    touched = {z for per_slice in seeds.values() for z in per_slice}
    done = decoder_calls = 0
    cancelled = False

    blank: dict[int, bool] = {}

    def is_blank(z: int) -> bool:
        if z not in blank:
            blank[z] = single_valued(store.slice(z))
        return blank[z]

    def stop(f: _Front, reason: str, at=None, score=None, ratio=None) -> None:
        reports[f.label_id].stops.append(Stop(f.seed, f.direction, f.z, reason, at, score, ratio))

    active = fronts
    while active:
        if should_stop is not None and should_stop():
            cancelled = True
            break
        groups: dict[int, list[_Front]] = defaultdict(list)
        for f in active:
            nz = f.z + f.direction
            if not 0 <= nz < n:
                stop(f, "end_of_volume")
            elif max_distance is not None and abs(nz - f.seed) * spacing[axis] > max_distance:
                stop(f, "max_distance", nz)
            elif nz in claimed[f.label_id] or any(g.label_id == f.label_id for g in groups.get(nz, ())):
                stop(f, "met_seed", nz)
            elif nz in approved_set:
                stop(f, "approved", nz)
            elif is_blank(nz):
                stop(f, "blank", nz)
            else:
                groups[nz].append(f)
        survivors: list[_Front] = []
        for nz in sorted(groups):
            fs = groups[nz]
            try:
                answers, calls = slice_answers(store, predictor, nz, [f.mask for f in fs], mode, zoom=zoom,
                                               should_stop=should_stop)
            except Cancelled:
                cancelled = True
                break
            decoder_calls += calls
            plane = take_slice(out, axis, nz)
            for f, (mask, score) in zip(fs, answers):
                raw_area = int(np.count_nonzero(mask))
                if not overwrite:
                    mask = mask & ((plane == 0) | (plane == f.label_id))
                area = int(np.count_nonzero(mask))
                ratio = area_ratio(area, f.area, f.peak)
                if raw_area < min_area:
                    stop(f, "vanished", nz, score)
                elif area < min_area:
                    stop(f, "occupied", nz, score)
                elif score < iou_threshold:
                    stop(f, "low_iou", nz, score)
                elif ratio > factor:
                    stop(f, "area_change", nz, score, ratio)
                else:
                    commit_mask(plane, mask, f.label_id, overwrite=overwrite, replace=True)
                    claimed[f.label_id].add(nz)
                    reports[f.label_id].written.append(nz)
                    touched.add(nz)
                    f.z, f.mask = nz, plane == f.label_id
                    f.peak = max(f.peak, f.area)
                    survivors.append(f)
            done += 1
            if progress is not None:
                progress(done, done + _remaining(survivors + [g for z2 in groups if z2 > nz for g in groups[z2]], n))
        if cancelled:
            break
        active = survivors
        if store.prefetch_radius > 0:  # whole slices only: crops are computed when needed
            whole = [f for f in active if not zoom or crop_window(f.mask, predictor.model.image_size) is None]
            if whole:
                store.prefetch(sorted({f.z + k * f.direction for f in whole for k in (1, 2)
                                       if 0 <= f.z + k * f.direction < n}))
    if cancelled:
        for f in active:
            if not any(s.seed == f.seed and s.direction == f.direction for s in reports[f.label_id].stops):
                stop(f, "cancelled")
    return _finish(out, original, axis, spacing, reports, touched, cancelled, done, decoder_calls)


def model_stop_iou(predictor) -> float:
    """The model's default stop threshold (``model.info.stop_iou``; ModelInfo's default where a stand-in has none)."""
    info = getattr(getattr(predictor, "model", None), "info", None)
    return float(getattr(info, "stop_iou", ModelInfo.stop_iou))


def _remaining(fronts: list[_Front], n: int) -> int:
    return sum((n - 1 - f.z) if f.direction > 0 else f.z for f in fronts)


# -- validation -------------------------------------------------------------------
def _labels_out(labels, spatial, seed_masks, label_id) -> tuple[np.ndarray | None, np.ndarray]:
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != spatial:
            raise ValueError(f"labels have shape {labels.shape} but the volume's spatial shape is {spatial}; "
                             "pass a labels volume of the same shape as the image")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be an integer array, got {labels.dtype}")
        return labels, labels.copy()
    top = int(label_id or 0)
    if isinstance(seed_masks, Mapping):
        for m in seed_masks.values():
            m = np.asarray(m)
            if m.dtype != bool and m.size and np.issubdtype(m.dtype, np.integer):
                top = max(top, int(m.max()))
    return None, np.zeros(spatial, np.uint16 if top < 65535 else np.uint32)


def _collect_seeds(out, axis, n, plane_shape, seed_masks, labels, ids, seed_slices, label_id,
                   overwrite) -> dict[int, dict[int, np.ndarray]]:
    """{object id: {slice: mask}}; seed masks given as dicts are written into ``out``."""
    seeds: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
    if seed_masks is not None:
        if not isinstance(seed_masks, Mapping) or not seed_masks:
            raise TypeError("seed_masks must be a non-empty dict {slice index: 2D mask} or a labels volume "
                            "of the image's shape")
        new_id = label_id if label_id is not None else next_label_id(out)
        for z, mask in seed_masks.items():
            z = check_slice(z, n, axis)
            mask = np.asarray(mask)
            if mask.shape != plane_shape:
                raise ValueError(f"the seed mask on slice {z} has shape {mask.shape}, but slices along axis "
                                 f"{axis} have shape {plane_shape}")
            if not np.any(mask):
                raise ValueError(f"the seed mask on slice {z} is empty; draw or segment the object on that "
                                 "slice first")
            parts = {int(new_id): mask} if mask.dtype == bool else {
                int(k): mask == k for k in np.unique(mask) if k != 0}
            plane = take_slice(out, axis, z)
            for oid, m in parts.items():
                commit_mask(plane, m, oid, overwrite=overwrite, replace=True)
                written = plane == oid
                if not written.any():
                    raise ValueError(f"the seed of object {oid} on slice {z} lies entirely on other objects; "
                                     "pass overwrite=True to replace them")
                seeds[oid][z] = written
    elif labels is not None:
        present = _ids_per_slice(out, axis, n)
        wanted = sorted(set().union(*present.values())) if ids is None else [int(i) for i in ids]
        if not wanted:
            raise ValueError("the labels volume is empty: draw an object on one slice first")
        zs = range(n) if seed_slices is None else [check_slice(z, n, axis) for z in seed_slices]
        for oid in wanted:
            for z in zs:
                if oid in present[z]:
                    seeds[oid][z] = take_slice(out, axis, z) == oid
            if not seeds[oid]:
                where = "in the labels" if seed_slices is None else f"on slices {sorted(zs)}"
                raise ValueError(f"object {oid} is not present {where}; nothing to propagate from")
    else:
        raise ValueError("give seed_masks={slice: mask} or labels= (a labels volume with the objects to propagate)")
    return dict(seeds)


def _ids_per_slice(labels: np.ndarray, axis: int, n: int) -> dict[int, set[int]]:
    return {z: {int(v) for v in np.unique(take_slice(labels, axis, z)) if v != 0} for z in range(n)}


def _finish(out, original, axis, spacing, reports, touched, cancelled, done, calls) -> PropagationResult:
    scan = set(touched)  # the objects can only be on slices written now or present before
    if original is not None:
        others = tuple(i for i in range(out.ndim) if i != axis)
        scan |= set(np.flatnonzero(np.isin(original, list(reports)).any(axis=others)).tolist())
    present = defaultdict(list)
    counts: dict[int, int] = defaultdict(int)
    for z in sorted(scan):
        vals, cnt = np.unique(take_slice(out, axis, z), return_counts=True)
        for v, c in zip(vals.tolist(), cnt.tolist()):
            if v in reports:
                present[v].append(z)
                counts[v] += c
    voxel = float(np.prod(spacing))
    for oid, rep in reports.items():
        rep.slices = present.get(oid, [])
        rep.voxels = counts.get(oid, 0)
        rep.volume = rep.voxels * voxel
        rep.extent = (rep.last - rep.first + 1) * spacing[axis] if rep.slices else 0.0
        rep.written.sort()
        rep.stops.sort(key=lambda s: (s.seed, s.direction))
    index_parts, prev_parts, new_parts = [], [], []
    for z in sorted(touched):
        new_plane = take_slice(out, axis, z)
        old_plane = take_slice(original, axis, z) if original is not None else np.zeros_like(new_plane)
        idx = np.nonzero(new_plane != old_plane)
        full = list(idx)
        full.insert(axis, np.full(idx[0].shape, z, np.intp))
        index_parts.append(full)
        prev_parts.append(old_plane[idx])
        new_parts.append(new_plane[idx])
    if index_parts:
        index = tuple(np.concatenate([p[d] for p in index_parts]) for d in range(out.ndim))
        changes = Changes(index, np.concatenate(prev_parts), np.concatenate(new_parts))
    else:
        changes = Changes(tuple(np.zeros(0, np.intp) for _ in range(out.ndim)), out[:0].ravel(), out[:0].ravel())
    return PropagationResult(out, reports, changes, axis, spacing, cancelled, done, calls)

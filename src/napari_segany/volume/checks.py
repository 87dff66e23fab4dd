"""Checks of the arguments of volume functions, each raising an error that says what to pass."""

from __future__ import annotations

import numpy as np


def check_volume(volume) -> tuple[int, ...]:
    if not hasattr(volume, "shape") or not hasattr(volume, "__getitem__"):
        raise TypeError(f"volume must be an array (numpy, zarr, dask...), got {type(volume).__name__}")
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) == 2:
        raise ValueError(f"volume has shape {shape}, which is a 2D image; propagate needs a volume "
                         "(Z, Y, X) or a series (T, Y, X). Segment a 2D image with Predictor.predict")
    if len(shape) not in (3, 4):
        raise ValueError(f"volume has shape {shape}; pass a 3D (Z, Y, X) volume, or 4D (Z, Y, X, C) "
                         "with channels last")
    return shape[:3]


def check_axis(axis, ndim: int) -> int:
    if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis!r} is not one of the volume's {ndim} spatial axes (0..{ndim - 1})")
    return int(axis) % ndim


def check_channel(channel, shape: tuple[int, ...]) -> int | None:
    """``channel`` of a (Z, Y, X, C) volume; refused on a volume without channels (it was ignored)."""
    if channel is None:
        return None
    if len(shape) != 4:
        raise ValueError(f"channel={channel!r} was given but the volume has shape {tuple(shape)}, without a "
                         "channel axis; leave channel out")
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < shape[3]:
        raise ValueError(f"channel={channel!r} is not one of the volume's {shape[3]} channels (0..{shape[3] - 1})")
    return int(channel)


def check_label_id(label_id) -> int | None:
    """A whole id >= 1, or None (a new id); 2.7 was written as id 2."""
    if label_id is None:
        return None
    ok = not isinstance(label_id, bool) and isinstance(label_id, (int, float, np.integer, np.floating))
    if not ok or not float(label_id).is_integer() or label_id < 1:
        raise ValueError(f"label_id must be a whole number >= 1 (0 is background), got {label_id!r}")
    return int(label_id)


def check_spacing(spacing, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    values = tuple(float(s) for s in spacing)
    if len(values) != ndim or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be {ndim} positive numbers (one voxel size per axis, e.g. the "
                         f"layer's scale), got {spacing!r}")
    return values


def check_slice(z, n: int, axis: int, what: str = "seed slice") -> int:
    if not isinstance(z, (int, np.integer)) or not 0 <= z < n:
        raise ValueError(f"{what} {z!r} is outside the volume, which has {n} slices along axis {axis} "
                         f"(0..{n - 1})")
    return int(z)


def check_stops(iou_threshold, area_change, min_area, max_distance) -> None:
    """Refuse stop rules of a propagation that would silently mean something else (a NaN threshold
    compares False and switched its stop off). -inf / inf switch a stop off on purpose; None: the
    model's own level."""
    if iou_threshold is not None:
        iou = float(iou_threshold)
        if np.isnan(iou) or iou > 1:
            raise ValueError(f"iou_threshold must be at most 1 (a predicted IoU; -inf accepts every slice), "
                             f"got {iou_threshold!r}")
    change = float(area_change)
    if np.isnan(change) or change < 1:
        raise ValueError(f"area_change must be a factor of at least 1 (e.g. 2.5; inf allows any change), "
                         f"got {area_change!r}")
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 0:
        raise ValueError(f"min_area must be a whole number of pixels >= 0, got {min_area!r}")
    if max_distance is not None and (np.isnan(float(max_distance)) or float(max_distance) < 0):
        raise ValueError(f"max_distance must be >= 0 (in spacing units) or None, got {max_distance!r}")

"""Which connected regions of a predicted mask belong to the prompted object.

The decoder thresholds its logits pixel by pixel, so a mask can hold, besides
the prompted object, small islands elsewhere: a speck on a neighbour's edge,
a bright spot across the image. Committed as they are, these islands become
part of the object's label far from where the user clicked and must be
erased by hand (and in a volume, propagation follows them from slice to
slice). :func:`keep_prompted` keeps the regions the prompts point at:

- every region holding a positive point (a point on the background keeps
  the region nearest to it);
- with a box, every region lying at least half inside the box, and the
  region with the largest area inside it (the object may reach past a
  loose box).

Regions are 8-connected. A mask with one region, or prompts with neither a
positive point nor a box (negative points only, a mask prompt only), is
returned unchanged. Holes are never filled: rings and nested structures are
valid objects.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .preprocess import LARGE_IMAGE_PIXELS, object_window
from .prompts import check_box

#: How far the boundary refiner reaches beyond a mask (its crop margin), plus interpolation slack.
REFINER_REACH = 16

#: Predictor(regions=...): "prompted" keeps the prompted regions, "all" returns the decoder's mask as is.
REGION_MODES = ("prompted", "all")
_EIGHT = np.ones((3, 3), dtype=bool)


def check_regions(mode: str) -> str:
    if mode not in REGION_MODES:
        raise ValueError(f"regions must be one of {REGION_MODES}, got {mode!r}: 'prompted' keeps the "
                         "connected regions under the prompts, 'all' keeps every region the decoder returns")
    return mode


def keep_prompted(mask: np.ndarray, points=None, labels=None, box=None) -> np.ndarray:
    """The regions of a 2D bool ``mask`` that the prompts point at (see the module's description).

    points: (N, 2) (row, col) in the mask's pixels; labels: (N,) 1 positive,
    0 negative, -1 ignored (all positive when omitted); box: (min_row,
    min_col, max_row, max_col), inclusive, clipped to the mask like the
    predictor's boxes (:func:`napari_segany.engine.prompts.check_box`). Returns a new bool array or
    ``mask`` itself when nothing is removed.
    """
    positive = _positive_points(points, labels, mask.shape)
    if not len(positive) and box is None:
        return mask
    regions, n = ndi.label(mask, structure=_EIGHT)
    if n <= 1:
        return mask
    keep = np.zeros(n + 1, dtype=bool)
    if len(positive):
        hit = regions[positive[:, 0], positive[:, 1]]
        if (hit == 0).any():  # a point outside the mask: the region nearest to it
            _, (rr, cc) = ndi.distance_transform_edt(regions == 0, return_indices=True)
            miss = positive[hit == 0]
            hit = np.concatenate([hit[hit > 0], regions[rr[miss[:, 0], miss[:, 1]], cc[miss[:, 0], miss[:, 1]]]])
        keep[hit] = True
    if box is not None:
        r0, c0, r1, c1 = (int(round(v)) for v in check_box(box, mask.shape))
        inside = np.bincount(regions[r0 : r1 + 1, c0 : c1 + 1].ravel(), minlength=n + 1)
        inside[0] = 0
        keep |= 2 * inside >= np.bincount(regions.ravel(), minlength=n + 1)
        if inside.max() > 0:
            keep[int(inside.argmax())] = True
    keep[0] = False
    if keep[1:].all():
        return mask
    return keep[regions]


def masks_from(image_logits, regions: str, points=None, labels=None, box=None) -> np.ndarray:
    """(K, H, W) scores whose positive part is each mask (a tensor or array) -> bool masks, with
    only the prompted regions of each when ``regions`` is "prompted"; prompts in (row, col) pixels."""
    positive = image_logits > 0
    masks = positive.numpy() if hasattr(positive, "numpy") else np.array(positive)
    if check_regions(regions) == "prompted":
        for k in range(len(masks)):
            masks[k] = keep_prompted(masks[k], points, labels, box)
    return masks


def upscaled_masks(to_image, logits: np.ndarray, geometry, regions: str, points=None, labels=None,
                   box=None) -> np.ndarray:
    """Low-res logits (K, h, w) -> full-size bool masks through ``to_image(logits, window=None)``.

    On a large image (:data:`~napari_segany.engine.preprocess.LARGE_IMAGE_PIXELS`) only the
    window holding every mask pixel is upscaled (a full-size float32 candidate of a 20000 px image
    is 1.6 GB); the masks are the same. Prompts the window cannot judge the same way (a positive
    point or the box outside it) take the full-size path."""
    shape = tuple(geometry.original_size)
    window = None
    if is_large(shape):
        window = object_window(logits, geometry, margin=REFINER_REACH)
        if window is None:
            return np.zeros((len(logits), *shape), dtype=bool)
        if not fits(window, shape, points, labels, box):
            window = None
    if window is None:
        return masks_from(to_image(logits), regions, points, labels, box)
    local_points, local_box = shifted(window, points, box)
    return pasted(window, masks_from(to_image(logits, window), regions, local_points, labels, local_box), shape)


def is_large(shape) -> bool:
    """Whether masks of an image of ``shape`` are upscaled in a window (see :func:`upscaled_masks`)."""
    return shape[0] * shape[1] >= LARGE_IMAGE_PIXELS


def fits(window: tuple[slice, slice], shape, points=None, labels=None, box=None) -> bool:
    """Whether the prompted regions can be judged inside ``window`` exactly as in the whole image:
    every positive point inside it, the box meeting it, and the window at most half the image."""
    rows, cols = window
    offset = np.array([rows.start, cols.start], float)
    size = np.array([rows.stop - rows.start, cols.stop - cols.start], float)
    if 2 * size.prod() > shape[0] * shape[1]:
        return False
    pts = np.empty((0, 2)) if points is None else np.rint(np.asarray(points, float).reshape(-1, 2))
    if labels is not None:
        pts = pts[np.asarray(labels).reshape(-1) == 1]
    pts = pts - offset
    if (pts < 0).any() or (pts >= size).any():
        return False
    if box is not None:
        b = np.asarray(box, float).reshape(4) - np.tile(offset, 2)
        return bool(b[2] >= 0 and b[3] >= 0 and b[0] < size[0] and b[1] < size[1])
    return True


def shifted(window: tuple[slice, slice], points=None, box=None):
    """``points`` and ``box`` in the coordinates of ``window``."""
    offset = np.array([window[0].start, window[1].start], float)
    local_points = None if points is None else np.asarray(points, float).reshape(-1, 2) - offset
    local_box = None if box is None else np.asarray(box, float).reshape(4) - np.tile(offset, 2)
    return local_points, local_box


def pasted(window: tuple[slice, slice], masks: np.ndarray, shape) -> np.ndarray:
    """(K, h, w) masks of ``window`` placed in full-size (K, H, W) bool masks."""
    out = np.zeros((len(masks), *shape), dtype=bool)
    out[(slice(None), *window)] = masks
    return out


def best_overlap(masks, reference: np.ndarray) -> int:
    """Index of the bool mask in ``masks`` with the highest IoU with ``reference`` (the first of
    equals; an empty union counts as IoU 0)."""
    ious = [np.count_nonzero(m & reference) / max(1, np.count_nonzero(m | reference)) for m in masks]
    return int(np.argmax(ious))


def _positive_points(points, labels, shape) -> np.ndarray:
    if points is None:
        return np.empty((0, 2), dtype=np.intp)
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    lab = np.ones(len(pts)) if labels is None else np.asarray(labels).reshape(-1)
    pts = pts[lab == 1]
    rc = np.rint(pts).astype(np.intp)
    rc[:, 0] = np.clip(rc[:, 0], 0, shape[0] - 1)
    rc[:, 1] = np.clip(rc[:, 1], 0, shape[1] - 1)
    return rc


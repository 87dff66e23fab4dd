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

from .prompts import check_box

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


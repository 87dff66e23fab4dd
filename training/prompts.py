"""Prompt simulation, as in SAM's training, and the evaluation's click rules.

All coordinates are (row, col) pixels of the mask's own frame; boxes are
(min_row, min_col, max_row, max_col) with inclusive maxima, like
:class:`napari_segany.Predictor` takes them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_segany.finetune.prompts import centre_correction as shared_centre_correction


def random_point(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A pixel of ``mask`` drawn uniformly (SAM's first-click rule).

    Raises
    ------
    ValueError
        If the mask is empty.
    """
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        raise ValueError("mask is empty: there is no pixel to click")
    i = int(rng.integers(len(rows)))
    return int(rows[i]), int(cols[i])


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(min_row, min_col, max_row, max_col) of ``mask``, maxima inclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        raise ValueError("mask is empty: it has no bounding box")
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def jittered_box(mask: np.ndarray, rng: np.random.Generator, frac: float = 0.1,
                 max_px: float = 20.0) -> tuple[float, float, float, float]:
    """The tight box with each side moved by noise (SAM: std 10 % of the side, at most 20 px).

    The result stays inside the image and keeps a positive size; each side
    moves at most ``max_px`` from the tight box.
    """
    r0, c0, r1, c1 = tight_box(mask)
    h, w = mask.shape
    sh, sw = r1 - r0 + 1, c1 - c0 + 1
    std = np.array([sh, sw, sh, sw], np.float64) * frac
    noise = np.clip(rng.normal(0.0, 1.0, 4) * std, -max_px, max_px)
    b = np.array([r0, c0, r1, c1], np.float64) + noise
    b[[0, 2]] = np.clip(b[[0, 2]], 0, h - 1)
    b[[1, 3]] = np.clip(b[[1, 3]], 0, w - 1)
    if b[2] <= b[0]:
        b[0], b[2] = r0, r1 + 0.5 if r1 == r0 else r1
    if b[3] <= b[1]:
        b[1], b[3] = c0, c1 + 0.5 if c1 == c0 else c1
    return tuple(float(v) for v in b)


def farthest_interior_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of ``mask`` farthest from its boundary (the image edge counts as boundary).

    Ties go to the first pixel in row-major order, so the rule is deterministic.
    """
    if not mask.any():
        raise ValueError("mask is empty: there is no interior point")
    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), mask.shape)
    return int(r), int(c)


def error_regions(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false negatives, false positives) of a binary prediction."""
    pred, target = pred.astype(bool), target.astype(bool)
    return target & ~pred, pred & ~target


def centre_correction(pred: np.ndarray, target: np.ndarray) -> tuple[int, int, int] | None:
    """The evaluation's correction click: the centre of the largest error region.

    The error regions are the connected components (8-connectivity) of the
    false negatives and, separately, of the false positives; the largest one
    gets a click at its point farthest from its boundary, label 1 (positive)
    for a missed region, 0 (negative) for a spurious one.

    Returns
    -------
    (row, col, label) or None when the prediction is exact.
    """
    return shared_centre_correction(pred.astype(bool), target.astype(bool))


def sampled_correction(pred: np.ndarray, target: np.ndarray, rng: np.random.Generator,
                       p_centre: float = 0.5) -> tuple[int, int, int] | None:
    """A training correction click from the error region of ``pred``.

    With probability ``p_centre`` the evaluation's rule
    (:func:`centre_correction`), else SAM's: a pixel drawn uniformly from the
    whole error region, positive on a false negative, negative on a false
    positive. Returns None when there is no error.
    """
    if rng.random() < p_centre:
        return centre_correction(pred, target)
    fn, fp = error_regions(pred, target)
    n_fn, n_fp = int(fn.sum()), int(fp.sum())
    if n_fn + n_fp == 0:
        return None
    region, label = (fn, 1) if rng.random() < n_fn / (n_fn + n_fp) else (fp, 0)
    r, c = random_point(region, rng)
    return r, c, label

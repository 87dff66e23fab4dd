"""Prompts simulated from a label mask, as a person would give them (adapted from the recipe that
trained the included model, ``training/prompts.py``, which is not installed).

Coordinates are (row, col) pixels of the mask's frame; boxes (min_row, min_col, max_row, max_col)
with inclusive maxima, as :class:`napari_segany.Predictor` takes them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def random_point(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A pixel of ``mask`` drawn uniformly (SAM's first click in training)."""
    rows, cols = np.nonzero(mask)
    i = int(rng.integers(len(rows)))
    return int(rows[i]), int(cols[i])


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of ``mask`` farthest from its boundary (the image edge counts as boundary); ties
    go to the first in row-major order: the held-out evaluation's click."""
    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), mask.shape)
    return int(r), int(c)


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(min_row, min_col, max_row, max_col) of ``mask``, maxima inclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def jittered_box(mask: np.ndarray, rng: np.random.Generator, frac: float = 0.1,
                 max_px: float = 20.0) -> tuple[float, float, float, float]:
    """The tight box with each side moved by noise (SAM: std 10 % of the side, at most 20 px),
    kept inside the image with a positive size."""
    r0, c0, r1, c1 = tight_box(mask)
    h, w = mask.shape
    sh, sw = r1 - r0 + 1, c1 - c0 + 1
    noise = np.clip(rng.normal(0.0, 1.0, 4) * np.array([sh, sw, sh, sw]) * frac, -max_px, max_px)
    b = np.array([r0, c0, r1, c1], np.float64) + noise
    b[[0, 2]] = np.clip(b[[0, 2]], 0, h - 1)
    b[[1, 3]] = np.clip(b[[1, 3]], 0, w - 1)
    if b[2] <= b[0]:
        b[0], b[2] = r0, r1 + 0.5
    if b[3] <= b[1]:
        b[1], b[3] = c0, c1 + 0.5
    return tuple(float(v) for v in b)


def centre_correction(pred: np.ndarray, target: np.ndarray) -> tuple[int, int, int] | None:
    """The correction click a careful person gives: at the centre (farthest from its boundary) of
    the largest connected error region, label 1 on a missed region, 0 on a spurious one; None when
    the prediction is exact."""
    best, best_area = None, 0
    for region, label in ((target & ~pred, 1), (pred & ~target, 0)):
        if not region.any():
            continue
        comp, _ = ndi.label(region, structure=np.ones((3, 3)))
        areas = np.bincount(comp.ravel())[1:]
        i = int(np.argmax(areas))
        if areas[i] > best_area:
            best_area, best = int(areas[i]), (comp == i + 1, label)
    if best is None:
        return None
    r, c = interior_point(best[0])
    return r, c, best[1]


def sampled_correction(pred: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int] | None:
    """A training correction click: half the time :func:`centre_correction`, else SAM's rule (a
    pixel drawn uniformly from the whole error region, positive on a miss, negative on a spurious
    pixel). None when there is no error."""
    if rng.random() < 0.5:
        return centre_correction(pred, target)
    fn, fp = target & ~pred, pred & ~target
    n_fn, n_fp = int(fn.sum()), int(fp.sum())
    if n_fn + n_fp == 0:
        return None
    region, label = (fn, 1) if rng.random() < n_fn / (n_fn + n_fp) else (fp, 0)
    r, c = random_point(region, rng)
    return r, c, label

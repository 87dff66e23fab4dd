"""Prompt geometry from ground-truth masks, and large test images made of real ones, shared by tests."""

from __future__ import annotations

import numpy as np


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of ``mask`` farthest from its boundary, as (row, col)."""
    from scipy import ndimage as ndi

    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return tuple(int(v) for v in np.unravel_index(np.argmax(dist), mask.shape))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (0 when both are empty)."""
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


def tiled(image: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``image`` tiled n x n (a large image of real objects) and labels of the middle tile's
    objects only (the other tiles are context)."""
    h, w = image.shape[:2]
    big_labels = np.zeros((n * h, n * w), labels.dtype)
    r, c = n // 2 * h, n // 2 * w
    big_labels[r : r + h, c : c + w] = labels
    return np.tile(image, (n, n)), big_labels

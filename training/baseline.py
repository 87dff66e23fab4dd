"""A classical promptable baseline: local Otsu thresholds, connected components, seeded watershed.

The same prompts as the model gets, no learning, no ground truth:

- one click: Otsu threshold of the (Gaussian-smoothed, sigma 1) image in a
  square window centred on the click (half-size 48 px); the connected
  foreground component under the click (or the nearest one), split from
  touching neighbours by a watershed of its distance transform (maxima at
  least 7 px apart; the basin under the click), holes filled. A click on a
  pixel below the threshold lowers it to half-way between that pixel and the
  window's 10th percentile. If the component touches the window's edge the
  window doubles (up to 3 times).
- box: Otsu threshold in the box grown by 25 % of its size (so both
  background and object are sampled); the largest foreground component inside
  the box, holes filled.
- clicks with labels (corrections): a seeded watershed on the Sobel gradient
  magnitude in a window around all clicks (grown by 48 px): positive clicks
  and the previous mask eroded by 2 px are object seeds (clicks as 5 x 5
  squares), negative clicks (5 x 5 squares, overriding) and the local Otsu
  background (eroded by 1 px) plus the window edge are background seeds; the
  object is the union of basins of the object seeds, holes filled.
- a volume: the click's result on its slice, then slice by slice in both
  directions, the Otsu threshold in the previous slice's box grown by 25 %,
  with the threshold never below half-way between the seed mask's mean and
  the seed slice's background median, keeping the foreground components that
  overlap the previous mask; a walk
  stops when the mask vanishes or its area changes by more than 2.5x (as
  :func:`napari_segany.propagate`'s default).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import sobel, threshold_otsu
from skimage.segmentation import watershed

HALF_WINDOW = 48
GROW = 0.25
AREA_CHANGE = 2.5
MIN_DISTANCE = 7


def prepare(image: np.ndarray) -> np.ndarray:
    """float32 image smoothed with a Gaussian of sigma 1 (grayscale input)."""
    return ndi.gaussian_filter(np.asarray(image, np.float32), 1.0)


def _window(shape, r0, c0, r1, c1) -> tuple[slice, slice]:
    return (slice(max(0, int(r0)), min(shape[0], int(np.ceil(r1)) + 1)),
            slice(max(0, int(c0)), min(shape[1], int(np.ceil(c1)) + 1)))


def _otsu(values: np.ndarray) -> float:
    return float(threshold_otsu(values)) if values.max() > values.min() else float(values.max())


def _fill(mask: np.ndarray) -> np.ndarray:
    return ndi.binary_fill_holes(mask)


def _split(obj: np.ndarray, point) -> np.ndarray:
    """Split touching objects: watershed of the distance transform from its maxima
    (at least ``MIN_DISTANCE`` px apart); the basin under ``point``."""
    dist = ndi.distance_transform_edt(obj)
    peaks = peak_local_max(dist, min_distance=MIN_DISTANCE, labels=obj.astype(int), exclude_border=False)
    if len(peaks) < 2:
        return obj
    markers = np.zeros(obj.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    basins = watershed(-dist, markers, mask=obj)
    return basins == basins[point]


def segment_click(image: np.ndarray, point) -> np.ndarray:
    """Mask of the object under a positive click at (row, col)."""
    r, c = int(round(point[0])), int(round(point[1]))
    half = HALF_WINDOW
    for _ in range(4):
        win = _window(image.shape, r - half, c - half, r + half, c + half)
        patch = image[win]
        lr, lc = r - win[0].start, c - win[1].start
        t = _otsu(patch)
        if patch[lr, lc] <= t:  # a dim object among bright ones: half-way between it and the background
            t = 0.5 * (float(patch[lr, lc]) + float(np.percentile(patch, 10)))
        comp, n = ndi.label(patch > t)
        if n == 0:
            return np.zeros(image.shape, bool)
        lab = comp[lr, lc]
        if lab == 0:  # click on a dim pixel: the nearest component
            _, (ir, ic) = ndi.distance_transform_edt(comp == 0, return_indices=True)
            lab = comp[ir[lr, lc], ic[lr, lc]]
        obj = _split(comp == lab, (lr, lc))
        touches = obj[0].any() or obj[-1].any() or obj[:, 0].any() or obj[:, -1].any()
        if not touches or patch.shape == image.shape:
            break
        half *= 2
    out = np.zeros(image.shape, bool)
    out[win] = _fill(obj)
    return out


def segment_box(image: np.ndarray, box) -> np.ndarray:
    """Mask of the object in a (min_row, min_col, max_row, max_col) box (maxima inclusive)."""
    r0, c0, r1, c1 = (float(v) for v in box)
    gr, gc = GROW * (r1 - r0 + 1), GROW * (c1 - c0 + 1)
    big = _window(image.shape, r0 - gr, c0 - gc, r1 + gr, c1 + gc)
    t = _otsu(image[big])
    inner = _window(image.shape, np.floor(r0), np.floor(c0), np.floor(r1), np.floor(c1))
    fg = image[inner] > t
    comp, n = ndi.label(fg)
    out = np.zeros(image.shape, bool)
    if n:
        areas = np.bincount(comp.ravel())[1:]
        out[inner] = _fill(comp == int(np.argmax(areas)) + 1)
    return out


def segment_clicks(image: np.ndarray, points, labels, previous: np.ndarray | None = None) -> np.ndarray:
    """Seeded watershed from positive (1) and negative (0) clicks at (row, col),
    plus the ``previous`` mask eroded by 2 px as an object seed when given."""
    pts = np.round(np.asarray(points, np.float64)).astype(int)
    labs = np.asarray(labels)
    pos = pts[labs == 1]
    if len(pos) == 0:
        return np.zeros(image.shape, bool)
    lo, hi = pts.min(0) - HALF_WINDOW, pts.max(0) + HALF_WINDOW
    win = _window(image.shape, lo[0], lo[1], hi[0], hi[1])
    patch = image[win]
    markers = np.zeros(patch.shape, np.int32)
    background = ndi.binary_erosion(patch <= _otsu(patch), iterations=1)
    markers[background] = 2
    markers[0, :] = markers[-1, :] = markers[:, 0] = markers[:, -1] = 2
    if previous is not None:
        core = ndi.binary_erosion(previous[win], iterations=2)
        markers[core] = 1
    disk = np.zeros(patch.shape, bool)
    for (r, c), lab in zip(pts - [win[0].start, win[1].start], labs):
        disk[:] = False
        disk[max(0, r - 2) : r + 3, max(0, c - 2) : c + 3] = True
        markers[disk] = 1 if lab == 1 else 2
    regions = watershed(sobel(patch), markers)
    out = np.zeros(image.shape, bool)
    out[win] = _fill(regions == 1)
    return out


def _follow(plane: np.ndarray, previous: np.ndarray, floor: float) -> np.ndarray:
    """The next slice's mask from the previous one (Otsu in the grown box, overlapping components)."""
    rows = np.flatnonzero(previous.any(axis=1))
    cols = np.flatnonzero(previous.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1], cols[0], cols[-1]
    gr, gc = GROW * (r1 - r0 + 1), GROW * (c1 - c0 + 1)
    win = _window(plane.shape, r0 - gr, c0 - gc, r1 + gr, c1 + gc)
    patch = plane[win]
    comp, n = ndi.label(patch > max(_otsu(patch), floor))
    keep = np.unique(comp[previous[win] & (comp > 0)])
    out = np.zeros(plane.shape, bool)
    out[win] = _fill(np.isin(comp, keep[keep > 0]))
    return out


def segment_volume(volume: np.ndarray, z: int, point) -> np.ndarray:
    """3D mask from one click on slice ``z``, followed slice by slice (see the module docstring)."""
    smooth = [None] * volume.shape[0]

    def plane(i):
        if smooth[i] is None:
            smooth[i] = prepare(volume[i])
        return smooth[i]

    out = np.zeros(volume.shape, bool)
    seed = segment_click(plane(z), point)
    # the seed's own contrast is the floor: slices past the object's ends stop instead of
    # following the background noise
    floor = 0.5 * (float(plane(z)[seed].mean()) + float(np.median(plane(z)[~seed]))) if seed.any() else 0.0
    out[z] = seed
    for step in (-1, 1):
        prev, i = seed, z + step
        while prev.any() and 0 <= i < volume.shape[0]:
            nxt = _follow(plane(i), prev, floor)
            a, b = np.count_nonzero(nxt), np.count_nonzero(prev)
            if a == 0 or max(a / b, b / a) > AREA_CHANGE:
                break
            out[i] = nxt
            prev, i = nxt, i + step
    return out

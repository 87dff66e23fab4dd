"""What the automatic-segmentation benchmarks measure with: one-to-one matching of objects (precision,
recall, F1, AP at an IoU threshold, mean IoU of the matched), where 3D objects go wrong, and the
classical baseline given only the image (Otsu threshold + distance-transform seeded watershed, as in
scikit-image's examples; see ``bench_automatic.py``'s docstring for its exact recipe)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

AP_DEFINITION = "AP@0.5 = TP / (TP + FP + FN), one-to-one matching at IoU >= 0.5 (StarDist / Cellpose)"


# -- metrics -------------------------------------------------------------------------------------

def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every truth object with every predicted object (any number of dimensions).

    Returns (iou: n_truth x n_pred float, truth ids, pred ids); 0 is background in both."""
    truth, pred = np.asarray(truth).ravel(), np.asarray(pred).ravel()
    if truth.shape != pred.shape:
        raise ValueError(f"truth and pred differ in size ({truth.size} vs {pred.size})")
    t_ids, t_inv = np.unique(truth, return_inverse=True)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    nt, npred = len(t_ids), len(p_ids)
    inter = np.bincount(t_inv * npred + p_inv, minlength=nt * npred).reshape(nt, npred).astype(float)
    areas_t, areas_p = inter.sum(1), inter.sum(0)
    keep_t, keep_p = t_ids != 0, p_ids != 0
    inter = inter[keep_t][:, keep_p]
    union = areas_t[keep_t][:, None] + areas_p[keep_p][None, :] - inter
    return inter / np.maximum(union, 1.0), t_ids[keep_t], p_ids[keep_p]


def match(truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> dict:
    """Precision, recall, F1, AP (TP / (TP + FP + FN)) and mean IoU of matched pairs at ``threshold``.

    One-to-one matching: the assignment with the most pairs at IoU >= threshold, then the highest
    IoU among those (StarDist's matching); a pair matches when its IoU >= threshold."""
    iou, t_ids, p_ids = iou_matrix(truth, pred)
    nt, npred = iou.shape
    tp, ious = 0, np.zeros(0)
    if nt and npred:
        gain = (iou >= threshold) + iou / (2 * max(nt, npred))
        rows, cols = linear_sum_assignment(gain, maximize=True)
        ok = iou[rows, cols] >= threshold
        tp, ious = int(ok.sum()), iou[rows[ok], cols[ok]]
    fp, fn = npred - tp, nt - tp
    return {"n_true": int(nt), "n_pred": int(npred), "tp": tp, "fp": int(fp), "fn": int(fn),
            "precision": tp / npred if npred else 0.0, "recall": tp / nt if nt else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0,
            "ap": tp / (tp + fp + fn) if (tp + fp + fn) else 1.0,
            "mean_iou_matched": float(ious.mean()) if len(ious) else 0.0}


def z_profile(truth: np.ndarray, labels: np.ndarray) -> dict:
    """Where 3D objects go wrong: the mean F1@0.5 of the labels slice by slice (slices with truth),
    and the median number of slices an object spans, predicted and true."""
    f1 = [match(truth[z], labels[z])["f1"] for z in range(truth.shape[0]) if truth[z].any()]

    def extent(lab):
        boxes = [b for b in ndi.find_objects(lab) if b is not None]
        return float(np.median([b[0].stop - b[0].start for b in boxes])) if boxes else 0.0

    return {"slice_f1_mean": round(float(np.mean(f1)), 4) if f1 else 0.0,
            "z_extent_median_pred": extent(labels), "z_extent_median_true": extent(truth)}


def best_overlap_iou(masks: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """For each bool mask, its IoU with the object of ``labels`` it overlaps best (0 if none)."""
    areas = np.bincount(labels.ravel())
    out = np.zeros(len(masks))
    for k, m in enumerate(masks):
        under = np.bincount(labels[m], minlength=len(areas))
        under[0] = 0
        if under.any():
            out[k] = (under / np.maximum(m.sum() + areas - under, 1))[1:].max()
    return out


def paint_like_ours(masks: list[np.ndarray], order: list[int], min_area: int, share: float) -> np.ndarray:
    """Masks painted best first (``order``) as our grid mode paints: each keeps its free pixels and
    is dropped when fewer than ``min_area`` (at least 1) or under ``share`` of it are left."""
    labels = np.zeros(masks[0].shape if masks else (0, 0), np.uint32)
    n = 0
    for k in order:
        mine = masks[k] & (labels == 0)
        area = int(mine.sum())
        if area >= max(1, min_area) and area >= share * masks[k].sum():
            n += 1
            labels[mine] = n
    return labels


# -- the classical baseline -------------------------------------------------------------------------------------

def classical(image: np.ndarray, sampling=None) -> tuple[np.ndarray, dict]:
    """Otsu + distance-transform seeded watershed on a 2D image or a 3D volume (see module doc)."""
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    ndim = image.ndim
    smooth = ndi.gaussian_filter(image.astype(np.float32), 1.0)
    mask = smooth > threshold_otsu(smooth)
    mask = ndi.binary_fill_holes(mask)
    min_size = 20 if ndim == 2 else int(round(4 / 3 * np.pi * (20 / np.pi) ** 1.5))
    comps, n = ndi.label(mask)
    small = np.bincount(comps.ravel()) < min_size
    small[0] = False
    mask[small[comps]] = False
    comps, n = ndi.label(mask)
    sizes = np.bincount(comps.ravel())[1:]
    unit = None if sampling is None else np.asarray(sampling, float) / min(sampling)
    voxel = 1.0 if unit is None else float(np.prod(unit))
    med = float(np.median(sizes)) * voxel if n else 1.0
    radius = np.sqrt(med / np.pi) if ndim == 2 else (3 * med / (4 * np.pi)) ** (1 / 3)
    min_distance = max(2, int(round(radius)))
    distance = ndi.distance_transform_edt(mask, sampling=unit)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=comps, exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    seeded = np.unique(comps[markers > 0])
    for c in np.setdiff1d(np.arange(1, n + 1), seeded):  # a component without a peak: one seed
        where = np.argmax(np.where(comps == c, distance, -1))
        markers.flat[where] = markers.max() + 1
    labels = watershed(-distance, markers, mask=mask)
    return labels, {"sigma": 1.0, "min_size": min_size, "components": int(n), "median_radius": round(radius, 2),
                    "min_distance": min_distance, "seeds": int(markers.max())}

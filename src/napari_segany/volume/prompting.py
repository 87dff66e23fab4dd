"""Prompts for the next slice from the object's mask on the previous one, and
the measurements that decide whether a propagated mask is accepted."""

from __future__ import annotations

import numpy as np

from ..engine.regions import best_overlap

PROMPT_MODES = ("box", "points", "mask", "box+mask", "box+points", "points+mask", "box+points+mask")
DEFAULT_PROMPT = "box+mask"
BOX_MARGIN = 0.05  # box grows by this fraction of its size on each side, at least 1 pixel
AREA_SOFTENING = 0.1  # area ratios are taken on area + 10 % of the object's largest area


def check_mode(mode: str) -> str:
    if mode not in PROMPT_MODES:
        raise ValueError(f"prompt={mode!r} is not known; choose one of {', '.join(PROMPT_MODES)}")
    return mode


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(min_row, min_col, max_row, max_col) of a non-empty mask, max inclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def box_from_mask(mask: np.ndarray, margin: float = BOX_MARGIN) -> np.ndarray:
    """Box prompt around ``mask`` (pixel edges), grown by ``margin``, inside the image."""
    r0, c0, r1, c1 = bbox(mask)
    h, w = mask.shape
    dr = max(1.0, margin * (r1 - r0 + 1))
    dc = max(1.0, margin * (c1 - c0 + 1))
    return np.array([max(0.0, r0 - dr), max(0.0, c0 - dc), min(float(h), r1 + 1 + dr), min(float(w), c1 + 1 + dc)])


def interior_point(mask: np.ndarray) -> np.ndarray:
    """The pixel of ``mask`` farthest from its boundary, (row, col)."""
    from scipy import ndimage as ndi

    r0, c0, r1, c1 = bbox(mask)
    crop = np.pad(mask[r0:r1 + 1, c0:c1 + 1], 1)
    dist = ndi.distance_transform_edt(crop)
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([r0 + r - 1, c0 + c - 1], dtype=np.float64)


def build_prompts(predictor, masks: list[np.ndarray], mode: str, embedding) -> dict:
    """Keyword arguments for ``predictor.predict_batch`` on ``embedding`` (of the target slice, or
    a crop of it) from each object's mask on the previous slice (or that crop of it)."""
    kwargs: dict = {"multimask": mode == "points"}
    if "box" in mode:
        kwargs["boxes"] = np.stack([box_from_mask(m) for m in masks])
    if "points" in mode:
        kwargs["points"] = np.stack([interior_point(m)[None] for m in masks])
        kwargs["labels"] = np.ones((len(masks), 1), np.int64)
    if "mask" in mode:
        kwargs["mask_input"] = np.stack([predictor.mask_prompt(m, embedding=embedding) for m in masks])
    return kwargs


def choose_candidate(prediction, previous: np.ndarray) -> tuple[np.ndarray, float]:
    """The candidate mask (and its score) that overlaps ``previous`` best;
    with one candidate, that one."""
    if len(prediction) == 1:
        return prediction.mask(0), float(prediction.scores[0])
    masks = prediction.masks
    best = best_overlap(masks, previous)
    return masks[best], float(prediction.scores[best])


def step_ratio(spacing: tuple[float, ...], axis: int) -> float:
    """Distance between neighbouring slices in units of the in-plane pixel size."""
    inplane = [s for i, s in enumerate(spacing) if i != axis]
    return float(spacing[axis] / np.sqrt(inplane[0] * inplane[1]))


def allowed_area_factor(area_change: float, ratio: float) -> float:
    """``area_change`` holds for slices one pixel size apart; thicker slices
    allow proportionally more change (``area_change ** ratio``)."""
    return float(area_change ** max(1.0, ratio))


def area_ratio(new: int, previous: int, peak: int) -> float:
    """Symmetric change factor (>= 1) between two areas, softened by 10 % of
    the object's largest area so that the tiny tips of an object do not count
    as jumps."""
    s = AREA_SOFTENING * peak
    r = (new + s) / max(previous + s, 1e-9)
    return float(max(r, 1.0 / r)) if r > 0 else float("inf")

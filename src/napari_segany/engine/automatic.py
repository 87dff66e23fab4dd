"""Segment everything with a grid of point prompts, for any model.

A grid of single-point prompts covers the image; the decoder answers them in batches with three
candidates each. Candidates are judged on the decoder's low-resolution logits, before any
full-resolution mask is made: the predicted IoU, the stability of the mask when its logit cut-off
moves by ``stability_offset`` either way, and non-maximum suppression on their boxes. Only the
survivors are upscaled (in a window around each, :func:`~napari_segany.engine.regions.upscaled_masks`)
and painted into one label image, best first, without overlaps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .outputs import ImageEmbedding


@dataclass(frozen=True)
class GridSettings:
    """How the grid is laid and which candidates are kept.

    ``points_per_side``: grid points along the image's longest side (None: one point every
    ``spacing`` model-frame pixels, 32 for SAM's 1024 px frame); ``min_iou``: least predicted IoU
    (None: the model's propagation level plus 0.08, 0.88 for SAM); ``min_stability``: least ratio
    of the mask's area at cut-off +offset to its area at -offset; ``nms_iou``: boxes overlapping a
    better candidate's by more are dropped; ``min_area``: least object area in image pixels;
    ``batch``: prompts per decoder call.
    """

    points_per_side: int | None = None
    spacing: int = 32
    min_iou: float | None = None
    min_stability: float = 0.95
    stability_offset: float = 1.0
    nms_iou: float = 0.7
    min_area: int = 20
    batch: int = 16

    def __post_init__(self):
        n = self.points_per_side
        if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 256):
            raise ValueError(f"points_per_side must be a whole number from 1 to 256, got {self.points_per_side!r}")
        for name in ("min_stability", "nms_iou"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name} must lie between 0 and 1, got {getattr(self, name)!r}")
        if self.min_iou is not None and not 0.0 <= float(self.min_iou) <= 1.0:
            raise ValueError(f"min_iou must lie between 0 and 1, got {self.min_iou!r}")
        if int(self.min_area) < 0 or int(self.batch) < 1 or int(self.spacing) < 1:
            raise ValueError("min_area must be >= 0, and batch and spacing >= 1")


@dataclass(frozen=True)
class Objects:
    """The result: ``labels`` (H x W, uint32, 0 = background, ids 1..n best first) and one row per
    object in ``table`` (id, area, bbox as min_row, min_col, max_row, max_col inclusive, centroid,
    predicted IoU, stability)."""

    labels: np.ndarray
    table: list[dict]


def segment_everything(predictor, image=None, *, embedding: ImageEmbedding | None = None,
                       settings: GridSettings | None = None, **encode_kwargs) -> Objects:
    """Every object of ``image`` (or of ``embedding``'s image), from a grid of point prompts."""
    settings = settings or GridSettings()
    if embedding is None:
        if image is None:
            raise ValueError("pass the image to segment, or its embedding=")
        embedding = predictor.encode(image, views=1, **encode_kwargs)
    geometry = embedding.geometry
    shape = tuple(geometry.original_size)
    min_iou = settings.min_iou
    if min_iou is None:
        min_iou = min(0.88, float(getattr(predictor.model.info, "stop_iou", 0.8)) + 0.08)
    candidates = []  # (score, stability, box, prediction, k)
    for points in _batches(grid_points(shape, geometry.model_size, settings), settings.batch):
        answers = predictor.predict_batch(points=points[:, None, :], labels=np.ones((len(points), 1)),
                                          multimask=True, embedding=embedding)
        for answer in answers:
            for k, score in enumerate(answer.scores):
                if score < min_iou:
                    continue
                stability, box = _judge(answer.logits[k], geometry, settings.stability_offset)
                if box is not None and stability >= settings.min_stability:
                    candidates.append((float(score), stability, box, answer, k))
    kept = _nms(candidates, settings.nms_iou)
    labels = np.zeros(shape, dtype=np.uint32)
    table = []
    for score, stability, _, answer, k in kept:
        mask = answer.mask(k) & (labels == 0)
        area = int(np.count_nonzero(mask))
        if area < max(1, settings.min_area):
            continue
        new_id = len(table) + 1
        labels[mask] = new_id
        rr, cc = np.nonzero(mask)
        table.append({"id": new_id, "area": area,
                      "bbox": (int(rr.min()), int(cc.min()), int(rr.max()), int(cc.max())),
                      "centroid": (float(rr.mean()), float(cc.mean())), "predicted_iou": round(score, 4),
                      "stability": round(stability, 4)})
    return Objects(labels, table)


def grid_points(shape: tuple[int, int], model_size: int, settings: GridSettings) -> np.ndarray:
    """(N, 2) (row, col) prompt positions: cell centres of a square grid over the image."""
    longest = max(shape)
    per_side = settings.points_per_side or max(1, round(model_size / settings.spacing))
    step = longest / per_side
    rows = (np.arange(max(1, round(shape[0] / step))) + 0.5) * (shape[0] / max(1, round(shape[0] / step)))
    cols = (np.arange(max(1, round(shape[1] / step))) + 0.5) * (shape[1] / max(1, round(shape[1] / step)))
    grid = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    return np.minimum(grid, np.array(shape, float) - 1)


def _batches(points: np.ndarray, size: int):
    for start in range(0, len(points), size):
        yield points[start:start + size]


def _judge(logits: np.ndarray, geometry, offset: float):
    """(stability, box in image pixels) of one low-res candidate, on the image's part of the frame;
    box None when the mask is empty there."""
    n = logits.shape[-1]
    if geometry.profile == "medsam":
        rows, cols, to_image = n, n, (geometry.original_size[0] / n, geometry.original_size[1] / n)
    else:
        cell = geometry.model_size / n
        rows, cols = int(np.ceil(geometry.input_size[0] / cell)), int(np.ceil(geometry.input_size[1] / cell))
        scale = geometry.original_size[0] / geometry.input_size[0]
        to_image = (cell * scale, cell * geometry.original_size[1] / geometry.input_size[1])
    lg = logits[:rows, :cols]
    loose = int(np.count_nonzero(lg > -offset))
    if loose == 0:
        return 0.0, None
    stability = np.count_nonzero(lg > offset) / loose
    inside = lg > 0
    rr, cc = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    if rr.size == 0:
        return float(stability), None
    box = np.array([rr[0] * to_image[0], cc[0] * to_image[1], (rr[-1] + 1) * to_image[0], (cc[-1] + 1) * to_image[1]])
    return float(stability), box


def _nms(candidates: list, threshold: float) -> list:
    """Candidates sorted best first (predicted IoU, then stability), dropping those whose box
    overlaps a kept one's by more than ``threshold`` (IoU)."""
    ordered = sorted(candidates, key=lambda c: (-c[0], -c[1], tuple(c[2])))
    kept, boxes = [], []
    for cand in ordered:
        box = cand[2]
        if boxes:
            b = np.array(boxes)
            top, left = np.maximum(b[:, 0], box[0]), np.maximum(b[:, 1], box[1])
            bottom, right = np.minimum(b[:, 2], box[2]), np.minimum(b[:, 3], box[3])
            inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
            area = (box[2] - box[0]) * (box[3] - box[1])
            union = area + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
            if (inter / np.maximum(union, 1e-9) > threshold).any():
                continue
        kept.append(cand)
        boxes.append(box)
    return kept

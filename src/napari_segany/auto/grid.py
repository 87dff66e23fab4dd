"""Candidate objects from a grid of point prompts on one embedding, judged before any
full-resolution mask is made.

A grid of single-point prompts covers the image; the decoder answers them in batches with three
candidates each. Each candidate is judged on the decoder's low-resolution logits: its predicted
IoU, the stability of its mask when the logit cut-off moves by ``stability_offset`` either way, and
its box. Points that fall inside a candidate already accepted, or on pixels the caller marks as
taken, are not asked: on a crowded image most of the decoder's work went into asking again for an
object it had already found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..engine.low_res import LowResFrame
from ..engine.outputs import ImageEmbedding
from ..engine.predictor import Cancelled


#: Where automatic segmentation's prompts come from (:attr:`GridSettings.mode`).
MODES = ("auto", "grid", "head")


@dataclass(frozen=True)
class GridSettings:
    """How the grid is laid and which candidates are kept.

    ``points_per_side``: grid points along the image's (or tile's) longest side (None: from
    ``object_size`` when given, else one point every ``spacing`` model-frame pixels: 32 per side
    for SAM's 1024 px frame, 16 for the included model's 512 px); ``object_size``: diameter in
    image pixels of the smallest objects to find: the points are then at most 3/4 of it apart,
    so that each such object holds one (at most 256 per side); ``min_iou``: least predicted IoU (None: the model's propagation level plus
    0.08, 0.88 for SAM); ``min_stability``: least ratio of the mask's area at cut-off +offset to its
    area at -offset (None: the model's :attr:`~napari_segany.model.ModelInfo.min_stability`, 0.95
    for SAM); ``nms_iou``: boxes overlapping a better candidate's by more are dropped;
    ``min_area``: least object area in image pixels; ``batch``: prompts per decoder call;
    ``skip_covered``: do not ask points inside a candidate already accepted (faster on crowded
    images; False asks every point, as SAM's automatic mask generator does); ``tile``: "auto" cuts
    images larger than the model's frame into frame-sized tiles, "never" segments them whole
    (downscaled into the frame); ``tile_overlap``: pixels shared by neighbouring tiles (None: a
    quarter of the frame); an object smaller than the overlap is seen whole by some tile.

    ``mode``: where the prompts come from: "grid" (the grid above, any model), "head" (one box and
    click per object that the model's instance head finds, :mod:`.head`; the grid's density
    settings are then unused), or "auto": the grid when ``points_per_side`` or ``object_size`` is
    given, else the head when the model has one, else the grid.
    """

    points_per_side: int | None = None
    object_size: float | None = None
    spacing: int = 32
    min_iou: float | None = None
    min_stability: float | None = None
    stability_offset: float = 1.0
    nms_iou: float = 0.7
    min_area: int = 20
    batch: int = 16
    skip_covered: bool = False
    tile: str = "auto"
    tile_overlap: int | None = None
    mode: str = "auto"

    def __post_init__(self):
        n = self.points_per_side
        if n is not None and not (_whole(n) and 1 <= n <= 256):
            raise ValueError(f"points_per_side must be a whole number from 1 to 256, got {n!r}")
        if self.object_size is not None and (not _number(self.object_size) or not self.object_size >= 2):
            raise ValueError(f"object_size must be a diameter of at least 2 pixels, got {self.object_size!r}")
        for name in ("min_iou", "min_stability", "nms_iou"):
            value = getattr(self, name)
            if (value is not None or name == "nms_iou") and (not _number(value) or not 0.0 <= float(value) <= 1.0):
                raise ValueError(f"{name} must lie between 0 and 1, got {value!r}")
        if not _number(self.stability_offset) or not 0.0 < float(self.stability_offset) <= 10.0:
            raise ValueError(f"stability_offset must lie in (0, 10] logits, got {self.stability_offset!r}")
        for name, least in (("min_area", 0), ("batch", 1), ("spacing", 1)):
            if not _whole(getattr(self, name)) or getattr(self, name) < least:
                raise ValueError(f"{name} must be a whole number >= {least}, got {getattr(self, name)!r}")
        if self.tile not in ("auto", "never"):
            raise ValueError(f"tile must be 'auto' or 'never', got {self.tile!r}")
        if self.tile_overlap is not None and not (_whole(self.tile_overlap) and self.tile_overlap >= 0):
            raise ValueError(f"tile_overlap must be a whole number of pixels >= 0, got {self.tile_overlap!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {self.mode!r}")

    def uses_head(self, model) -> bool:
        """Whether ``model``'s instance head gives the prompts (see ``mode``)."""
        has = getattr(model, "instance_head", None) is not None
        if self.mode == "head" and not has:
            name = getattr(getattr(model, "info", None), "name", "this model")
            raise ValueError(f"{name} has no instance head, so it cannot find objects in head mode; use the grid "
                             "instead (mode='grid'; on the command line --mode grid, in the widget Prompts: Grid) "
                             "or a model that has a head, such as the included model")
        if self.mode == "auto" and (self.points_per_side is not None or self.object_size is not None):
            return False  # a grid density was asked for: the grid
        return has and self.mode != "grid"

    def least_stability(self, model) -> float:
        if self.min_stability is not None:
            return float(self.min_stability)
        return float(getattr(getattr(model, "info", None), "min_stability", 0.95))

    def least_iou(self, model) -> float:
        if self.min_iou is not None:
            return float(self.min_iou)
        return min(0.88, float(getattr(getattr(model, "info", None), "stop_iou", 0.8)) + 0.08)


def _whole(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)


@dataclass
class Candidate:
    """One judged candidate: ``box`` (min_row, min_col, max_row, max_col) in image pixels of the
    embedding's image, from the low-res logits; ``answer`` and ``k`` make its full mask."""

    score: float
    stability: float
    box: np.ndarray
    answer: object
    k: int

    def key(self):
        return (-self.score, -self.stability, tuple(np.round(self.box, 3)))


def grid_points(shape: tuple[int, int], model_size: int, settings: GridSettings) -> np.ndarray:
    """(N, 2) (row, col) prompt positions: cell centres of a square grid over the image."""
    longest = max(shape)
    per_side = settings.points_per_side
    if per_side is None and settings.object_size is not None:
        per_side = min(256, int(np.ceil(longest / (0.75 * float(settings.object_size)))))
    per_side = per_side or max(1, round(model_size / settings.spacing))
    step = longest / per_side
    axes = []
    for size in shape:
        n = max(1, round(size / step))
        axes.append((np.arange(n) + 0.5) * (size / n))
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    return np.minimum(grid, np.array(shape, float) - 1)


def grid_candidates(predictor, embedding: ImageEmbedding, settings: GridSettings, *,
                    taken: np.ndarray | None = None, progress: Callable[[int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> list[Candidate]:
    """Every candidate of the grid on ``embedding`` that passes the filters (before NMS).

    ``taken``: (H, W) bool of the embedding's image; points on it are not asked. ``progress(n)`` is
    called with the number of grid points dealt with since the last call; ``should_stop`` returning
    True raises :class:`~napari_segany.Cancelled`.
    """
    geometry = embedding.geometry
    frame = LowResFrame(geometry, predictor.model.low_res_size)
    min_iou = settings.least_iou(predictor.model)
    min_stability = settings.least_stability(predictor.model)
    points = grid_points(tuple(geometry.original_size), geometry.model_size, settings)
    if taken is not None:
        at = points.astype(int)
        free = ~taken[at[:, 0], at[:, 1]]
        if progress is not None and (~free).any():
            progress(int(np.count_nonzero(~free)))
        points = points[free]
    covered = np.zeros(frame.shape, bool)
    found = []
    queue = list(points)
    while queue:
        if should_stop is not None and should_stop():
            raise Cancelled("segmentation of everything was cancelled")
        batch, queue, skipped = _next_batch(queue, settings.batch, frame, covered if settings.skip_covered else None)
        if progress is not None and skipped:
            progress(skipped)
        if not batch:
            continue
        pts = np.array(batch)
        answers = predictor.predict_batch(points=pts[:, None, :], labels=np.ones((len(pts), 1)),
                                          multimask=True, embedding=embedding)
        for answer in answers:
            for k in range(len(answer.scores)):
                kept = judged(answer, k, frame, min_iou, min_stability, settings.stability_offset)
                if kept is not None:
                    found.append(kept[0])
                    covered[: kept[1].shape[0], : kept[1].shape[1]] |= kept[1]
        if progress is not None:
            progress(len(batch))
    return found


def _next_batch(queue: list, size: int, frame: "LowResFrame", covered: np.ndarray | None):
    """Up to ``size`` points from the front of ``queue`` not inside ``covered`` (low-res cells),
    the rest of the queue, and how many points were passed over."""
    batch, skipped, i = [], 0, 0
    while i < len(queue) and len(batch) < size:
        point = queue[i]
        i += 1
        if covered is not None and covered[frame.cell(point)]:
            skipped += 1
            continue
        batch.append(point)
    return batch, queue[i:], skipped


def judged(answer, k: int, frame: LowResFrame, min_iou: float, min_stability: float, offset: float):
    """(the :class:`Candidate`, its mask in low-res cells) of ``answer``'s ``k``-th candidate when
    it passes the filters (predicted IoU, stability, not empty); None when it does not."""
    score = float(answer.scores[k])
    if score < min_iou:
        return None
    stability, box, inside = judge(answer.logits[k], frame, offset)
    if box is None or stability < min_stability:
        return None
    return Candidate(score, stability, box, answer, k), inside


def judge(logits: np.ndarray, frame: LowResFrame, offset: float):
    """(stability, box in image pixels, mask in low-res cells) of one candidate, on the image's
    part of the frame; box None when the mask is empty there."""
    lg = logits[: frame.rows, : frame.cols]
    loose = int(np.count_nonzero(lg > -offset))
    if loose == 0:
        return 0.0, None, None
    stability = np.count_nonzero(lg > offset) / loose
    inside = lg > 0
    rr, cc = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    if rr.size == 0:
        return float(stability), None, None
    sy, sx = frame.to_image
    box = np.array([rr[0] * sy, cc[0] * sx, (rr[-1] + 1) * sy, (cc[-1] + 1) * sx])
    return float(stability), box, inside


def box_nms(candidates: list, threshold: float) -> list:
    """Candidates sorted best first (predicted IoU, then stability), dropping those whose box
    overlaps a kept one's by more than ``threshold`` (IoU)."""
    ordered = sorted(candidates, key=lambda c: c.key())
    kept, boxes = [], np.zeros((0, 4))
    for cand in ordered:
        if (box_ious(boxes, cand.box) > threshold).any():
            continue
        kept.append(cand)
        boxes = np.vstack([boxes, cand.box[None]])
    return kept


def box_ious(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of each of ``boxes`` (N x 4, min_row, min_col, max_row, max_col) with ``box``."""
    top, left = np.maximum(boxes[:, 0], box[0]), np.maximum(boxes[:, 1], box[1])
    bottom, right = np.minimum(boxes[:, 2], box[2]), np.minimum(boxes[:, 3], box[3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    union = area + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / np.maximum(union, 1e-9)

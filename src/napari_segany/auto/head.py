"""Candidate objects from a model's instance head: one prompt per object instead of a grid.

The head (:mod:`napari_segany.engine.instance_head`) reads the embedding once and says where
objects are (foreground) and how deep inside its object each low-res cell lies (depth). The cores
of the objects, the connected parts of the foreground deeper than one half, are the seeds; a
watershed on the depth grows each seed over the foreground to its object's extent. Each object is
then asked of the mask decoder once, with a box around its extent, and its answer is judged like a
grid candidate (predicted IoU, stability) before the same NMS and painting as the grid's
(:mod:`.everything`). A grid of 16 x 16 points asks the decoder 256 times; an image of 60 nuclei is
asked 60 times.

The box alone, not box and click: on the real nuclei, with maps made from the annotation itself,
the included model's answers to the boxes had a mean IoU of 0.76 (13 of 125 under 0.5) against
0.73 (21) with the click at the core added; with the trained head, 3D F1 rose from 0.41 to 0.49
and 2D stayed at 0.78. The click still says where the object is (``head_prompts``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

from .grid import Candidate, GridSettings, judged
from ..engine.instance_head import head_maps, head_regions, head_seeds
from ..engine.low_res import LowResFrame, label_grid
from ..engine.outputs import ImageEmbedding
from ..engine.predictor import Cancelled

#: With pixels already labelled ("segment the rest"), an object the head finds is not asked when at
#: least this share of its extent is labelled: the object is there already, and asking again would
#: add the unlabelled rim of it as an object of its own.
TAKEN_SHARE = 0.5


def head_prompts(predictor, embedding: ImageEmbedding, taken: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, LowResFrame]:
    """(points K x 2, boxes K x 4) in image pixels of the embedding's image, one per object the
    head finds (a click at the object's deepest cell, a box around its extent, inclusive), and the
    low-res frame they were read on. With ``taken`` (H x W bool), objects whose click or at least
    :data:`TAKEN_SHARE` of whose extent lies on taken pixels are left out: they are there already."""
    head = predictor.model.instance_head
    frame = LowResFrame(embedding.geometry, predictor.model.low_res_size)
    foreground, depth = head_maps(head, embedding.features)
    valid = np.zeros(foreground.shape, bool)
    valid[: frame.rows, : frame.cols] = True
    seeds = head_seeds(foreground, depth, valid)
    regions = head_regions(foreground, depth, seeds, valid)
    sy, sx = frame.to_image
    h, w = embedding.original_size
    on_taken = None if taken is None else label_grid(np.asarray(taken, np.uint8), frame) > 0
    points, boxes = [], []
    for i, box in enumerate(ndimage.find_objects(regions), start=1):
        if box is None:
            continue
        core = np.where(seeds[box] == i, depth[box], -1.0)
        r, c = np.unravel_index(int(np.argmax(core)), core.shape)
        if on_taken is not None and (on_taken[box][r, c] or on_taken[box][regions[box] == i].mean() >= TAKEN_SHARE):
            continue
        points.append((min((box[0].start + r + 0.5) * sy, h - 1), min((box[1].start + c + 0.5) * sx, w - 1)))
        boxes.append((box[0].start * sy, box[1].start * sx, min(box[0].stop * sy, h) - 1, min(box[1].stop * sx, w) - 1))
    return np.array(points, float).reshape(-1, 2), np.array(boxes, float).reshape(-1, 4), frame


def head_candidates(predictor, embedding: ImageEmbedding, settings: GridSettings, *,
                    taken: np.ndarray | None = None, progress: Callable[[int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> list[Candidate]:
    """Every object the head finds on ``embedding`` whose decoder answer passes the filters (before
    NMS); arguments as :func:`.grid.grid_candidates`, with ``progress(n)`` counting prompts."""
    points, boxes, frame = head_prompts(predictor, embedding, taken)
    min_iou = settings.least_iou(predictor.model)
    min_stability = settings.least_stability(predictor.model)
    found = []
    for start in range(0, len(points), settings.batch):
        if should_stop is not None and should_stop():
            raise Cancelled("segmentation of everything was cancelled")
        bxs = boxes[start:start + settings.batch]
        answers = predictor.predict_batch(boxes=bxs, multimask=False, embedding=embedding)
        kept = (judged(answer, 0, frame, min_iou, min_stability, settings.stability_offset) for answer in answers)
        found += [k[0] for k in kept if k is not None]
        if progress is not None:
            progress(len(bxs))
    return found

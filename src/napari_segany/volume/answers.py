"""The answers on one slice for every object walking into it: on the whole slice, or, for an
object that is small in a large slice, on an enlarged crop around it (the crops of
:mod:`napari_segany.engine.zoom`, chosen from the object's mask on the previous slice)."""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np

from ..engine.crop_geometry import MIN_GAIN, Window, zoom_window
from .prompting import bbox, build_prompts, choose_candidate

# An object is answered in a crop already chosen on the same slice for another object when that crop
# is of about the size its own would be (within MIN_GAIN) and holds it with this fraction of its side
# to spare on every side (or up to the slice's edge): fewer crops to encode for crowded objects.
SHARE_MARGIN = 0.5


def crop_window(mask: np.ndarray, model_size: int) -> Window | None:
    """The crop to answer an object in, from its mask on the neighbouring slice; None for the
    whole slice (the crop would not show the object at least 1.25x larger)."""
    return zoom_window(bbox(mask), mask.shape, model_size)


def slice_windows(previous: list[np.ndarray], model_size: int) -> list[Window | None]:
    """The crop (None: the whole slice) each object is answered in, crops shared where they can be."""
    chosen: list[Window] = []
    out: list[Window | None] = []
    for mask in previous:
        extent = bbox(mask)
        own = zoom_window(extent, mask.shape, model_size)
        if own is not None:
            margin = SHARE_MARGIN * (max(extent[2] - extent[0], extent[3] - extent[1]) + 1)
            shared = [c for c in chosen if own.side / MIN_GAIN <= c.side <= own.side * MIN_GAIN
                      and _holds(c, extent, margin, mask.shape)]
            if shared:
                own = shared[0]
            else:
                chosen.append(own)
        out.append(own)
    return out


def _holds(window: Window, extent, margin: float, shape: tuple[int, int]) -> bool:
    """True if ``extent`` lies in ``window`` with ``margin`` px to spare on every side (less where
    the slice's edge is closer)."""
    r0, c0, r1, c1 = extent
    h, w = shape
    return (r0 - window.top >= min(margin, r0) and c0 - window.left >= min(margin, c0)
            and window.top + window.height - 1 - r1 >= min(margin, h - 1 - r1)
            and window.left + window.width - 1 - c1 >= min(margin, w - 1 - c1))


def slice_answers(store, predictor, index: int, previous: list[np.ndarray], mode: str, *, zoom: bool,
                  should_stop: Callable[[], bool] | None = None) -> tuple[list[tuple[np.ndarray, float]], int]:
    """(mask, score) on slice ``index`` for each object's ``previous`` mask, and the number of
    decoder calls: one per crop, and one for all objects answered on the whole slice."""
    windows = slice_windows(previous, predictor.model.image_size) if zoom else [None] * len(previous)
    groups: dict[Window | None, list[int]] = defaultdict(list)
    for k, window in enumerate(windows):
        groups[window].append(k)
    answers: list = [None] * len(previous)
    for window, members in groups.items():
        if window is None:
            emb = store.get(index, should_stop=should_stop, prefetch=False)
        else:
            emb = store.crop(index, window, should_stop=should_stop)
        inputs = [previous[k] if window is None else previous[k][window.slices] for k in members]
        preds = predictor.predict_batch(**build_prompts(predictor, inputs, mode, emb), embedding=emb)
        for k, m, pred in zip(members, inputs, preds):
            mask, score = choose_candidate(pred, m)
            answers[k] = (mask if window is None else window.paste(mask, previous[k].shape), score)
    return answers, len(groups)

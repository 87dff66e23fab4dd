"""Where :class:`napari_segany.engine.zoom.ZoomPredictor` crops: the crop around an object, how much the
whole image's answer counts in it, and the extent of a prompt. Shared with propagation's zoom
(:mod:`napari_segany.volume.answers`), which needs no predictor to choose its crops."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["BLEND", "BLEND_GAIN", "CONTRASTS", "MAX_SCALE", "MIN_GAIN", "OBJECT_FRACTION", "Window",
           "blend_weight", "prompt_extent", "prompt_points", "zoom_window"]

# Chosen on held-out generated scenes (training.evaluate --synthetic), not on the real sample data.
OBJECT_FRACTION = 1 / 4
MAX_SCALE = 1.5
# A crop is used only if it shows the object at least this much larger than the whole image does.
MIN_GAIN = 1.25
# Share of the whole image's answer in the crop's (chosen on generated validation scenes, not on the
# real sample data; see training/HISTORY.md) while the crop shows the object at most BLEND_GAIN times larger
# than the whole image does; beyond, the whole image's answer is that much coarser and its share falls
# with the square of the gain (chosen on generated mosaics of 1024 and 1536 px, see training/HISTORY.md).
BLEND = 0.5
BLEND_GAIN = 1.5
# The intensity windows a crop can be encoded with (ZoomPredictor's ``contrast``; the first is the default).
CONTRASTS = ("image", "object")


@dataclass(frozen=True)
class Window:
    """A crop of the image: rows [top, top + height), columns [left, left + width)."""

    top: int
    left: int
    height: int
    width: int
    #: The intensity window the crop is encoded with (None: the whole image's).
    limits: tuple[float, float] | None = None

    @property
    def side(self) -> int:
        """The longest side: the one the model's frame is fitted to."""
        return max(self.height, self.width)

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    def paste(self, masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """``masks`` (..., height, width) of this crop placed in (..., *shape) ones of the image."""
        out = np.zeros(masks.shape[:-2] + tuple(shape), bool)
        out[(..., *self.slices)] = masks
        return out

    def contains(self, rowcol: np.ndarray) -> bool:
        """True if every (row, col) of the (N, 2) array lies inside the crop."""
        p = np.asarray(rowcol, float).reshape(-1, 2)
        return bool(np.all((p[:, 0] >= self.top - 0.5) & (p[:, 0] <= self.top + self.height - 0.5)
                           & (p[:, 1] >= self.left - 0.5) & (p[:, 1] <= self.left + self.width - 0.5)))


def zoom_window(extent, image_shape: tuple[int, int], model_size: int, *,
                object_fraction: float = OBJECT_FRACTION, max_scale: float = MAX_SCALE) -> Window | None:
    """The crop to encode for an object spanning ``extent`` (min_row, min_col, max_row, max_col).

    A square of side ``object side / object_fraction``, at least
    ``model_size / max_scale`` (so no pixel is enlarged more than ``max_scale``
    times), centred on the object and moved inside the image; None when that
    would not show the object at least ``MIN_GAIN`` times larger than the
    whole image does.
    """
    r0, c0, r1, c1 = (float(v) for v in extent)
    h, w = image_shape
    side = max(r1 - r0, c1 - c0) + 1
    crop = max(side / object_fraction, model_size / max_scale)
    if crop * MIN_GAIN > max(h, w):
        return None
    size = math.ceil(crop)
    ch, cw = min(size, h), min(size, w)
    top = int(np.clip(round((r0 + r1 + 1) / 2 - ch / 2), 0, h - ch))
    left = int(np.clip(round((c0 + c1 + 1) / 2 - cw / 2), 0, w - cw))
    return Window(top, left, ch, cw)


def blend_weight(blend: float, image_shape: tuple[int, int], window: Window) -> float:
    """The whole image's share in the answer inside ``window``: ``blend`` while the crop enlarges
    the image at most ``BLEND_GAIN`` times more than the whole image's frame does, then falling with
    the square of that gain, as the area one frame pixel covers grows (a 20 px object in a 3000 px
    image spans 3 px of the whole image's frame and 30 px of the crop's: the whole image's answer
    there is a blur)."""
    gain = max(image_shape) / window.side
    return blend * min(1.0, BLEND_GAIN / gain) ** 2


def prompt_extent(points=None, box=None, mask: np.ndarray | None = None):
    """Bounding (min_row, min_col, max_row, max_col) of the points (all must lie in the crop), box and mask."""
    rows, cols = [], []
    if points is not None:
        pts = np.asarray(points, float).reshape(-1, 2)
        rows += list(pts[:, 0])
        cols += list(pts[:, 1])
    if box is not None:
        b = np.asarray(box, float).reshape(4)
        rows += [b[0], b[2]]
        cols += [b[1], b[3]]
    if mask is not None and mask.any():
        rr, cc = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        rows += [rr[0], rr[-1]]
        cols += [cc[0], cc[-1]]
    if not rows:
        return None
    return min(rows), min(cols), max(rows), max(cols)


def prompt_points(points, box) -> np.ndarray:
    """All prompt positions as (N, 2) (row, col): the points and the box's corners."""
    parts = [np.asarray(points, float).reshape(-1, 2)] if points is not None else []
    if box is not None:
        parts.append(np.asarray(box, float).reshape(2, 2))
    return np.concatenate(parts) if parts else np.zeros((0, 2))

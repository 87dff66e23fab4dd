"""The decoder's low-resolution grid: where an image lies in it, and an image's values sampled on it.

The mask decoder answers on a square grid 4 x the embedding's (256 x 256 for SAM's 1024 px frame,
128 x 128 for the included model's 512 px); the image covers its top-left part, the rest is the
frame's padding. Automatic segmentation judges candidates there, and a model's instance head
answers there.
"""

from __future__ import annotations

import numpy as np


class LowResFrame:
    """Where the image lies in the decoder's low-res logits, and their cell size in image pixels."""

    def __init__(self, geometry, n: int):
        self.shape = (n, n)
        if geometry.profile == "medsam":
            self.rows, self.cols = n, n
            self.to_image = (geometry.original_size[0] / n, geometry.original_size[1] / n)
        else:
            cell = geometry.model_size / n
            self.rows = int(np.ceil(geometry.input_size[0] / cell))
            self.cols = int(np.ceil(geometry.input_size[1] / cell))
            self.to_image = (cell * geometry.original_size[0] / geometry.input_size[0],
                             cell * geometry.original_size[1] / geometry.input_size[1])

    def cell(self, point) -> tuple[int, int]:
        return (min(self.rows - 1, int(point[0] / self.to_image[0])),
                min(self.cols - 1, int(point[1] / self.to_image[1])))


def label_grid(labels: np.ndarray, frame: LowResFrame) -> np.ndarray:
    """The value of ``labels`` (an image's labels or mask) under the centre of each low-res cell, -1
    in the cells outside the image (the frame's padding)."""
    out = np.full(frame.shape, -1, np.int64)
    ys = np.minimum(((np.arange(frame.rows) + 0.5) * frame.to_image[0]).astype(int), labels.shape[0] - 1)
    xs = np.minimum(((np.arange(frame.cols) + 0.5) * frame.to_image[1]).astype(int), labels.shape[1] - 1)
    out[: frame.rows, : frame.cols] = labels[np.ix_(ys, xs)]
    return out

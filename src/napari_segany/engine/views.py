"""Test-time views: the image flipped and transposed, predicted on, and averaged back.

A model answers slightly differently for a mirrored image. Averaging the
logits of several mirrored views of the same prompt (test-time augmentation)
cancels part of that error: on the held-out generated scenes it raised the
included model's mean IoU from 0.622 to 0.651 with 4 views (training/HISTORY.md).
It costs one encoder pass per view.

The views, in the order they are added:

====  ===================================================
1     the image as it is
2     + mirrored left-right
4     + mirrored top-bottom, + both (turned by 180 degrees)
8     + the four above, transposed (rows and columns swapped)
====  ===================================================

Everything here is pure array geometry: how an image, a point, a box and the
decoder's low-resolution logits look in a view, and how logits come back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .preprocess import LARGE_IMAGE_PIXELS, Geometry, encoder_input, finished_input, resized_input
from .prompts import prepare_prompts

VIEW_COUNTS = (1, 2, 4, 8)


@dataclass(frozen=True)
class View:
    """One view of an image: transposed first (if ``transpose``), then mirrored."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    def shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The view's (rows, cols) for an image of ``shape``."""
        return (shape[1], shape[0]) if self.transpose else (shape[0], shape[1])

    def image(self, image: np.ndarray) -> np.ndarray:
        """H x W [x C] -> the view (a copy, contiguous)."""
        out = np.swapaxes(image, 0, 1) if self.transpose else image
        if self.flip_rows:
            out = out[::-1]
        if self.flip_cols:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def points(self, points, shape: tuple[int, int]) -> np.ndarray | None:
        """(N, 2) (row, col) pixels of an image of ``shape`` -> the same pixels in the view."""
        if points is None:
            return None
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self.transpose:
            p = p[:, ::-1]
        rows, cols = self.shape(shape)
        p = p.copy()
        if self.flip_rows:
            p[:, 0] = rows - 1 - p[:, 0]
        if self.flip_cols:
            p[:, 1] = cols - 1 - p[:, 1]
        return p

    def box(self, box, shape: tuple[int, int]) -> np.ndarray | None:
        """(min_row, min_col, max_row, max_col) -> the same pixels' box in the view."""
        if box is None:
            return None
        corners = self.points(np.asarray(box, dtype=np.float64).reshape(2, 2), shape)
        return np.concatenate([corners.min(0), corners.max(0)])

    def to_view(self, a: torch.Tensor) -> torch.Tensor:
        """... x h x w (the image's orientation) -> ... x the view's orientation."""
        if self.transpose:
            a = a.transpose(-2, -1)
        return a.flip(self._flip_dims) if self._flip_dims else a

    def from_view(self, a: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_view`."""
        a = a.flip(self._flip_dims) if self._flip_dims else a
        return a.transpose(-2, -1) if self.transpose else a

    @property
    def _flip_dims(self) -> list[int]:
        """The tensor dimensions (-2 rows, -1 columns) this view mirrors."""
        return [d for d, on in ((-2, self.flip_rows), (-1, self.flip_cols)) if on]


def views(count: int) -> tuple[View, ...]:
    """The first ``count`` views (1, 2, 4 or 8; see the module's table)."""
    count = check_view_count(count)
    flips = [View(False, r, c) for r, c in ((False, False), (False, True), (True, False), (True, True))]
    order = flips + [View(True, v.flip_rows, v.flip_cols) for v in flips]
    return tuple(order[:count])


def check_view_count(count) -> int:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or int(count) not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {', '.join(map(str, VIEW_COUNTS))} (the number of mirrored "
                         f"copies of the image whose answers are averaged), got {count!r}")
    return int(count)


def move_logits(logits: torch.Tensor, source: Geometry, target: Geometry, low_res: int,
                transform) -> torch.Tensor:
    """Low-res logits (... x L x L) of ``source``'s frame -> ``target``'s frame.

    ``transform`` maps an array in the source image's orientation to the
    target's (:meth:`View.to_view` or :meth:`View.from_view`). Only the part
    of the frame that shows the image moves; the padding of ``target`` is
    filled with the lowest logit. When the image's part is a whole number of
    logit cells the move is exact; otherwise the logits are resampled through
    the model frame (a slight blur of about one cell).
    """
    lead, cell = logits.shape[:-2], source.model_size // low_res
    x = logits.reshape(-1, low_res, low_res).float()
    (sh, sw), (th, tw) = source.input_size, target.input_size
    out = torch.full_like(x, float(x.min()) if x.numel() else 0.0)
    if all(v % cell == 0 for v in (sh, sw, th, tw)):
        part = transform(x[:, : sh // cell, : sw // cell])
        out[:, : th // cell, : tw // cell] = part
        return out.reshape(*lead, low_res, low_res)
    s = source.model_size
    up = F.interpolate(x[:, None], size=(s, s), mode="bilinear", align_corners=False)[:, 0]
    part = transform(up[:, :sh, :sw])
    if part.shape[-2:] != (th, tw):  # a transpose with a rounded resize: within a pixel
        part = F.interpolate(part[:, None], size=(th, tw), mode="bilinear", align_corners=False)[:, 0]
    frame = torch.full((x.shape[0], s, s), float(part.min()) if part.numel() else 0.0)
    frame[:, :th, :tw] = part
    out = F.avg_pool2d(frame[:, None], cell)[:, 0]
    return out.reshape(*lead, low_res, low_res)


def average_views(decode, embedding, view_features, logits, scores, mask_input, prompts, low_res_size: int,
                  device):
    """The identity view's answer (1 x K logits and scores, for ``prompts`` = (points, labels, box)
    and the prepared ``mask_input``) averaged with each mirrored view of ``embedding`` (whose
    features are ``view_features``), brought back to the identity's frame; ``decode(prompts,
    features)`` runs the decoder."""
    points, labels, box = prompts
    shape, geometry, low = embedding.original_size, embedding.geometry, low_res_size
    # clones: the decoder's outputs are inference tensors, which cannot be added to in place
    total_logits, total_scores = logits[0].float().cpu().clone(), scores[0].float().cpu().clone()
    previous = None if mask_input is None else mask_input[0, 0].float().cpu()
    for (view, vemb), features in zip(embedding.views, view_features):
        vmask = None if previous is None else move_logits(previous, geometry, vemb.geometry, low, view.to_view)
        vprompts = prepare_prompts(vemb.geometry, low, view.points(points, shape), labels, view.box(box, shape),
                                   None if vmask is None else vmask.numpy(), device)
        vlogits, vscores = decode(vprompts, features)
        total_logits += move_logits(vlogits[0].float().cpu(), vemb.geometry, geometry, low, view.from_view)
        total_scores += vscores[0].float().cpu()
    n = 1 + len(embedding.views)
    return (total_logits / n)[None], (total_scores / n)[None]


def view_input(view: View, unit: np.ndarray, geometry: Geometry, device) -> torch.Tensor:
    """The encoder input of ``view`` of ``unit`` (H x W x C in [0, 1]); ``geometry`` is the view's.

    A large image (:data:`~napari_segany.engine.preprocess.LARGE_IMAGE_PIXELS`) is resized first
    and mirrored after, which needs no full-size copy of the view; a smaller one is mirrored first,
    as always (the two differ only by float rounding)."""
    if unit.shape[0] * unit.shape[1] >= LARGE_IMAGE_PIXELS and view != View():
        base = geometry.for_other(unit.shape[:2])
        x = resized_input(unit, base, device)
        if view.transpose:
            x = x.transpose(-1, -2)
        if view.flip_rows:
            x = x.flip(-2)
        if view.flip_cols:
            x = x.flip(-1)
        if tuple(x.shape[-2:]) == tuple(geometry.input_size):
            return finished_input(x, geometry)
    return encoder_input(view.image(unit), geometry, device)

"""Segment everything: every object of a 2D image as a label image, for any model.

Candidates come from a grid of point prompts (:mod:`.grid`) or, for a model with an instance head,
from one box per object the head finds (:mod:`.head`); they are judged on the decoder's
low-res logits and thinned by box NMS before any full-resolution mask is made. Images larger than the
model's frame are cut into frame-sized tiles that overlap; a candidate cut by a tile's inner edge
gives way to the whole object seen by a neighbouring tile, and an object too large for the overlap
is joined from its pieces. The survivors are painted best first into one label image without
overlaps: a candidate keeps only pixels nobody took before it, and is dropped when that leaves
less than half of it. With ``existing`` labels only unlabelled pixels receive new objects
("segment the rest").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from .grid import GridSettings, box_ious, box_nms, grid_candidates, grid_points
from .head import head_candidates
from ..engine.outputs import ImageEmbedding
from ..engine.preprocess import as_2d_channels, intensity_window

__all__ = ["GridSettings", "Objects", "segment_everything"]

#: A candidate is dropped when objects painted before it leave less than this share of it.
MIN_FREE_SHARE = 0.5
#: Two pieces of one object cut by a seam are joined when they share this much of the smaller one.
JOIN_SHARE = 0.2


@dataclass(frozen=True)
class Objects:
    """The result: ``labels`` (H x W, uint32, 0 = background; with ``existing`` labels given, those
    plus the new objects) and one row per new object in ``table``: id, area, bbox (min_row,
    min_col, max_row, max_col, inclusive), centroid (row, col), predicted IoU, stability. New ids
    run from one above the highest existing id, best object first."""

    labels: np.ndarray
    table: list[dict]

    @property
    def new_ids(self) -> list[int]:
        return [row["id"] for row in self.table]


@dataclass
class _Piece:
    """A candidate that survived its tile's NMS, as a full-resolution mask crop."""

    score: float
    stability: float
    box: np.ndarray  # image pixels (min_row, min_col, max_row, max_col), from the low-res logits
    origin: tuple[int, int]
    mask: np.ndarray
    cut: bool  # touches an edge of its tile that another tile overlaps
    tile: int

    def key(self):
        return (self.cut, -self.score, -self.stability, tuple(np.round(self.box, 3)))


def segment_everything(predictor, image=None, *, embedding: ImageEmbedding | None = None,
                       settings: GridSettings | None = None, existing=None, first_id: int | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       should_stop: Callable[[], bool] | None = None, channel: int | None = None,
                       rgb: bool | None = None, contrast_limits: tuple[float, float] | None = None) -> Objects:
    """Every object of ``image`` (or of ``embedding``'s image), prompted by a grid of points or by
    the model's instance head (``settings.mode``).

    Parameters
    ----------
    predictor : Predictor
    image : array, (H, W), RGB(A) or (H, W, C) with ``channel``
        Encoded here (one view), tile by tile when larger than the model's frame, all tiles with
        one intensity window (``contrast_limits`` or the whole image's percentiles).
    embedding : ImageEmbedding, optional
        An embedding already made (instead of ``image``): its image is segmented whole.
    settings : GridSettings, optional
    existing : (H, W) integer labels, optional
        Objects already there: they are kept as they are and only unlabelled pixels receive new
        objects, numbered from ``existing.max() + 1``.
    first_id : int, optional
        The first new id instead (above every id of ``existing``), e.g. one above the highest id of
        the whole volume that ``existing`` is a slice of.
    progress : callable(done, total), optional
        Grid points dealt with, over all tiles (head mode: tiles done).
    should_stop : callable() -> bool, optional
        Checked between decoder calls; True raises :class:`~napari_segany.Cancelled`.
    """
    settings = settings or GridSettings()
    if (image is None) == (embedding is None):
        raise ValueError("pass either the image to segment or its embedding=, not both" if image is not None
                         else "pass the image to segment, or its embedding=")
    if embedding is not None:
        shape = tuple(embedding.original_size)
        tiles = [(slice(0, shape[0]), slice(0, shape[1]))]
    else:
        plane = as_2d_channels(image, channel=channel, rgb=rgb)
        shape = plane.shape[:2]
        window = intensity_window(plane, contrast_limits=contrast_limits)
        frame = int(predictor.model.image_encoder.img_size)
        tiles = tile_layout(shape, frame, settings) if settings.tile == "auto" else [(slice(0, shape[0]),
                                                                                        slice(0, shape[1]))]
    labels, first_id = start_labels(existing, shape, first_id)
    taken = labels > 0 if existing is not None else None
    model_size = int(predictor.model.image_encoder.img_size)
    head = settings.uses_head(predictor.model)
    candidates = head_candidates if head else grid_candidates
    # the grid knows its points beforehand; the head's objects are known per tile only
    total = len(tiles) if head else sum(len(grid_points((r.stop - r.start, c.stop - c.start), model_size, settings))
                                        for r, c in tiles)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    pieces = []
    for t, (rows, cols) in enumerate(tiles):
        emb = embedding
        if emb is None:
            emb = predictor.encode(np.asarray(image)[rows, cols], views=1, channel=channel, rgb=rgb,
                                   contrast_limits=window, should_stop=should_stop)
        found = candidates(predictor, emb, settings, taken=None if taken is None else taken[rows, cols],
                           progress=None if head else advance, should_stop=should_stop)
        if head:
            advance(1)
        pieces += _pieces(box_nms(found, settings.nms_iou), (rows, cols), shape, t)
    new_ids, scores = _paint(labels, pieces, taken, first_id, settings)
    return Objects(labels, _table(labels, new_ids, scores))


def tile_layout(shape: tuple[int, int], frame: int, settings: GridSettings) -> list[tuple[slice, slice]]:
    """Frame-sized tiles covering the image, neighbours sharing ``settings.tile_overlap`` pixels
    (a quarter of the frame by default) or more; one tile when the image fits in the frame."""
    overlap = frame // 4 if settings.tile_overlap is None else int(settings.tile_overlap)
    if overlap >= frame:
        raise ValueError(f"tile_overlap ({overlap} px) must be smaller than the model's frame ({frame} px)")
    starts = []
    for size in shape:
        if size <= frame:
            starts.append([0])
            continue
        n = int(np.ceil((size - overlap) / (frame - overlap)))
        starts.append([int(round(s)) for s in np.linspace(0, size - frame, n)])
    return [(slice(r, min(r + frame, shape[0])), slice(c, min(c + frame, shape[1])))
            for r in starts[0] for c in starts[1]]


def start_labels(existing, shape, first_id: int | None = None) -> tuple[np.ndarray, int]:
    """``existing`` checked against ``shape`` as uint32 labels to paint into, and the first new id
    (``first_id`` if given, checked to lie above every existing id)."""
    if first_id is not None and not (isinstance(first_id, (int, np.integer)) and not isinstance(first_id, bool)
                                     and 1 <= first_id < 2**32 - 1):
        raise ValueError(f"first_id must be a whole number from 1 to 4294967294, got {first_id!r}")
    if existing is None:
        return np.zeros(shape, np.uint32), 1 if first_id is None else int(first_id)
    existing = np.asarray(existing)
    if existing.shape != tuple(shape):
        raise ValueError(f"existing labels have shape {existing.shape} but the image is {tuple(shape)}; pass the "
                         "labels of this image (or of this slice of the volume)")
    if existing.dtype == bool or not np.issubdtype(existing.dtype, np.integer):
        raise TypeError(f"existing labels must be whole numbers (an integer array), got dtype {existing.dtype}")
    top = int(existing.max(initial=0))
    if int(existing.min(initial=0)) < 0 or top >= 2**32 - 1:
        raise ValueError("existing labels must lie between 0 and 4294967294; renumber them first "
                         "(e.g. skimage.segmentation.relabel_sequential)")
    if first_id is not None and first_id <= top:
        raise ValueError(f"first_id={first_id} would reuse ids of the existing labels (up to {top}); pass a "
                         "larger one, or leave it out to count on from the highest")
    return existing.astype(np.uint32), top + 1 if first_id is None else int(first_id)


def _pieces(kept: list, tile: tuple[slice, slice], shape, t: int) -> list[_Piece]:
    rows, cols = tile
    inner = (rows.start > 0, cols.start > 0, rows.stop < shape[0], cols.stop < shape[1])
    h, w = rows.stop - rows.start, cols.stop - cols.start
    out = []
    for cand in kept:
        mask = cand.answer.mask(cand.k)
        rr, cc = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if rr.size == 0:
            continue
        r0, r1, c0, c1 = rr[0], rr[-1] + 1, cc[0], cc[-1] + 1
        cut = (inner[0] and r0 == 0) or (inner[1] and c0 == 0) or (inner[2] and r1 == h) or (inner[3] and c1 == w)
        box = cand.box + np.array([rows.start, cols.start, rows.start, cols.start])
        out.append(_Piece(cand.score, cand.stability, box, (rows.start + r0, cols.start + c0),
                          mask[r0:r1, c0:c1].copy(), bool(cut), t))
    return out


def _paint(labels: np.ndarray, pieces: list[_Piece], taken, first_id: int, settings: GridSettings) -> tuple[list[int], dict]:
    """Paint ``pieces`` best first (whole objects before pieces cut by a seam, then NMS across
    tiles); returns the new ids in order and their (predicted IoU, stability)."""
    scores: dict[int, tuple[float, float]] = {}
    cut_ids: dict[int, int] = {}  # id -> tile, for objects painted from a cut piece
    least = max(1, settings.min_area)
    next_id = first_id
    for piece in _across_tiles(pieces, settings.nms_iou):
        (r0, c0), (h, w) = piece.origin, piece.mask.shape
        region = labels[r0:r0 + h, c0:c0 + w]
        free = region == 0
        if taken is not None:
            free &= ~taken[r0:r0 + h, c0:c0 + w]
        target = _joined(region, piece, cut_ids) if piece.cut else None
        mine = piece.mask & free
        area = int(np.count_nonzero(mine))
        if target is None and (area < least or area < MIN_FREE_SHARE * np.count_nonzero(piece.mask)):
            continue
        if target is None:
            target = next_id
            next_id += 1
            scores[target] = (piece.score, piece.stability)
            if piece.cut:
                cut_ids[target] = piece.tile
        region[mine] = target
    return list(range(first_id, next_id)), scores


def _across_tiles(pieces: list[_Piece], threshold: float) -> list[_Piece]:
    """Best first; a piece whose box overlaps a better piece of another tile by more than
    ``threshold`` is dropped (within a tile that was done before the masks were made)."""
    ordered = sorted(pieces, key=lambda p: p.key())
    if len({p.tile for p in pieces}) <= 1:
        return ordered
    kept = []
    for piece in ordered:
        others = np.array([other.box for other in kept if other.tile != piece.tile]).reshape(-1, 4)
        if (box_ious(others, piece.box) > threshold).any():
            continue
        kept.append(piece)
    return kept


def _joined(region: np.ndarray, piece: _Piece, cut_ids: dict[int, int]) -> int | None:
    """The id of a piece of the same object, cut at a seam in another tile, that ``piece``
    overlaps enough to be joined to; None when there is none."""
    under = region[piece.mask]
    best, best_share = None, JOIN_SHARE
    for i, n in zip(*np.unique(under[under > 0], return_counts=True)):
        i = int(i)
        if i in cut_ids and cut_ids[i] != piece.tile:
            share = n / min(np.count_nonzero(piece.mask), np.count_nonzero(region == i))
            if share >= best_share:
                best, best_share = i, share
    return best


def _table(labels: np.ndarray, new_ids: list[int], scores: dict[int, tuple[float, float]]) -> list[dict]:
    """One row per new object (its pixels as painted)."""
    if not new_ids:
        return []
    first, last = new_ids[0], new_ids[-1]
    boxes = ndimage.find_objects(np.where(labels >= first, labels, 0), max_label=last)
    table = []
    for i in new_ids:
        window = boxes[i - 1]
        rr, cc = np.nonzero(labels[window] == i)
        rr, cc = rr + window[0].start, cc + window[1].start
        score, stability = scores[i]
        table.append({"id": i, "area": int(rr.size),
                      "bbox": (int(rr.min()), int(cc.min()), int(rr.max()), int(cc.max())),
                      "centroid": (round(float(rr.mean()), 2), round(float(cc.mean()), 2)),
                      "predicted_iou": round(score, 4), "stability": round(stability, 4)})
    return table

"""The held-out report's score for volumes: objects propagated through their held-out block of
slices, as a person would propagate an object drawn on one slice.

For each held-out block (consecutive slices of a volume, see :mod:`.data`), each of its objects
that shows on two or more of its slices is seeded with its true mask on the slice where it is
largest and propagated through the block by :func:`napari_segany.propagate` (its defaults, one
view, no crops: like the report's clicks). The score of an object is the IoU of what propagation
wrote and the truth over the block's *other* slices (the seed itself is given, not found). The walk
stays inside the block: it never sees a slice used in training, and the block's embeddings are the
ones the report already holds (no encoder pass, except for unlabelled slices inside a block).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..volume import EmbeddingStore, propagate
from .data import Split


@dataclass
class Block:
    """A held-out block: its volume's slices ``first``..``last`` along ``axis`` and the held-out
    pictures' embeddings by slice."""

    volume: object
    labels: np.ndarray
    axis: int
    first: int
    last: int
    window: tuple[float, float]
    embeddings: dict
    #: Slices of the block (counted from ``first``) left out of the scores, e.g. ones trained on.
    unscored: tuple[int, ...] = ()


def held_blocks(data: Split, prepared: list) -> list[Block]:
    """The held-out blocks of slices of ``data`` (``prepared``: its examples' kept embeddings, in
    the same order)."""
    groups: dict[tuple[int, int], dict] = {}
    for ex, prep in zip(data.examples, prepared):
        if ex.held_out and ex.slice_index is not None:
            groups.setdefault((ex.source, ex.unit), {})[ex.slice_index] = prep.embedding
    blocks = []
    for (source, _), embeddings in sorted(groups.items()):
        src = data.sources[source]
        window = next(iter(embeddings.values())).window  # the volume's, which its slices were encoded with
        blocks.append(Block(src.image, src.labels, src.axis, min(embeddings), max(embeddings),
                            tuple(float(v) for v in window), embeddings))
    return blocks


def _iou_off_seed(result: np.ndarray, truth: np.ndarray, seed: int, unscored=()) -> float:
    """IoU of two masks of a block (slices first along axis 0), the seed and ``unscored`` slices
    left out."""
    keep = np.ones(len(truth), bool)
    keep[[seed, *unscored]] = False
    a, b = result[keep], truth[keep]
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def propagation_scores(predictor, blocks: list[Block], should_stop=None) -> list[float]:
    """The IoU of each held-out object propagated from its largest slice (see the module's
    docstring) with ``predictor``."""
    scores = []
    for block in blocks:
        zs = np.arange(block.first, block.last + 1)
        sub = np.take(np.asarray(block.volume), zs, axis=block.axis)
        truth = np.moveaxis(np.take(block.labels, zs, axis=block.axis), block.axis, 0)
        ids = [int(i) for i in np.unique(truth) if i]
        areas = {i: np.count_nonzero(truth == i, axis=(1, 2)) for i in ids}
        ids = [i for i in ids if np.count_nonzero(areas[i]) >= 2]
        if not ids:
            continue
        seeds = np.zeros_like(truth)
        seed_of = {}
        for i in ids:
            seed_of[i] = int(np.argmax(areas[i]))
            seeds[seed_of[i]][truth[seed_of[i]] == i] = i
        store = EmbeddingStore(predictor, sub, axis=block.axis, contrast_limits=block.window, prefetch=0,
                               memory_bytes=256 * 2**20)
        try:
            for z, emb in block.embeddings.items():
                store.keep(z - block.first, replace(emb, model_id=predictor.model_id))  # the same encoder
            result = propagate(sub, labels=np.moveaxis(seeds, 0, block.axis), store=store, predictor=predictor,
                               axis=block.axis, zoom=False, should_stop=should_stop)
        finally:
            store.close()
        if result.cancelled:
            break
        out = np.moveaxis(result.labels, block.axis, 0)
        scores += [_iou_off_seed(out == i, truth == i, seed_of[i], block.unscored) for i in ids]
    return scores

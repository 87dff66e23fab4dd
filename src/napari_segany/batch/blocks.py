"""A long volume in blocks of slices, one task per block (``auto --block-slices N`` on a cluster):
blocks overlap by a few slices, each is segmented on its own as a whole volume is (find and
follow), and objects of neighbouring blocks that are the same in the slices they share (IoU above
0.5 there) get one id. Every block uses the whole volume's intensity window. A worker holds one
block (its pixels and labels) at a time. The blocks' labels wait on disk, compressed, one chunk per
slice (slices without labels take no space); the task that assembles the result reads them a slice
at a time (the shared slices of two blocks to stitch them), and writes the labels TIFF page by page
(the labels last, as everywhere)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..volume.cache import slice_chunked_array
from .inputs import Layout, read_input
from .item import AutoOptions
from .outputs import Job, compact, table_rows, write_picture


@dataclass(frozen=True)
class Block:
    """Slices [start, stop) of the volume are read and segmented; [core_start, core_stop) are this
    block's in the result (the rest is overlap, shared with a neighbour)."""

    start: int
    stop: int
    core_start: int
    core_stop: int


def plan_blocks(n: int, size: int, overlap: int) -> list[Block]:
    """Blocks of ``size`` slices (the last may be shorter) whose read ranges reach ``overlap``
    slices into each neighbour."""
    if size < 1 or overlap < 0:
        raise ValueError(f"blocks need at least 1 slice and an overlap of at least 0, got {size} and {overlap}")
    return [Block(max(0, c - overlap), min(n, c + size + overlap), c, min(n, c + size)) for c in range(0, n, size)]


def scratch_folder(job: Job) -> Path:
    """Where a volume's blocks keep their labels until they are assembled (hidden, beside the output)."""
    return job.labels.parent / f".{job.labels.stem}.blocks"


def volume_window_of(source: Path, options: AutoOptions, predictor) -> tuple[float, float]:
    """The intensity window a whole-volume run uses (the model's rule, a subsample of the volume)."""
    from .. import EmbeddingStore

    store = EmbeddingStore(predictor(), read_input(source), axis=0, channel=options.channel,
                           contrast_limits=options.contrast_limits, prefetch=0)
    store.close()
    return tuple(float(v) for v in store.window)


def segment_block(source: Path, block: Block, window, options: AutoOptions, predictor, scratch: Path, *,
                  compute=contextlib.nullcontext) -> dict:
    """Segment the slices of ``block`` and save their labels (ids from 1 within the block) in
    ``scratch``, atomically, as a compressed zarr array with one chunk per slice (slices without
    labels take no space). Returns the array's folder, the highest id, the block's slices that
    hold labels, and per id the volume's slice where it was found with its predicted IoU and
    stability."""
    from .. import segment_volume

    data = np.asarray(read_input(source)[block.start:block.stop])
    model = predictor()
    with compute():
        found = segment_volume(model, data, axis=0, settings=options.settings, channel=options.channel,
                               contrast_limits=window)
    del data
    labels = np.asarray(found.labels, dtype=np.uint32)
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / f"block_{block.start:07d}_{block.stop:07d}.zarr"
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=scratch))
    try:
        slice_chunked_array(tmp, labels.shape, np.uint32)[...] = labels
        if path.exists():  # from an earlier try of this block, whose worker was lost before it reported
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"labels": str(path), "top": int(np.max(labels, initial=0)),
            "filled": np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1)).tolist(),
            "found": {int(r["id"]): (int(r["found_on_slice"]) + block.start, r["predicted_iou"], r["stability"])
                      for r in found.table}}


def block_labels(done: dict):
    """A block's saved labels (read slice by slice, as they are indexed)."""
    import zarr

    return zarr.open_array(done["labels"], mode="r")


def filled_core(block: Block, done: dict) -> list[int]:
    """The volume's slices in ``block``'s core that hold labels."""
    return [block.start + i for i in done["filled"] if block.core_start <= block.start + i < block.core_stop]


def stitch(blocks: list[Block], done: list[dict]) -> tuple[list[np.ndarray], dict[int, tuple]]:
    """(per block, a lookup from its ids to the result's, numbered 1.. in the order they first
    appear in the blocks' own slices; per result id, where it was first found and its scores)."""
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def root(x):
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    for k in range(len(blocks) - 1):
        a, b = blocks[k], blocks[k + 1]
        if a.stop <= b.start:
            continue
        la = block_labels(done[k])[b.start - a.start:a.stop - a.start]
        lb = block_labels(done[k + 1])[:a.stop - b.start]
        for x, y in same_objects(la, lb):
            ra, rb = root((k, x)), root((k + 1, y))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    final: dict[tuple[int, int], int] = {}
    luts = []
    for k, blk in enumerate(blocks):
        labels, lut = block_labels(done[k]), np.zeros(done[k]["top"] + 1, np.uint32)
        present = np.unique(np.concatenate([np.unique(labels[z - blk.start]) for z in filled_core(blk, done[k])]
                                           or [np.zeros(0, np.uint32)]))
        for local in present:
            if local:
                lut[local] = final.setdefault(root((k, int(local))), len(final) + 1)
        luts.append(lut)
    found: dict[int, tuple] = {}
    for k in range(len(blocks)):
        for local, row in done[k]["found"].items():
            i = final.get(root((k, local)))
            if i is not None and (i not in found or row[0] < found[i][0]):
                found[i] = row
    return luts, found


def same_objects(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """(id in ``a``, id in ``b``) of the objects whose IoU over these pixels is above 0.5 (so each
    object has at most one partner)."""
    both = (a > 0) & (b > 0)
    if not both.any():
        return []
    pairs, shared = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
    size_a = dict(zip(*(v.tolist() for v in np.unique(a[a > 0], return_counts=True))))
    size_b = dict(zip(*(v.tolist() for v in np.unique(b[b > 0], return_counts=True))))
    return [(int(x), int(y)) for (x, y), c in zip(pairs.T.tolist(), shared.tolist())
            if c / (size_a[x] + size_b[y] - c) > 0.5]


def assemble(job: Job, shape: tuple[int, ...], blocks: list[Block], done: list[dict], options: AutoOptions,
             started: float | None = None) -> dict:
    """Write the stitched result: the table (and picture), then the labels page by page; the
    blocks' files are removed after. ``started``: ``time.time()`` when the volume was submitted."""
    from ..files import write_csv, write_label_pages

    luts, found = stitch(blocks, done)
    top = max((int(lut.max(initial=0)) for lut in luts), default=0)
    dtype = compact(np.array([top])).dtype
    rows = _table(blocks, done, luts, found, top, shape)

    def pages():
        empty = np.zeros(shape[1:], dtype)
        for k, blk in enumerate(blocks):
            labels, filled = block_labels(done[k]), set(filled_core(blk, done[k]))
            for z in range(blk.core_start, blk.core_stop):
                yield luts[k][labels[z - blk.start]].astype(dtype) if z in filled else empty

    if job.overlay is not None:  # the middle slice, as for a whole volume
        middle = shape[0] // 2
        k, blk = next((k, b) for k, b in enumerate(blocks) if b.core_start <= middle < b.core_stop)
        labels = luts[k][block_labels(done[k])[middle - blk.start]]
        write_picture(job, Layout("image", np.asarray(read_input(job.source)[middle]), shape[1:]), labels,
                      channel=options.channel)
    write_csv(job.table, *table_rows(rows, "volume"))
    write_label_pages(job.labels, pages(), shape, dtype)
    shutil.rmtree(scratch_folder(job), ignore_errors=True)
    return {"path": str(job.source), "kind": "volume", "status": "segmented", "outputs": job.outputs,
            "objects": len(rows), "seconds": round(time.time() - started, 3) if started else 0.0,
            "blocks": len(blocks)}


def _table(blocks, done, luts, found, top, shape) -> list[dict]:
    """The rows a whole-volume run writes, gathered block by block."""
    voxels = np.zeros(top + 1, np.int64)
    sums = np.zeros((top + 1, 3))
    low = np.full((top + 1, 3), np.iinfo(np.int64).max)
    high = np.full((top + 1, 3), -1)
    rows_, cols_ = np.indices(shape[1:3], dtype=np.float64)
    for k, blk in enumerate(blocks):
        labels = block_labels(done[k])
        for z in filled_core(blk, done[k]):
            page = luts[k][labels[z - blk.start]]
            flat = page.ravel()
            count = np.bincount(flat, minlength=top + 1)
            voxels += count
            sums[:, 0] += count * z
            sums[:, 1] += np.bincount(flat, weights=rows_.ravel(), minlength=top + 1)
            sums[:, 2] += np.bincount(flat, weights=cols_.ravel(), minlength=top + 1)
            boxes = ndimage.find_objects(page, max_label=top)
            for i in np.flatnonzero(count[1:]) + 1:
                rows, cols = boxes[i - 1]
                low[i] = np.minimum(low[i], (z, rows.start, cols.start))
                high[i] = np.maximum(high[i], (z, rows.stop - 1, cols.stop - 1))
    table = []
    for i in range(1, top + 1):
        where, iou, stability = found[i]
        table.append({"id": i, "voxels": int(voxels[i]),
                      "bbox": tuple(int(v) for v in low[i]) + tuple(int(v) for v in high[i]),
                      "centroid": tuple(round(float(s / voxels[i]), 2) for s in sums[i]),
                      "first_slice": int(low[i][0]), "last_slice": int(high[i][0]), "found_on_slice": where,
                      "predicted_iou": iou, "stability": stability})
    return table


"""Annotated pairs -> 2D examples (an image, a slice of a volume, or a tile of an image) and the
held-out split.

The split is by *unit*, never by pixel: a unit is a whole 2D image, a block of consecutive slices of
a volume, or, when there are too few images to hold one out, a tile of an image (a quarter, encoded
with the rest of the image blanked so that no held-out pixel is ever seen in training, at the
image's own scale; objects the tile's edges cut are left out). Slices next to a held-out block are left out of training (the next slice of a
volume is nearly the same picture).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..engine.preprocess import as_2d_channels, intensity_window

#: Objects smaller than this many pixels (per 2D example) are not used.
MIN_AREA = 9
#: At most this many blocks of slices per volume.
MAX_BLOCKS = 8
#: Fewer units than this and 2D images are cut into 2 x 2 tiles.
MIN_UNITS = 4
TOO_LITTLE = ("Fine-tuning needs annotated objects in at least two separate parts of the data (two images, "
              "two blocks of slices of a volume, or two quarters of an image) so that one can be held out to "
              "measure the result honestly; {found}. Annotate more objects or another image.")


@dataclass
class Source:
    """One pair as given: an image or volume, its labels, and where it came from."""

    image: np.ndarray
    labels: np.ndarray
    name: str
    volume: bool
    axis: int = 0
    file: str | None = None


@dataclass
class Example:
    """One 2D picture and its objects.

    ``image`` is what the encoder sees (H x W or H x W x C; a tile keeps the whole frame with the
    other tiles blanked); ``labels`` (H x W) holds only this example's objects; ``ids`` their label
    ids; ``window`` the intensity window of its image or volume.
    """

    image: np.ndarray | None
    labels: np.ndarray
    ids: np.ndarray
    name: str
    source: int
    unit: int
    window: tuple[float, float]
    slice_index: int | None = None
    held_out: bool = False


@dataclass
class Split:
    """The examples of a fine-tuning run, each marked ``held_out`` or not, and how they were cut."""

    examples: list[Example]
    sources: list[Source]
    units: int
    held_units: list[int]
    how: str
    dropped_guard: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def train(self) -> list[Example]:
        return [e for e in self.examples if not e.held_out]

    @property
    def held(self) -> list[Example]:
        return [e for e in self.examples if e.held_out]

    def summary(self) -> dict:
        """Counts and file names, for the checkpoint and the report."""
        n_obj = lambda xs: int(sum(len(e.ids) for e in xs))  # noqa: E731
        return {"pairs": len(self.sources), "images": sum(not s.volume for s in self.sources),
                "volumes": sum(s.volume for s in self.sources),
                "files": [s.file for s in self.sources if s.file],
                "train_examples": len(self.train), "held_out_examples": len(self.held),
                "train_objects": n_obj(self.train), "held_out_objects": n_obj(self.held),
                "units": self.units, "held_out_units": len(self.held_units), "split": self.how,
                "guard_slices_left_out": self.dropped_guard}


def _read(item, what: str, index: int) -> tuple[np.ndarray, str | None]:
    if isinstance(item, (str, os.PathLike)):
        from ..files import read_image  # files sits beside the engine; only needed for paths

        return np.asarray(read_image(item)), Path(item).name
    if hasattr(item, "shape") and hasattr(item, "__array__"):
        return np.asarray(item), None
    raise TypeError(f"pair {index}: the {what} must be a numpy array or a file path, got {type(item).__name__}")


def _labels(raw: np.ndarray, who: str) -> np.ndarray:
    if raw.dtype == bool:
        return raw.astype(np.int32)
    if raw.dtype.kind == "f" and np.isfinite(raw).all() and (raw == np.round(raw)).all():
        raw = raw.astype(np.int64)
    if raw.dtype.kind not in "iu":
        raise ValueError(f"{who}: labels must hold whole-number object ids (0 = background), got dtype "
                         f"{raw.dtype}")
    if raw.dtype.kind == "i" and raw.size and raw.min() < 0:
        raise ValueError(f"{who}: labels hold negative ids; use 0 for background and 1, 2, ... for objects")
    return raw


def read_pairs(pairs, axis: int = 0) -> list[Source]:
    """``pairs`` -> sources: each pair (image or volume, labels), arrays or file paths; a 2D image
    (H x W, or H x W x C) with H x W labels, or a volume (3D, or 4D channels last) with 3D labels
    whose slices along ``axis`` are the examples."""
    if isinstance(pairs, tuple) and len(pairs) == 2 and not isinstance(pairs[0], tuple):
        pairs = [pairs]  # one pair given bare
    try:
        pairs = list(pairs)
    except TypeError:
        raise TypeError("pairs must be a list of (image, labels) pairs (arrays or file paths)") from None
    if not pairs:
        raise ValueError(TOO_LITTLE.format(found="no pairs were given"))
    sources = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"pair {i} must be (image, labels), got {type(pair).__name__}")
        image, name = _read(pair[0], "image", i)
        labels, label_name = _read(pair[1], "labels", i)
        files = " with ".join(n for n in (name, label_name) if n)
        who = files or f"pair {i}"  # the files by name, as the user knows them
        labels = _labels(labels, who)
        if labels.ndim == 2 and image.shape[:2] == labels.shape and image.ndim in (2, 3):
            sources.append(Source(image, labels, name or f"pair {i}", False, file=name))
        elif labels.ndim == 3 and image.shape[:3] == labels.shape and image.ndim in (3, 4):
            if not -3 <= axis < 3:
                raise ValueError(f"axis must be 0, 1 or 2 (the axis of the volume's slices), got {axis}")
            sources.append(Source(image, labels, name or f"pair {i}", True, axis % 3, file=name))
        else:
            raise ValueError(f"{who}: image of shape {image.shape} and labels of shape {labels.shape} do not "
                             "match; give a 2D image (H x W or H x W x C) with H x W labels, or a volume (Z x Y x X, "
                             "or with channels last) with Z x Y x X labels")
    return sources


def _objects(labels: np.ndarray, min_area: int) -> np.ndarray:
    """The ids of the objects with at least ``min_area`` pixels spanning at least 3 rows and 3
    columns (a sliver left by a tile's edge is no object to prompt)."""
    ids, counts = np.unique(labels, return_counts=True)
    ids = ids[(ids != 0) & (counts >= min_area)]
    if not len(ids):
        return ids
    small = np.zeros(int(ids.max()) + 1, np.int64)
    small[ids] = np.arange(1, len(ids) + 1)
    boxes = ndi.find_objects(np.where(labels <= ids.max(), small[np.minimum(labels, ids.max())], 0))
    wide = [b is not None and b[0].stop - b[0].start >= 3 and b[1].stop - b[1].start >= 3 for b in boxes]
    return ids[np.array(wide, bool)]


def _window(image: np.ndarray) -> tuple[float, float]:
    return tuple(float(v) for v in intensity_window(as_2d_channels(image)))


def _tiles(shape: tuple[int, int]) -> list[tuple[slice, slice]]:
    h, w = shape
    rows = [slice(0, h // 2), slice(h // 2, h)]
    cols = [slice(0, w // 2), slice(w // 2, w)]
    return [(r, c) for r in rows for c in cols]


def make_examples(sources: list[Source], min_area: int = MIN_AREA) -> tuple[list[Example], int, str]:
    """Sources -> (examples with their unit numbers, number of units, how they were cut)."""
    images = [i for i, s in enumerate(sources) if not s.volume and len(_objects(s.labels, min_area))]
    blocks = {}
    for i, s in enumerate(sources):
        if s.volume:
            labelled = [z for z in range(s.labels.shape[s.axis])
                        if len(_objects(np.take(s.labels, z, axis=s.axis), min_area))]
            if labelled:
                blocks[i] = [list(b) for b in np.array_split(labelled, min(len(labelled), MAX_BLOCKS))]
    tile = len(images) + sum(len(b) for b in blocks.values()) < MIN_UNITS and bool(images)
    examples, unit = [], 0
    for i, s in enumerate(sources):
        if not s.volume and i in images:
            window = _window(s.image)
            if not tile:
                examples.append(Example(s.image, s.labels, _objects(s.labels, min_area), s.name, i, unit, window))
                unit += 1
                continue
            for k, (rs, cs) in enumerate(_tiles(s.labels.shape)):
                inside = np.zeros(s.labels.shape, bool)
                inside[rs, cs] = True
                cut = np.unique(s.labels[~inside])  # objects crossing the tile's edge: not whole objects
                labels = np.where(inside & ~np.isin(s.labels, cut[cut > 0]), s.labels, 0)
                ids = _objects(labels, min_area)
                if not len(ids):
                    continue
                image = s.image.copy()
                image[~inside] = np.asarray(window[0]).astype(image.dtype)  # blank: the window's low end
                examples.append(Example(image, labels, ids, f"{s.name} quarter {k + 1}/4", i, unit, window))
                unit += 1
        for block in blocks.get(i, ()):
            for z in block:
                labels = np.take(s.labels, z, axis=s.axis)
                examples.append(Example(None, labels, _objects(labels, min_area), f"{s.name} slice {z}", i, unit,
                                        (0.0, 0.0), slice_index=int(z)))
            unit += 1
    how = ("by image" if not blocks else "by image and by block of slices" if images else "by block of slices")
    if tile:
        how = "by quarter of each image (too few images to hold a whole one out)" + ("" if not blocks else
                                                                                    " and by block of slices")
    return examples, unit, how


def split(pairs, *, axis: int = 0, held_out: float = 0.25, seed: int = 0, min_area: int = MIN_AREA,
          sources: list[Source] | None = None) -> Split:
    """Read ``pairs`` and hold out about ``held_out`` of the units (at least one, and at least one
    kept for training), chosen at random with ``seed``.

    Raises
    ------
    ValueError
        With a sentence when there is too little data to hold anything out.
    """
    if not (isinstance(held_out, (int, float)) and 0 < held_out < 1):
        raise ValueError(f"held_out must be a fraction between 0 and 1 (e.g. 0.25), got {held_out!r}")
    sources = read_pairs(pairs, axis) if sources is None else sources
    examples, units, how = make_examples(sources, min_area)
    if units < 2:
        found = ("no labelled object was found" if not examples else
                 "all annotated objects are in one part")
        raise ValueError(TOO_LITTLE.format(found=found))
    n_held = min(max(1, int(round(held_out * units))), units - 1)
    held = sorted(int(u) for u in np.random.default_rng(seed).permutation(units)[:n_held])
    for e in examples:
        e.held_out = e.unit in held
    # a slice next to a held-out slice of the same volume is nearly that slice: leave it out of training
    near = {(e.source, e.slice_index + d) for e in examples if e.held_out and e.slice_index is not None
            for d in (-1, 1)}
    kept = [e for e in examples if e.held_out or (e.source, e.slice_index) not in near]
    dropped = len(examples) - len(kept)
    if not any(not e.held_out for e in kept):
        kept, dropped = examples, 0
    return Split(kept, sources, units, held, how, dropped)

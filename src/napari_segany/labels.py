"""Committing masks into label arrays: which id, and which pixels may change."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Commit:
    """What a commit did: the id written, and where (to undo or save it)."""

    label_id: int
    index: tuple[np.ndarray, ...]  # coordinates of the pixels that changed
    previous: np.ndarray  # their values before the commit
    written: np.ndarray | None = None  # their values after it

    @property
    def n_pixels(self) -> int:
        return int(self.previous.size)

    def undo(self, labels: np.ndarray) -> None:
        """Restore the pixels this commit changed. Refused (ValueError, nothing changed) when a
        later change touched them: undo that one first, or its pixels would be lost."""
        if self.written is not None and not np.array_equal(labels[self.index], self.written):
            raise ValueError(f"the pixels of this commit (label {self.label_id}) were changed after it; undo the "
                             "later commits first (undoing this one now would erase what they wrote)")
        labels[self.index] = self.previous


def next_label_id(labels: np.ndarray) -> int:
    """max + 1 (1 for an empty array); ValueError when the dtype cannot hold it."""
    top = int(labels.max()) if labels.size else 0
    if top < 0:  # max + 1 would be 0, the background, or a negative id
        raise ValueError(f"the labels array holds only negative values (largest {top}); labels use 0 for "
                         "background and positive ids for objects: pass label_id=, or set the negative values "
                         "to 0 first (labels[labels < 0] = 0)")
    new = top + 1
    if np.issubdtype(labels.dtype, np.integer) and new > np.iinfo(labels.dtype).max:
        raise ValueError(
            f"the labels array ({labels.dtype}) is full: id {new} does not fit; "
            "convert it to a wider integer type (e.g. uint32) first"
        )
    return new


def commit_mask(
    labels: np.ndarray,
    mask: np.ndarray,
    label_id: int | None = None,
    *,
    overwrite: bool = False,
    replace: bool = False,
) -> Commit:
    """Write ``mask`` into ``labels`` in place as object ``label_id``.

    Parameters
    ----------
    labels : integer ndarray, modified in place
    mask : bool ndarray of the same shape
    label_id : int, optional
        Defaults to a new id (max + 1).
    overwrite : bool
        If False (default), pixels that belong to other objects keep their id.
    replace : bool
        If True, pixels of ``label_id`` outside ``mask`` become background, so
        the object is exactly the mask (editing an existing object).

    Returns
    -------
    Commit
        The id and the changed pixels with their previous values.
    """
    if not isinstance(labels, np.ndarray):  # it is changed in place: a copy would be lost
        raise TypeError(f"labels must be a numpy integer array (it is changed in place), got {type(labels).__name__}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be an integer array, got {labels.dtype}")
    mask = np.asarray(mask)
    if mask.shape != labels.shape:
        raise ValueError(f"mask shape {mask.shape} does not match labels shape {labels.shape}")
    if mask.dtype != bool:
        if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
            raise TypeError(f"mask must be a boolean array, got {mask.dtype}")
        if not np.isin(mask, (0, 1)).all():  # NaN, logits or probabilities would write every pixel
            raise ValueError("mask must hold only 0/1 (or True/False); threshold logits or probabilities "
                             "first, e.g. mask = logits > 0")
        mask = mask.astype(bool)
    if label_id is None:
        label_id = next_label_id(labels)
    if isinstance(label_id, bool) or not float(label_id).is_integer():
        raise ValueError(f"label_id must be a whole number, got {label_id!r}")
    label_id = int(label_id)
    if label_id <= 0:
        raise ValueError(f"label_id must be a positive integer, got {label_id} (0 is background)")
    if np.issubdtype(labels.dtype, np.integer) and label_id > np.iinfo(labels.dtype).max:
        raise ValueError(f"label_id {label_id} does not fit in a {labels.dtype} labels array")
    target = mask & (labels != label_id)
    if not overwrite:
        target &= labels == 0
    if replace:
        target |= (labels == label_id) & ~mask
    index = np.nonzero(target)
    previous = labels[index]  # fancy indexing copies
    written = np.where(mask[index], label_id, 0).astype(labels.dtype)
    labels[index] = written
    return Commit(label_id, index, previous, written)

"""Committing the chosen mask into a napari Labels layer as one undoable step,
and saving the labels next to the image afterwards.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..labels import Commit, commit_mask
from .geometry import Plane, layer_array

LABELS_DTYPE = np.uint32


def new_labels_data(image_layer) -> np.ndarray:
    """Zeros shaped like ``image_layer`` (without its RGB axis)."""
    shape = layer_array(image_layer).shape[: image_layer.ndim]
    return np.zeros(shape, dtype=LABELS_DTYPE)


def fits_image(labels_layer, image_layer) -> bool:
    """Whether ``labels_layer`` has the shape of ``image_layer``'s data (without colour)."""
    return tuple(labels_layer.data.shape) == tuple(layer_array(image_layer).shape[: image_layer.ndim])


def check_target(labels_layer, image_layer) -> None:
    """ValueError with advice when ``labels_layer`` cannot receive masks of ``image_layer``."""
    want = tuple(layer_array(image_layer).shape[: image_layer.ndim])
    got = tuple(labels_layer.data.shape)
    if got != want:
        raise ValueError(
            f"The labels layer '{labels_layer.name}' has shape {got} but the image "
            f"'{image_layer.name}' has shape {want}. Pick a labels layer of the same shape, "
            "or choose '(new labels layer)' as the target."
        )
    if not isinstance(labels_layer.data, np.ndarray):
        raise ValueError(
            f"The labels layer '{labels_layer.name}' is not held in memory "
            f"({type(labels_layer.data).__name__}); convert it to a numpy array "
            "(e.g. layer.data = np.asarray(layer.data)) or use a new labels layer."
        )


def commit_to_layer(
    labels_layer,
    plane: Plane,
    mask2d: np.ndarray,
    label_id: int | None = None,
    *,
    overwrite: bool = False,
    replace: bool = False,
) -> Commit:
    """Write ``mask2d`` into ``plane`` of ``labels_layer`` as a single undo step.

    The id and overlap policy are those of :func:`napari_segany.labels.commit_mask`
    (new id = max + 1 over the whole layer; other objects kept unless
    ``overwrite``). The change goes through ``Labels.data_setitem`` inside
    ``block_history``, so Ctrl+Z restores exactly the previous array.

    Returns the :class:`~napari_segany.labels.Commit` with 2D indices.
    """
    data = labels_layer.data
    if label_id is None:
        from ..labels import next_label_id

        label_id = next_label_id(data)  # max over the whole volume, not only this slice
    work = np.array(plane.extract(data))  # a copy, rows first
    commit = commit_mask(work, mask2d, label_id, overwrite=overwrite, replace=replace)
    if commit.n_pixels:
        index = plane.nd_indices(*commit.index)
        values = work[commit.index]
        with labels_layer.block_history():
            labels_layer.data_setitem(index, values)
    return commit


def label_mask(labels_layer, plane: Plane, label_id: int) -> np.ndarray:
    """(H, W) bool: where ``label_id`` is on ``plane`` of ``labels_layer``."""
    return plane.extract(labels_layer.data) == label_id


def layer_file(layer) -> Path | None:
    """The file a layer was read from, if any."""
    source = getattr(layer, "source", None)
    path = getattr(source, "path", None)
    return Path(path) if path else None


def autosave_path(image_layer, labels_layer) -> Path | None:
    """``<image folder>/<image stem>.<labels name>.tif``, or None when the image has no file.

    Never the image file itself nor the file the labels were read from.
    """
    image_file = layer_file(image_layer)
    if image_file is None:
        return None
    stem = image_file.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".zarr", ".png", ".jpg", ".nii.gz", ".nii"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        stem = image_file.stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", labels_layer.name).strip("._") or "labels"
    path = image_file.with_name(f"{stem}.{name}.tif")
    protected = {image_file.resolve()}
    labels_file = layer_file(labels_layer)
    if labels_file is not None:
        protected.add(labels_file.resolve())
    if path.resolve() in protected:
        path = image_file.with_name(f"{stem}.{name}.segany.tif")
    return path

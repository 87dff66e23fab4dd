"""Which 2D plane of an image layer is on screen, and how world coordinates map onto it.

Everything here works on napari layer objects but needs no Qt. A :class:`Plane`
names the two data axes shown as rows and columns and the integer index of
every other data axis (the slider positions), so that a 2D mask can be written
back into exactly that slice of an nD array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Plane:
    """One 2D slice of an nD layer.

    Attributes
    ----------
    row_axis, col_axis : int
        Data axes shown vertically and horizontally (col_axis may be < row_axis
        when the user transposed the view).
    fixed : tuple of (axis, index)
        Every other (non-RGB) data axis and its slider position.
    shape : tuple of int
        The layer's data shape without an RGB(A) channel axis.
    rgb : bool
        Whether the data has a trailing colour axis.
    """

    row_axis: int
    col_axis: int
    fixed: tuple[tuple[int, int], ...]
    shape: tuple[int, ...]
    rgb: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the 2D slice."""
        return self.shape[self.row_axis], self.shape[self.col_axis]

    @property
    def key(self) -> tuple:
        """Hashable identity of the slice (used to key embeddings)."""
        return (self.row_axis, self.col_axis, self.fixed)

    def index(self) -> tuple:
        """Index into the (non-RGB part of the) data that selects this slice."""
        idx: list = [slice(None)] * len(self.shape)
        for axis, i in self.fixed:
            idx[axis] = i
        return tuple(idx)

    def extract(self, data) -> np.ndarray:
        """The slice as (H, W) or (H, W, C) numpy array, rows first."""
        out = np.asarray(data[self.index()])
        if self.row_axis > self.col_axis:  # transposed view
            out = np.swapaxes(out, 0, 1)
        return out

    def nd_indices(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, ...]:
        """Full-dimensional fancy index for pixels (rows, cols) of this slice."""
        out: list = [None] * len(self.shape)
        out[self.row_axis] = np.asarray(rows, dtype=np.intp)
        out[self.col_axis] = np.asarray(cols, dtype=np.intp)
        for axis, i in self.fixed:
            out[axis] = np.full(len(out[self.row_axis]), i, dtype=np.intp)
        return tuple(out)

    def on_plane(self, coords: np.ndarray) -> np.ndarray:
        """(N,) bool: which (N, ndim) data coordinates lie on this slice."""
        coords = np.atleast_2d(coords)
        keep = np.ones(len(coords), dtype=bool)
        for axis, i in self.fixed:
            keep &= np.round(coords[:, axis]) == i
        return keep

    def to_rowcol(self, coords: np.ndarray) -> np.ndarray:
        """(N, 2) (row, col) of (N, ndim) data coordinates."""
        coords = np.atleast_2d(coords)
        return np.stack([coords[:, self.row_axis], coords[:, self.col_axis]], axis=1)


def layer_array(layer):
    """The layer's full-resolution array (level 0 of a multiscale image)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def current_plane(viewer, layer) -> Plane | None:
    """The slice of ``layer`` shown in ``viewer``, or None if none is (3D view,
    slider outside the layer, or a layer with fewer than 2 spatial axes)."""
    if viewer.dims.ndisplay != 2:
        return None
    ndim = layer.ndim  # excludes the RGB axis
    offset = viewer.dims.ndim - ndim
    rows_w, cols_w = viewer.dims.displayed[-2:]
    row_axis, col_axis = rows_w - offset, cols_w - offset
    if row_axis < 0 or col_axis < 0:
        return None
    rgb = bool(getattr(layer, "rgb", False))
    shape = tuple(int(s) for s in layer_array(layer).shape[:ndim])
    point = np.asarray(viewer.dims.point[offset:], dtype=float)
    data_pos = np.asarray(layer.world_to_data(point), dtype=float)
    fixed = []
    for axis in range(ndim):
        if axis in (row_axis, col_axis):
            continue
        i = int(np.round(data_pos[axis]))
        if not 0 <= i < shape[axis]:
            return None
        fixed.append((axis, i))
    return Plane(row_axis, col_axis, tuple(fixed), shape, rgb)


def layer_to_image_coords(src_layer, image_layer, data: np.ndarray) -> np.ndarray:
    """Map (N, src.ndim) data coordinates of ``src_layer`` to (N, image.ndim)
    data coordinates of ``image_layer`` through world coordinates (scale,
    translate, rotation... of both layers are honoured)."""
    data = np.atleast_2d(np.asarray(data, dtype=float))
    if len(data) == 0:
        return np.zeros((0, image_layer.ndim))
    world = np.array([src_layer.data_to_world(p) for p in data])
    nd = image_layer.ndim
    if world.shape[1] < nd:  # a lower-dimensional prompt layer: pad leading axes with the slider
        raise ValueError("the prompt layer has fewer dimensions than the image; recreate the prompt layers")
    return np.array([image_layer.world_to_data(w[-nd:]) for w in world])


def preview_placement(plane: Plane, image_layer) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(scale, translate) that put a layer of shape ``plane.preview_shape`` on the
    slice of ``image_layer`` (only axis-aligned scale/translate are honoured)."""
    scale = tuple(float(s) for s in image_layer.scale)
    translate = list(float(t) for t in image_layer.translate)
    for axis, i in plane.fixed:
        translate[axis] += i * scale[axis]
    return scale, tuple(translate)


def preview_array(plane: Plane, mask2d: np.ndarray) -> np.ndarray:
    """``mask2d`` (H, W) as an nD array with length-1 axes at the fixed axes."""
    m = mask2d.T if plane.row_axis > plane.col_axis else mask2d
    shape = [1] * len(plane.shape)
    shape[plane.row_axis] = plane.shape[plane.row_axis]
    shape[plane.col_axis] = plane.shape[plane.col_axis]
    return np.ascontiguousarray(m).reshape(shape)

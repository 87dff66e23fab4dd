"""Zarr arrays as inputs, read lazily: a plain zarr array (format 2 or 3), or an OME-Zarr image
(its full-resolution level, the first dataset of its multiscales: "0" as written by the usual
tools), with OME's (t, c, z, y, x) order turned into ours: (Z, Y, X) or (Z, Y, X, C), a single time
point and a single channel dropped. Nothing is read until the pixels are indexed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_MARKERS = ("zarr.json", ".zarray", ".zgroup")  # format 3; format 2 array and group


def is_zarr(path: Path) -> bool:
    """A folder that holds a zarr array or group."""
    return path.is_dir() and any((path / m).is_file() for m in _MARKERS)


def open_zarr(path: Path) -> "AxesView":
    """The array at ``path`` (read only), as a lazy array in our axis order."""
    import zarr

    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as err:  # noqa: BLE001 - the reader's own exception types vary by format
        raise ValueError(f"{str(path)!r} could not be opened as a zarr array ({type(err).__name__}: {err}); "
                         "check that it is a complete zarr array or OME-Zarr image") from err
    if isinstance(node, zarr.Array):
        return AxesView(node, [None] * node.ndim, path)
    attrs = node.attrs.asdict()
    multiscales = attrs.get("ome", attrs).get("multiscales")  # OME-Zarr 0.5 nests its metadata under "ome"
    if multiscales:
        level = str(multiscales[0]["datasets"][0]["path"])
        axes = multiscales[0].get("axes")
    else:
        level, axes = "0", None
    try:
        array = node[level]
    except KeyError:
        arrays = sorted(name for name, _ in node.arrays())
        raise ValueError(f"{str(path)!r} is a zarr group without the array {level!r} (it holds "
                         f"{arrays or 'no arrays'}); name the array's folder instead, e.g. {str(path / level)!r}")
    if not isinstance(array, zarr.Array):
        raise ValueError(f"{str(path / level)!r} is a zarr group, not an array; name the array's folder")
    kinds = [_axis_kind(a) for a in axes] if axes else [None] * array.ndim
    if len(kinds) != array.ndim:
        raise ValueError(f"{str(path)!r}: its metadata names {len(kinds)} axes but the array {level!r} has "
                         f"{array.ndim}; the OME-Zarr metadata does not fit its data")
    return AxesView(array, kinds, path)


def _axis_kind(axis) -> str | None:
    if isinstance(axis, dict):
        kind, name = axis.get("type"), str(axis.get("name", "")).lower()
    else:  # OME-Zarr 0.3: names only
        kind, name = None, str(axis).lower()
    if kind in ("time", "channel", "space"):
        return kind
    return {"t": "time", "c": "channel"}.get(name, "space")


class AxesView:
    """A zarr array seen in our axis order: a time or channel axis of length 1 is dropped, a
    channel axis with several channels is moved last; more than one time point is refused.
    ``shape``, ``ndim``, ``dtype``; indexing with integers and slices (and ``...``) reads
    only what it names; ``np.asarray`` reads it all."""

    def __init__(self, array, kinds: list[str | None], path: Path):
        self._array, self.path = array, path
        fixed: dict[int, int] = {}
        order = [i for i, k in enumerate(kinds) if k not in ("time", "channel")]
        for i, k in enumerate(kinds):
            if k == "time" and array.shape[i] > 1:
                raise ValueError(f"{str(path)!r} holds {array.shape[i]} time points; auto segments one image or "
                                 "volume per input: write each time point to its own array")
            if k in ("time", "channel") and array.shape[i] == 1:
                fixed[i] = 0
            elif k == "channel":
                order.append(i)  # channels last
        if sum(k == "channel" and array.shape[i] > 1 for i, k in enumerate(kinds)) > 1:
            raise ValueError(f"{str(path)!r} has more than one channel axis; write one channel axis")
        self._fixed, self._order = fixed, order
        self.shape = tuple(int(array.shape[i]) for i in order)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(array.dtype)
        self.size = int(np.prod(self.shape))

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1:]
        if len(key) > self.ndim or not all(isinstance(k, (slice, int, np.integer)) for k in key):
            raise IndexError(f"a zarr input is indexed with integers and slices over its {self.ndim} axes, got {key!r}")
        key = key + (slice(None),) * (self.ndim - len(key))
        base: list = [slice(None)] * self._array.ndim
        for i, k in self._fixed.items():
            base[i] = k
        for view_axis, array_axis in enumerate(self._order):
            base[array_axis] = key[view_axis]
        data = np.asarray(self._array[tuple(base)])
        kept = [a for v, a in enumerate(self._order) if not isinstance(key[v], (int, np.integer))]
        return data.transpose(np.argsort(np.argsort(kept))) if kept != sorted(kept) else data

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        data = self[...]
        return data if dtype is None else data.astype(dtype, copy=False)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<zarr input {str(self.path)!r} shape={self.shape} dtype={self.dtype}>"

"""Layers by identity: the widget opened from napari's Plugins menu gets napari's public proxy of
the viewer, which hands out a new proxy object for a layer each time (and events carry the layer
itself), so layers are told apart by their ``unique_id``, never by ``is``."""

from __future__ import annotations


def layer_id(layer) -> str | None:
    return None if layer is None else layer.unique_id


def same_layer(a, b) -> bool:
    """True when ``a`` and ``b`` are the same layer (either may be a proxy); False if one is None."""
    return a is not None and b is not None and a.unique_id == b.unique_id


def find_layer(viewer, uid: str | None):
    """The layer of ``viewer`` with this ``unique_id``, or None when it is no longer there."""
    if uid is None:
        return None
    return next((lay for lay in viewer.layers if lay.unique_id == uid), None)


def has_layer(viewer, layer) -> bool:
    return layer is not None and find_layer(viewer, layer.unique_id) is not None

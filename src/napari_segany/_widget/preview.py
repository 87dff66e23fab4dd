"""The preview layer: the chosen candidate mask drawn over the slice on screen.

It is a Labels layer holding only the current slice (length-1 axes elsewhere),
placed on that slice with the image's scale and translate, so it costs the
memory of one 2D slice whatever the size of the volume.
"""

from __future__ import annotations

import numpy as np
from napari.utils.colormaps import DirectLabelColormap

from .geometry import Plane, preview_array, preview_placement
from .layers import has_layer
from .prompts import BOX_COLOR, NEGATIVE_COLOR, POSITIVE_COLOR, ROLE

# Candidate preview colours: saturated, and far from the prompts' colours (the
# preview is drawn under the points and the box, which must stay visible on it).
PALETTE = ("#0060ff", "#00ff9f", "#ff8c00", "#ff0000", "#00e5ff", "#0000ff", "#a000ff", "#ff00ff",
           "#b4ff00", "#ff6f9f", "#00a050", "#00ffff")
DEFAULT_AVOID_IDS = 10  # a new labels layer: the colours napari gives its first objects


def hex_rgb(color: str) -> np.ndarray:
    """RGB in 0-1 of a "#rrggbb" colour."""
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float64) / 255.0


_PROMPT_RGB = np.stack([hex_rgb(c) for c in (POSITIVE_COLOR, NEGATIVE_COLOR, BOX_COLOR)])


def pick_color(avoid_rgb) -> str:
    """The colour of :data:`PALETTE` farthest (RGB distance) from every colour of
    ``avoid_rgb`` (N x 3 or N x 4 floats in 0-1) and from the prompts' colours."""
    avoid = np.asarray(avoid_rgb, dtype=np.float64)
    avoid = avoid.reshape(-1, avoid.shape[-1])[:, :3] if avoid.size else np.zeros((0, 3))
    avoid = np.concatenate([avoid, _PROMPT_RGB])
    return max(PALETTE, key=lambda c: float(np.linalg.norm(avoid - hex_rgb(c), axis=1).min()))


def label_colors(labels_layer, ids) -> np.ndarray:
    """(N, 3) colours that ``labels_layer`` draws the label ``ids`` with."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0:
        return np.zeros((0, 3))
    try:
        return np.asarray(labels_layer.colormap.map(ids), dtype=np.float64)[:, :3]
    except (AttributeError, TypeError, ValueError):  # a colormap without a vectorised map
        return np.array([labels_layer.get_color(int(i))[:3] for i in ids], dtype=np.float64)


def default_color() -> str:
    """The preview colour for a new labels layer: far from napari's colours of its first ids."""
    from napari.utils.colormaps import label_colormap

    return pick_color(label_colormap(49, 0.5, background_value=0).map(np.arange(1, DEFAULT_AVOID_IDS + 1)))


PREVIEW_COLOR = default_color()


class PreviewLayer:
    def __init__(self, viewer) -> None:
        self.viewer = viewer
        self.layer = None
        self.color = PREVIEW_COLOR

    def _ensure(self, plane: Plane, image_layer, data: np.ndarray):
        layer = self.layer if has_layer(self.viewer, self.layer) else self._adopt()
        scale, translate = preview_placement(plane, image_layer)
        if layer is not None and layer.ndim != data.ndim:
            self.viewer.layers.remove(layer)
            layer = None
        if layer is None:
            active = self.viewer.layers.selection.active
            layer = self.viewer.add_labels(
                data, name="SAM preview", scale=scale, translate=translate, opacity=0.55,
                colormap=self._colormap(),
                metadata={ROLE: "preview"},
            )
            # keep the preview just under the prompt layers, over the image and labels
            layers = self.viewer.layers
            prompts = [i for i, lay in enumerate(layers) if lay.metadata.get(ROLE) in ("points", "boxes")]
            if prompts:
                layers.move(layers.index(layer), min(prompts))
            if has_layer(self.viewer, active):
                self.viewer.layers.selection.active = active
            self.layer = layer
        else:
            # setting scale/translate/data makes napari recompute the scene extent:
            # do it only when the slice's placement or size changed
            if not (np.allclose(layer.scale, scale) and np.allclose(layer.translate, translate)):
                layer.scale, layer.translate = scale, translate
            if layer.data.shape == data.shape and layer.data.dtype == data.dtype:
                np.copyto(layer.data, data)
                layer.refresh()
            else:
                layer.data = data
        if not layer.visible:
            layer.visible = True
        return layer

    def _adopt(self):
        """A preview layer left in the viewer by an earlier widget (found by its role), or None."""
        self.layer = next((lay for lay in self.viewer.layers if lay.metadata.get(ROLE) == "preview"), None)
        if self.layer is not None:
            self.layer.colormap = self._colormap()
        return self.layer

    def _colormap(self) -> DirectLabelColormap:
        return DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: self.color})

    def avoid_labels(self, labels_layer, plane: Plane | None) -> None:
        """Draw the preview in a colour that none of the labels of ``labels_layer`` on
        ``plane`` has, nor the next new id (None: a new layer, napari's first ids)."""
        if labels_layer is None or plane is None:
            colors = None
        else:
            ids = np.unique(np.asarray(plane.extract(labels_layer.data)))
            ids = ids[ids > 0][:512]
            extra = [int(ids.max()) + 1 if len(ids) else 1, int(labels_layer.selected_label)]
            colors = label_colors(labels_layer, np.union1d(ids, [i for i in extra if i > 0]))
        color = PREVIEW_COLOR if colors is None else pick_color(colors)
        if color != self.color:
            self.color = color
            if has_layer(self.viewer, self.layer):
                self.layer.colormap = self._colormap()

    def close(self) -> None:
        """Remove the preview layer (the widget is closing: nothing is pending any more)."""
        layer, self.layer = self.layer, None
        if has_layer(self.viewer, layer):
            self.viewer.layers.remove(layer)

    def show(self, plane: Plane, image_layer, mask2d: np.ndarray) -> None:
        """Draw ``mask2d`` (H, W bool) on ``plane`` of ``image_layer``."""
        self._ensure(plane, image_layer, preview_array(plane, mask2d.astype(np.uint8)))

    def clear(self) -> None:
        layer = self.layer
        if has_layer(self.viewer, layer) and layer.data.any():
            layer.data[...] = 0
            layer.refresh()

    @property
    def mask(self) -> np.ndarray | None:
        """The preview's data (nD, length-1 axes off the slice), or None."""
        layer = self.layer
        if not has_layer(self.viewer, layer):
            return None
        return np.asarray(layer.data)

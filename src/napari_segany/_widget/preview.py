"""The preview layer: the chosen candidate mask drawn over the slice on screen.

It is a Labels layer holding only the current slice (length-1 axes elsewhere),
placed on that slice with the image's scale and translate, so it costs the
memory of one 2D slice whatever the size of the volume.
"""

from __future__ import annotations

import numpy as np
from napari.utils.colormaps import DirectLabelColormap

from .geometry import Plane, preview_array, preview_placement
from .prompts import ROLE

PREVIEW_COLOR = "#00e5ff"


class PreviewLayer:
    def __init__(self, viewer) -> None:
        self.viewer = viewer
        self.layer = None

    def _ensure(self, plane: Plane, image_layer, data: np.ndarray):
        layer = self.layer
        scale, translate = preview_placement(plane, image_layer)
        if layer is not None and (layer not in self.viewer.layers or layer.ndim != data.ndim):
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
            layer = None
        if layer is None:
            active = self.viewer.layers.selection.active
            layer = self.viewer.add_labels(
                data, name="SAM preview", scale=scale, translate=translate, opacity=0.55,
                colormap=DirectLabelColormap(color_dict={None: "transparent", 0: "transparent",
                                                         1: PREVIEW_COLOR}),
                metadata={ROLE: "preview"},
            )
            # keep the preview just under the prompt layers, over the image and labels
            layers = self.viewer.layers
            prompts = [i for i, lay in enumerate(layers) if lay.metadata.get(ROLE) in ("points", "boxes")]
            if prompts:
                layers.move(layers.index(layer), min(prompts))
            if active is not None and active in self.viewer.layers:
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

    def show(self, plane: Plane, image_layer, mask2d: np.ndarray) -> None:
        """Draw ``mask2d`` (H, W bool) on ``plane`` of ``image_layer``."""
        self._ensure(plane, image_layer, preview_array(plane, mask2d.astype(np.uint8)))

    def clear(self) -> None:
        layer = self.layer
        if layer is not None and layer in self.viewer.layers and layer.data.any():
            layer.data[...] = 0
            layer.refresh()

    @property
    def mask(self) -> np.ndarray | None:
        """The preview's data (nD, length-1 axes off the slice), or None."""
        layer = self.layer
        if layer is None or layer not in self.viewer.layers:
            return None
        return np.asarray(layer.data)

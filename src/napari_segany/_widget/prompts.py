"""Prompts live in ordinary napari layers: a Points layer for clicks and a Shapes
layer for boxes. This module creates them to match an image layer, reads the
prompts of the slice on screen (in the image's data coordinates) and edits them
(polarity toggle, clearing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .geometry import Plane, layer_to_image_coords
from .layers import has_layer, same_layer

POSITIVE_COLOR = "#39ff14"  # green: foreground
NEGATIVE_COLOR = "#ff2bd6"  # magenta: background
BOX_COLOR = "#ffd400"
ROLE = "segany_role"


@dataclass
class SlicePrompts:
    """Prompts on one slice, in (row, col) pixels of that slice."""

    points: np.ndarray  # (N, 2)
    labels: np.ndarray  # (N,) 1 positive, 0 negative
    box: tuple[float, float, float, float] | None

    @property
    def empty(self) -> bool:
        return len(self.points) == 0 and self.box is None

    @property
    def signature(self) -> frozenset:
        """Identity of the prompt set, to tell whether prompts were only added."""
        items = {("p", round(float(r), 2), round(float(c), 2), int(lab))
                 for (r, c), lab in zip(self.points, self.labels)}
        if self.box is not None:
            items.add(("b",) + tuple(round(float(v), 2) for v in self.box))
        return frozenset(items)


class PromptLayers:
    """The widget's Points ("SAM points") and Shapes ("SAM boxes") layers.

    ``on_change`` is called (undebounced) after any change of either layer's
    data or of the points' polarity.
    """

    def __init__(self, viewer, on_change: Callable[[], None]) -> None:
        self.viewer = viewer
        self.on_change = on_change
        self.points = None
        self.boxes = None

    # -- creation ---------------------------------------------------------
    def ensure(self, image_layer) -> None:
        """Create (or re-fit) the prompt layers to overlay ``image_layer``."""
        ndim = image_layer.ndim
        scale, translate = tuple(image_layer.scale), tuple(image_layer.translate)
        for attr, make in (("points", self._make_points), ("boxes", self._make_boxes)):
            layer = getattr(self, attr)
            if not has_layer(self.viewer, layer):
                # a layer of an earlier widget of this viewer (closed and opened again) is reused
                layer = next((lay for lay in self.viewer.layers if lay.metadata.get(ROLE) == attr), None)
                if layer is not None:
                    layer.events.data.connect(self._changed)
                setattr(self, attr, layer)
            if layer is not None and layer.ndim != ndim:
                layer.events.data.disconnect(self._changed)
                self.viewer.layers.remove(layer)
                layer = None
            if layer is None:
                layer = make(ndim, scale, translate)
                layer.events.data.connect(self._changed)
                setattr(self, attr, layer)
            else:
                layer.scale, layer.translate = scale, translate
        self.activate_points()

    def close(self) -> None:
        """Stop reacting to the prompt layers (the widget is closing); the layers stay, for the
        next widget of this viewer to reuse."""
        for layer in (self.points, self.boxes):
            if layer is not None:
                layer.events.data.disconnect(self._changed)
        self.on_change = lambda: None

    def _make_points(self, ndim, scale, translate):
        return self.viewer.add_points(
            np.zeros((0, ndim)), ndim=ndim, name="SAM points", scale=scale, translate=translate,
            features={"positive": np.zeros(0, dtype=bool)}, feature_defaults={"positive": True},
            face_color="positive", face_color_cycle={True: POSITIVE_COLOR, False: NEGATIVE_COLOR},
            border_color="white", border_width=0.15, size=8 * float(np.min(scale[-2:])),
            metadata={ROLE: "points"},
        )

    def _make_boxes(self, ndim, scale, translate):
        layer = self.viewer.add_shapes(
            ndim=ndim, name="SAM boxes", scale=scale, translate=translate, edge_color=BOX_COLOR,
            face_color="transparent", edge_width=2 * float(np.min(scale[-2:])), metadata={ROLE: "boxes"},
        )
        return layer

    def activate_points(self) -> None:
        if has_layer(self.viewer, self.points):
            self.viewer.layers.selection.active = self.points
            self.points.mode = "add"

    def layers(self) -> list:
        return [lay for lay in (self.points, self.boxes) if has_layer(self.viewer, lay)]

    def _changed(self, event=None) -> None:
        self.on_change()

    # -- polarity ---------------------------------------------------------
    @property
    def next_positive(self) -> bool:
        if self.points is None:
            return True
        return bool(self.points.feature_defaults["positive"].iloc[0])

    def toggle_polarity(self) -> bool:
        """Flip the polarity of the next point, and of the selected points when the
        layer is in select mode (in add mode the last added point is selected
        too, and flipping it would surprise). Returns the new default."""
        pts = self.points
        if pts is None:
            return True
        new = not self.next_positive
        pts.feature_defaults = {"positive": new}
        selected = sorted(pts.selected_data) if str(pts.mode) == "select" else []
        if selected:
            values = pts.features["positive"].to_numpy().copy()
            values[selected] = ~values[selected]
            pts.features = {"positive": values}
            pts.refresh_colors(update_color_mapping=False)
            self.on_change()
        return new

    # -- reading and clearing ---------------------------------------------
    def read(self, image_layer, plane: Plane) -> SlicePrompts:
        """Prompts that lie on ``plane`` of ``image_layer``, inside the image."""
        h, w = plane.size
        points = np.zeros((0, 2))
        labels = np.zeros(0, dtype=int)
        if self.points is not None and len(self.points.data):
            coords = layer_to_image_coords(self.points, image_layer, self.points.data)
            keep = plane.on_plane(coords)
            rc = plane.to_rowcol(coords)
            keep &= (rc[:, 0] >= -0.5) & (rc[:, 0] <= h - 0.5) & (rc[:, 1] >= -0.5) & (rc[:, 1] <= w - 0.5)
            points = rc[keep]
            labels = self.points.features["positive"].to_numpy()[keep].astype(int)
        box = None
        if self.boxes is not None:
            for data, kind in zip(self.boxes.data, self.boxes.shape_type):
                if kind != "rectangle":
                    continue
                coords = layer_to_image_coords(self.boxes, image_layer, data)
                if not plane.on_plane(coords).all():
                    continue
                rc = plane.to_rowcol(coords)
                r0, c0 = np.clip(rc.min(axis=0), 0, None)
                r1, c1 = np.minimum(rc.max(axis=0), (h - 1, w - 1))
                if r1 > r0 and c1 > c0:
                    box = (float(r0), float(c0), float(r1), float(c1))  # the last one wins
        return SlicePrompts(points, labels, box)

    def clear(self, image_layer, plane: Plane | None) -> None:
        """Remove the prompts on ``plane`` (all prompts when ``plane`` is None)."""
        for layer in self.layers():
            n = len(layer.data)
            if n == 0:
                continue
            if plane is None:
                keep = np.zeros(n, dtype=bool)
            elif same_layer(layer, self.points):
                keep = ~plane.on_plane(layer_to_image_coords(layer, image_layer, layer.data))
            else:
                keep = np.array([not plane.on_plane(layer_to_image_coords(layer, image_layer, d)).all()
                                 for d in layer.data])
            if keep.all():
                continue
            layer.selected_data = set(np.flatnonzero(~keep).tolist())
            layer.remove_selected()

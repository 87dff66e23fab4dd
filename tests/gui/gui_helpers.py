"""Helpers for the napari widget tests (imported by name: a module called
``conftest`` would clash with the other test folders' conftest files)."""

from __future__ import annotations

import numpy as np


def wait_ready(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: widget.state.embedding_ready, timeout=timeout)


def show_target(qtbot, viewer, widget, labels, label_id: int, z: int):
    """``labels`` as the widget's target layer with ``label_id`` selected, slice ``z`` on screen
    and its embedding ready; returns the layer."""
    target = viewer.add_labels(labels.copy(), name="nuclei")
    widget.set_target_layer(target)
    target.selected_label = label_id
    viewer.dims.set_current_step(0, z)
    qtbot.waitUntil(lambda: widget.state.plane is not None and widget.state.plane.fixed == ((0, z),))
    wait_ready(qtbot, widget)
    return target


def wait_prediction(qtbot, widget, timeout=10_000):
    """Wait until the debounced prediction for the current prompts has run."""
    ctrl = widget.controller
    qtbot.waitUntil(lambda: not ctrl._predict_timer.isActive() and ctrl.decoder.idle, timeout=timeout)
    qtbot.wait(1)


def click(layer, world_position):
    """A real mouse click (Qt press and release on the canvas) at ``world_position`` (the displayed
    dims, or all of them) with ``layer`` selected in add mode, so napari's own add-mode handling
    places the point. Returns the point in the layer's data coordinates as placed: a click lands on
    a whole canvas pixel, within half a canvas pixel of ``world_position``."""
    import napari
    from qt_events import click_canvas

    viewer = napari.current_viewer()
    viewer.layers.selection.active = layer
    layer.mode = "add"
    n = len(layer.data)
    click_canvas(viewer, world_position)
    assert len(layer.data) == n + 1, "the click placed no point"
    return np.asarray(layer.data[-1], float)


def press(viewer, key):
    """Press ``key`` on the canvas, as a user would (napari dispatches it to the
    active layer's and the viewer's key bindings)."""
    from qtpy.QtTest import QTest

    canvas = viewer.window._qt_viewer.canvas.native
    QTest.keyClicks(canvas, key)


def predict_calls(predictor):
    """Record the arguments of ``predictor.predict`` calls (the real method runs)."""
    calls = []
    real = predictor.predict

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    predictor.predict = spy
    return calls


def connected(emitter, objects) -> list:
    """The callbacks of napari event ``emitter`` bound to any of ``objects``."""
    found = []
    for cb in emitter.callbacks:
        owner = cb[0]() if isinstance(cb, tuple) else getattr(cb, "__self__", None)
        if any(owner is o for o in objects):
            found.append(cb)
    return found

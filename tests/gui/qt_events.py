"""Real Qt input for the napari widget tests: mouse clicks and key presses on the
vispy canvas, and closing a dock with its own close button, as a user does.

Imported by name (like ``gui_helpers``). The events go through Qt, vispy and
napari's own mouse and key dispatch; nothing in napari is called directly.
"""

from __future__ import annotations

import numpy as np


def canvas_widget(viewer):
    """The Qt widget of the viewer's vispy canvas (the one that receives input)."""
    return viewer.window._qt_viewer.canvas.native


def world_to_canvas(viewer, world) -> tuple[float, float]:
    """Canvas pixel (x, y) of the world position ``world`` (all of the viewer's
    dims, or only the displayed ones), through the canvas view's scene transform
    (the inverse of what napari does with a mouse position)."""
    canvas = viewer.window._qt_viewer.canvas
    view = canvas.view
    world = [float(v) for v in world]
    displayed = list(viewer.dims.displayed)
    if len(world) == viewer.dims.ndim:
        world = [world[d] for d in displayed]
    if len(world) != 2 or viewer.dims.ndisplay != 2:
        raise ValueError("world_to_canvas maps 2D views only: give the displayed (row, col)")
    transform = view.transform * view.scene.transform
    x, y = np.asarray(transform.map(world[::-1]))[:2]  # vispy scene coordinates are (x=col, y=row)
    scale = canvas_widget(viewer).devicePixelRatioF()
    return float(x) / scale, float(y) / scale


def canvas_to_world(viewer, xy) -> tuple:
    """World position of canvas pixel ``xy``, as napari computes it for a mouse event."""
    canvas = viewer.window._qt_viewer.canvas
    scale = canvas_widget(viewer).devicePixelRatioF()
    return canvas._map_canvas2world((xy[0] * scale, xy[1] * scale), canvas.view)


def _qpoint(xy):
    from qtpy.QtCore import QPoint

    return QPoint(int(round(xy[0])), int(round(xy[1])))


def _settle(viewer) -> None:
    """Let pending layout and paint events run so that the view's transform is final."""
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    viewer.window._qt_viewer.canvas._scene_canvas.update()
    QApplication.processEvents()


def landing(viewer, world) -> tuple:
    """The world position a click aimed at ``world`` will land on (the nearest canvas pixel)."""
    _settle(viewer)
    pos = _qpoint(world_to_canvas(viewer, world))
    return tuple(float(v) for v in canvas_to_world(viewer, (pos.x(), pos.y())))


def click_canvas(viewer, world, button=None, modifier=None) -> tuple[float, float]:
    """Press and release the mouse on the canvas at ``world`` (row, col or all
    dims). Returns the world position napari will compute for that pixel (the
    click lands on whole pixels of the canvas, so it may differ from ``world`` by
    up to half a canvas pixel)."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    _settle(viewer)
    native = canvas_widget(viewer)
    xy = world_to_canvas(viewer, world)
    pos = _qpoint(xy)
    button = Qt.LeftButton if button is None else button
    modifier = Qt.NoModifier if modifier is None else modifier
    QTest.mouseMove(native, pos)
    QTest.mousePress(native, button, modifier, pos)
    QTest.mouseRelease(native, button, modifier, pos)
    return canvas_to_world(viewer, (pos.x(), pos.y()))


def drag_canvas(viewer, start, end, steps: int = 6, button=None) -> None:
    """Press at world ``start``, move in ``steps`` to ``end``, release (e.g. a box)."""
    from qtpy.QtCore import QEvent, QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    _settle(viewer)
    native = canvas_widget(viewer)
    button = Qt.LeftButton if button is None else button
    a, b = np.asarray(world_to_canvas(viewer, start)), np.asarray(world_to_canvas(viewer, end))
    QTest.mouseMove(native, _qpoint(a))
    QTest.mousePress(native, button, Qt.NoModifier, _qpoint(a))
    for t in np.linspace(0, 1, steps + 1)[1:]:
        p = _qpoint(a + t * (b - a))
        # QTest.mouseMove sends no buttons: a drag needs the button held in the event
        event = QMouseEvent(QEvent.MouseMove, QPointF(p), button, button, Qt.NoModifier)
        QApplication.sendEvent(native, event)
        QApplication.processEvents()
    QTest.mouseRelease(native, button, Qt.NoModifier, _qpoint(b))


def key_canvas(viewer, key, modifier=None) -> None:
    """A real key press and release on the canvas: ``key`` is a Qt.Key or one
    character (napari dispatches it to the active layer's and the viewer's
    key bindings)."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    modifier = Qt.NoModifier if modifier is None else modifier
    QTest.keyClick(canvas_widget(viewer), key, modifier)


def close_dock(dock) -> None:
    """Click the dock's own close button (the x in its title bar), as a user does."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    button = dock.title.close_button
    QTest.mouseClick(button, Qt.LeftButton)
    QApplication.processEvents()


def open_plugin_widget(viewer):
    """(dock, widget) opened from the Plugins menu's route, with napari's proxy viewer."""
    return viewer.window.add_plugin_dock_widget("napari-segany", "Segment Anything")

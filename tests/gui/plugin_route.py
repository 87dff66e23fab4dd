"""The widget opened as users open it: from napari's Plugins menu route
(``viewer.window.add_plugin_dock_widget``), which hands the widget napari's
``PublicOnlyProxy`` of the viewer. Import the fixture by name in a test module:
``from plugin_route import plugin_widget  # noqa: F401``.
"""

from __future__ import annotations

import pytest
from qt_events import open_plugin_widget


@pytest.fixture
def plugin_widget(make_napari_viewer, qtbot):
    """open(image=None, model=None, show=False, zoom=False, views=1, path=None, **layer_kwargs)
    -> (viewer, dock, widget, image layer or None). ``path``: open that file instead of
    adding ``image``. ``show``: a real window (for sizes and the view). Zoom is off and one
    view unless asked, as in ``widget_factory``."""
    made = []

    def open_(image=None, model=None, show=False, zoom=False, views=1, path=None, **layer_kwargs):
        viewer = make_napari_viewer(show=show)
        layer = None
        if path is not None:
            layer = viewer.open(str(path), plugin="napari")[0]
        elif image is not None:
            layer = viewer.add_image(image, **layer_kwargs)
        if show:
            qtbot.wait(50)  # the window laid out with the image in it, as a user opens the plugin
        dock, widget = open_plugin_widget(viewer)
        made.append(widget)
        widget.zoom_box.setChecked(zoom)
        if model is not None:
            from napari_segany import Predictor

            widget.controller.set_predictor(Predictor(model), model.info.name)
            if views is not None:
                widget.views_combo.setCurrentText(str(views))
        return viewer, dock, widget, layer

    yield open_
    for widget in made:
        if widget.controller is not None:
            qtbot.waitUntil(lambda w=widget: w.controller is None or not w.controller.is_busy, timeout=60_000)
        if widget.controller is not None:
            widget.close_widget()


def connected(emitter, objects) -> list:
    """The callbacks of napari event ``emitter`` bound to any of ``objects``."""
    found = []
    for cb in emitter.callbacks:
        owner = cb[0]() if isinstance(cb, tuple) else getattr(cb, "__self__", None)
        if any(owner is o for o in objects):
            found.append(cb)
    return found

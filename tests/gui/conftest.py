"""Fixtures for the napari widget tests: a real viewer (pytest-qt, Xvfb), real
layers and small random-weight models saved in the checkpoint formats users load.

Run with ``xvfb-run -a python -m pytest tests/gui``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

FAST_SIZE = 256  # model input side: 16x fewer pixels than the published 1024


@pytest.fixture(scope="session")
def fast_model_paths(tmp_path_factory):
    """Two different random vit_t models with a 256-pixel input (about 1 s per
    embedding on 2 CPU cores), in napari-segany's own checkpoint format."""
    folder = tmp_path_factory.mktemp("fast")
    from reference_models import save_fast_vit_t

    return [save_fast_vit_t(folder / f"fast_vit_t_{seed}.pth", FAST_SIZE, seed) for seed in (1, 2)]


@pytest.fixture(scope="session")
def fast_models(fast_model_paths):
    from napari_segany import load_model

    return [load_model(p, device="cpu") for p in fast_model_paths]


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
        from qt_events import open_plugin_widget

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


@pytest.fixture
def widget_factory(plugin_widget):
    """make(image, model=None, zoom=False, views=1, **layer_kwargs) -> (viewer, image_layer, widget)
    with the widget opened from the Plugins route. Zoom (on for users) is off unless asked, so that
    tests of the prompt plumbing see one prediction per prompt change; ``test_widget_zoom.py`` tests
    it. One view unless asked (``views=None``: the model's recommendation, as users get it);
    ``test_widget_views.py``."""

    def make(image, model=None, zoom=False, views=1, **layer_kwargs):
        viewer, _, widget, layer = plugin_widget(image, model, zoom=zoom, views=views, **layer_kwargs)
        return viewer, layer, widget

    return make

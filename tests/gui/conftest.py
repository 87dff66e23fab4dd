"""Fixtures for the napari widget tests: a real viewer (pytest-qt, Xvfb), real
layers and small random-weight models saved in the checkpoint formats users load.

Run with ``xvfb-run -a python -m pytest tests/gui``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

FAST_SIZE = 256  # model input side: 16x fewer pixels than the published 1024


def _save_vit_t(path, image_size: int, seed: int):
    import torch

    from napari_segany.model import build_sam
    from reference_models import randomise_constants

    torch.manual_seed(seed)
    model = build_sam("vit_t", image_size)
    randomise_constants(model, seed=seed)
    torch.save({"model": model.state_dict(), "config": {"arch": "vit_t", "image_size": image_size}}, path)
    return path


@pytest.fixture(scope="session")
def fast_model_paths(tmp_path_factory):
    """Two different random vit_t models with a 256-pixel input (about 1 s per
    embedding on 2 CPU cores), in napari-segany's own checkpoint format."""
    folder = tmp_path_factory.mktemp("fast")
    return [_save_vit_t(folder / f"fast_vit_t_{seed}.pth", FAST_SIZE, seed) for seed in (1, 2)]


@pytest.fixture(scope="session")
def fast_models(fast_model_paths):
    from napari_segany import load_model

    return [load_model(p, device="cpu") for p in fast_model_paths]


@pytest.fixture
def widget_factory(make_napari_viewer, qtbot):
    """make(image, **layer_kwargs) -> (viewer, image_layer, widget) with the widget docked."""
    made = []

    def make(image, model=None, **layer_kwargs):
        from napari_segany._widget import SegmentAnythingWidget

        viewer = make_napari_viewer()
        layer = viewer.add_image(image, **layer_kwargs)
        widget = SegmentAnythingWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Segment Anything")
        made.append(widget)
        if model is not None:
            from napari_segany import Predictor

            widget.controller.set_predictor(Predictor(model), model.info.name)
        return viewer, layer, widget

    yield make
    for widget in made:
        if widget.controller is not None:
            qtbot.waitUntil(lambda w=widget: not w.controller.is_busy, timeout=60_000)
            widget.close_widget()


def wait_ready(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: widget.state.embedding_ready, timeout=timeout)


def wait_prediction(qtbot, widget, timeout=10_000):
    """Wait until the debounced prediction for the current prompts has run."""
    qtbot.waitUntil(lambda: not widget.controller._predict_timer.isActive(), timeout=timeout)
    qtbot.wait(1)


@dataclass
class MouseEvent:
    """The fields napari's mouse callbacks read (as in napari's own layer tests)."""

    type: str
    position: tuple
    pos: np.ndarray = field(default_factory=lambda: np.zeros(2))
    is_dragging: bool = False
    modifiers: list = field(default_factory=list)
    view_direction: object = None
    dims_displayed: tuple = (0, 1)
    button: int = 1
    handled: bool = False


def click(layer, world_position, dims_displayed=(0, 1)):
    """A mouse press and release at ``world_position`` through napari's own
    mouse callbacks of ``layer`` (e.g. Points in add mode adds a point)."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    pos = tuple(float(v) for v in world_position)
    for kind, callbacks in (("mouse_press", mouse_press_callbacks), ("mouse_release", mouse_release_callbacks)):
        event = ReadOnlyWrapper(MouseEvent(kind, pos, dims_displayed=dims_displayed), exceptions={"handled"})
        callbacks(layer, event)


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


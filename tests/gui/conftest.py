"""Fixtures for the napari widget tests: a real viewer (pytest-qt, Xvfb), real
layers and small random-weight models saved in the checkpoint formats users load.

Run with ``xvfb-run -a python -m pytest tests/gui``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

FAST_SIZE = 256  # model input side: 16x fewer pixels than the published 1024


def _save_vit_t(path, image_size: int, seed: int):
    import torch

    from napari_segany.model import build_sam
    from napari_segany.benchmark import randomise_weights

    torch.manual_seed(seed)
    model = build_sam("vit_t", image_size)
    randomise_weights(model, seed=seed)
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
    """make(image, model=None, zoom=False, views=1, **layer_kwargs) -> (viewer, image_layer, widget)
    with the widget docked. Zoom (on for users) is off unless asked, so that tests of the prompt
    plumbing see one prediction per prompt change; ``test_widget_zoom.py`` tests it. One view unless
    asked (``views=None``: the model's recommendation, as users get it); ``test_widget_views.py``."""
    made = []

    def make(image, model=None, zoom=False, views=1, **layer_kwargs):
        from gui_helpers import open_widget

        viewer = make_napari_viewer()
        layer = viewer.add_image(image, **layer_kwargs)
        widget = open_widget(viewer)
        made.append(widget)
        widget.zoom_box.setChecked(zoom)
        if model is not None:
            from napari_segany import Predictor

            widget.controller.set_predictor(Predictor(model), model.info.name)
            if views is not None:
                widget.views_combo.setCurrentText(str(views))
        return viewer, layer, widget

    yield make
    for widget in made:
        if widget.controller is not None:
            qtbot.waitUntil(lambda w=widget: not w.controller.is_busy, timeout=60_000)
            widget.close_widget()

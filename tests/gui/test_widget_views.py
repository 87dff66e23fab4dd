"""The widget averages mirrored views (napari_segany.views) as the model recommends, and the user can change it."""

import numpy as np
import pytest
from gui_helpers import click, wait_prediction, wait_ready

from napari_segany import Predictor


@pytest.fixture(scope="module")
def included_model():
    from napari_segany import load_model

    return load_model(device="cpu")


def test_the_included_model_is_served_with_its_views_and_one_view_on_request(widget_factory, qtbot, nuclei2d,
                                                                              included_model):
    image, labels = nuclei2d
    viewer, layer, widget = widget_factory(image, included_model, views=None)
    wait_ready(qtbot, widget)
    state, ctrl = widget.state, widget.controller
    assert included_model.info.views == 4
    assert state.options.views == 4 and widget.views_combo.currentText() == "4"
    assert len(state.embedding().views) == 3  # encoded with 3 mirrored copies

    ids = np.unique(labels[labels > 0])
    rows, cols = np.nonzero(labels == ids[len(ids) // 2])
    point = (float(np.median(rows)), float(np.median(cols)))
    click(ctrl.prompts.points, point)
    wait_prediction(qtbot, widget)
    headless = Predictor(included_model, views=4)
    headless.set_image(image, contrast_limits=tuple(layer.contrast_limits))
    np.testing.assert_array_equal(state.prediction.mask(0), headless.predict(points=[point]).mask(0))

    four = state.ready
    widget.views_combo.setCurrentText("1")  # one view: a new embedding, the same prompt predicted again
    qtbot.waitUntil(lambda: state.embedding_ready and state.ready.views == 1, timeout=30_000)
    wait_prediction(qtbot, widget)
    assert state.embedding().views == ()
    headless = Predictor(included_model)
    headless.set_image(image, contrast_limits=tuple(layer.contrast_limits))
    np.testing.assert_array_equal(state.prediction.mask(0), headless.predict(points=[point]).mask(0))
    assert state.cache.get(four) is not None  # the 4-view embedding stays cached for going back

"""The widget averages mirrored views (napari_segany.engine.views) as the model recommends, and the user can change it."""

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
    point = tuple(click(ctrl.prompts.points, point))
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


def test_a_new_slice_answers_from_one_view_first_then_from_all(widget_factory, qtbot, included_model):
    """On a slice not yet embedded, a click is answered from the slice's first view (decoded in a
    worker, the status saying a refinement is under way), then again from all four views: the
    same answers the library gives for one and for four views."""
    import threading

    from napari_segany.sample_data import load_sample

    volume, labels = load_sample("nuclei3d")[28:31], load_sample("nuclei3d_labels")[28:31]
    viewer, layer, widget = widget_factory(volume, included_model, views=None)
    state, ctrl = widget.state, widget.controller
    threads, shown = [], []
    real = state.predictor.predict
    state.predictor.predict = lambda *a, **k: threads.append(threading.current_thread()) or real(*a, **k)
    ctrl.prediction_changed.connect(
        lambda: state.prediction is not None and shown.append((state.prediction_key.views, state.refining,
                                                                state.prediction.mask(0).copy())))
    ids, counts = np.unique(labels[1][labels[1] > 0], return_counts=True)
    rows, cols = np.nonzero(labels[1] == ids[np.argmax(counts)])
    point = (float(np.median(rows)), float(np.median(cols)))
    viewer.dims.set_current_step(0, 1)
    ctrl.prompts.points.add([[1, *point]])  # clicked before the slice has any embedding
    qtbot.waitUntil(lambda: bool(shown) and shown[-1][:2] == (4, False), timeout=60_000)
    assert shown[0][:2] == (1, True)  # the first answer, from one view, says more is coming
    assert threads and threading.main_thread() not in threads  # never decoded on the GUI thread
    for views, mask in ((1, shown[0][2]), (4, shown[-1][2])):
        headless = Predictor(included_model, views=views)
        headless.set_image(volume[1], contrast_limits=tuple(layer.contrast_limits))
        np.testing.assert_array_equal(mask, headless.predict(points=[point]).mask(0))

"""Everyday journeys, driven with real Qt mouse and key events on the canvas of a widget opened
from the Plugins route: every mask comes from the slice on screen, whatever the user did before."""

from __future__ import annotations

import numpy as np
from gui_helpers import click, show_target, wait_prediction, wait_ready
from qt_events import click_canvas, key_canvas

from napari_segany import Predictor
from napari_segany.sample_data import load_sample


def _click(qtbot, viewer, widget, world):
    """A real click on the canvas with the prompt points layer active; returns the point as the
    widget read it: (row, col) on the slice on screen."""
    placed = click(widget.controller.prompts.points, world)
    wait_prediction(qtbot, widget)
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=30_000)
    return placed[-2:]


def _fresh(model, image2d, layer, point) -> np.ndarray:
    """The mask a new predictor gives for ``point`` on ``image2d``, encoded with the layer's contrast."""
    pred = Predictor(model)
    emb = pred.encode(image2d, contrast_limits=tuple(float(v) for v in layer.contrast_limits))
    return pred.predict(points=[point], embedding=emb).mask(0)


def _nuclei(n=10, start=26):
    return load_sample("nuclei3d")[start:start + n], load_sample("nuclei3d_labels")[start:start + n]


def _seed(truth, z):
    """The largest object on slice ``z`` as a propagation's start: (its id, labels with it on ``z`` only)."""
    ids, counts = np.unique(truth[z][truth[z] > 0], return_counts=True)
    seed_id = int(ids[np.argmax(counts)])
    start = np.zeros_like(truth, dtype=np.uint32)
    start[z][truth[z] == seed_id] = seed_id
    return seed_id, start


def test_a_click_after_propagating_is_answered_on_the_slice_on_screen(widget_factory, qtbot, fast_models):
    volume, truth = _nuclei()
    viewer, layer, widget = widget_factory(volume, fast_models[0])
    seed_id, start = _seed(truth, 5)
    show_target(qtbot, viewer, widget, start, seed_id, 5)
    from qtpy.QtCore import Qt

    key_canvas(viewer, Qt.Key_P, Qt.ShiftModifier)
    qtbot.waitUntil(lambda: widget.propagator.job is None, timeout=120_000)
    assert "Propagated label" in widget.status_label.text()
    rr, cc = np.nonzero(truth[5] == seed_id)
    point = _click(qtbot, viewer, widget, (5, rr.mean(), cc.mean()))
    np.testing.assert_array_equal(widget.state.chosen_mask(), _fresh(fast_models[0], volume[5], layer, point))


def test_leaving_a_slice_mid_embedding_and_coming_back(widget_factory, qtbot, fast_models):
    """Slice away before the embedding is done, come back, switch to 3D and back: clicks work and
    answer on the slice on screen."""
    volume, _ = _nuclei(6)
    viewer, layer, widget = widget_factory(volume, fast_models[0])
    viewer.dims.set_current_step(0, 2)
    wait_ready(qtbot, widget)
    viewer.dims.set_current_step(0, 4)
    qtbot.waitUntil(lambda: widget.state.job is not None, timeout=5_000)  # slice 4's embedding runs
    viewer.dims.set_current_step(0, 2)  # back before it is done
    wait_ready(qtbot, widget)
    point = _click(qtbot, viewer, widget, (2, 128, 128))
    np.testing.assert_array_equal(widget.state.chosen_mask(), _fresh(fast_models[0], volume[2], layer, point))
    viewer.dims.ndisplay = 3
    qtbot.waitUntil(lambda: widget.state.wanted is None, timeout=5_000)
    assert "2D" in widget.status_label.text()
    viewer.dims.ndisplay = 2
    wait_ready(qtbot, widget)
    key_canvas(viewer, "x")  # clear, then a new click
    point = _click(qtbot, viewer, widget, (2, 100, 150))
    np.testing.assert_array_equal(widget.state.chosen_mask(), _fresh(fast_models[0], volume[2], layer, point))


def test_deleting_the_target_during_a_propagation_writes_nothing(widget_factory, qtbot, fast_models):
    volume, truth = _nuclei()
    viewer, layer, widget = widget_factory(volume, fast_models[0])
    seed_id, start = _seed(truth, 5)
    target = show_target(qtbot, viewer, widget, start, seed_id, 5)
    assert widget.propagator.start()
    viewer.layers.remove(target)
    qtbot.waitUntil(lambda: widget.propagator.job is None, timeout=120_000)
    np.testing.assert_array_equal(np.asarray(target.data), start)  # the deleted layer got nothing
    assert "nothing was written" in widget.status_label.text()
    assert widget.target_combo.currentText() == "(new labels layer)"


def test_target_box_follows_commits_and_images(widget_factory, qtbot, nuclei2d, fast_models):
    image, labels = nuclei2d
    viewer, layer_a, widget = widget_factory(image, fast_models[0], name="a")
    existing = viewer.add_labels(np.zeros(image.shape, np.uint16), name="mine")
    widget.target_combo.setCurrentIndex(widget.target_combo.findText("mine"))
    wait_ready(qtbot, widget)
    _click(qtbot, viewer, widget, (256, 256))
    assert widget.controller.commit() is not None
    assert existing.data.any() and widget.target_combo.currentText() == "mine"
    # another image of another shape: its own target, and labels of the wrong shape are not offered
    layer_b = viewer.add_image(image[:300, :200], name="b")
    widget.model_panel.set_image_layer(layer_b)
    assert widget.target_combo.currentText() == "(new labels layer)"
    assert widget.target_combo.findText("mine") == -1
    wait_ready(qtbot, widget)
    _click(qtbot, viewer, widget, (150, 100))
    result = widget.controller.commit()
    assert result is not None and widget.controller.target_layer.data.shape == (300, 200)
    assert widget.target_combo.currentText() == widget.controller.target_layer.name
    widget.model_panel.set_image_layer(layer_a)
    assert widget.target_combo.currentText() == "mine"


def test_a_contrast_change_embeds_the_new_window(widget_factory, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    viewer, layer, widget = widget_factory(image, fast_models[0])
    wait_ready(qtbot, widget)
    old = widget.state.embedding()
    lo, hi = layer.contrast_limits
    layer.contrast_limits = (lo, lo + (hi - lo) / 3)
    qtbot.waitUntil(lambda: widget.state.embedding() is not old and widget.state.embedding() is not None,
                    timeout=30_000)
    assert widget.state.embedding().window == tuple(float(v) for v in layer.contrast_limits)
    point = _click(qtbot, viewer, widget, (256, 256))
    np.testing.assert_array_equal(widget.state.chosen_mask(), _fresh(fast_models[0], image, layer, point))


def test_a_click_before_the_model_is_ready_is_answered_once_it_is(widget_factory, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    viewer, layer, widget = widget_factory(image)  # no model yet
    points = widget.controller.prompts.points
    viewer.layers.selection.active = points
    points.mode = "add"
    click_canvas(viewer, (256, 256))
    qtbot.waitUntil(lambda: len(points.data) == 1, timeout=5_000)
    widget.controller.set_predictor(Predictor(fast_models[0]), "fast")
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=60_000)
    point = np.asarray(points.data[-1], float)
    np.testing.assert_array_equal(widget.state.chosen_mask(), _fresh(fast_models[0], image, layer, point))


def test_a_4d_image_answers_and_commits_on_the_slice_on_screen(widget_factory, qtbot, fast_models):
    """(t, z, y, x): a click on t=1, z=2 is answered on that slice, and the commit writes there only;
    after visiting another time point and coming back, the same click gives the same mask."""
    volume, _ = _nuclei(6, start=24)
    data = np.stack([volume[:3], volume[3:]])  # 2 time points of 3 slices
    viewer, layer, widget = widget_factory(data, fast_models[0])
    viewer.dims.set_current_step(0, 1)
    viewer.dims.set_current_step(1, 2)
    qtbot.waitUntil(lambda: widget.state.plane is not None and widget.state.plane.fixed == ((0, 1), (1, 2)))
    wait_ready(qtbot, widget)
    point = _click(qtbot, viewer, widget, (1, 2, 128, 128))
    mask = widget.state.chosen_mask()
    np.testing.assert_array_equal(mask, _fresh(fast_models[0], data[1, 2], layer, point))
    assert widget.controller.commit() is not None
    target = widget.controller.target_layer
    assert target.data.shape == data.shape
    np.testing.assert_array_equal(np.argwhere(target.data.any(axis=(2, 3))), [[1, 2]])
    np.testing.assert_array_equal(target.data[1, 2] > 0, mask)
    viewer.dims.set_current_step(0, 0)
    wait_ready(qtbot, widget)
    viewer.dims.set_current_step(0, 1)
    wait_ready(qtbot, widget)
    _click(qtbot, viewer, widget, (1, 2, 128, 128))
    np.testing.assert_array_equal(widget.state.chosen_mask(),
                                  _fresh(fast_models[0], data[1, 2], layer, widget.controller.prompts.points.data[-1][-2:]))

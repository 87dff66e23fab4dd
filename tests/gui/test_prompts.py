"""Prompts in Points/Shapes layers drive the preview; the picker shows every candidate."""

import threading

import numpy as np
from gui_helpers import click, predict_calls, press, wait_prediction, wait_ready

from napari_segany.engine.outputs import Prediction


def test_points_and_box_update_the_preview(widget_factory, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    viewer, layer, widget = widget_factory(image, fast_models[0], name="nuclei")
    wait_ready(qtbot, widget)
    ctrl = widget.controller
    calls = predict_calls(widget.state.predictor)
    points = ctrl.prompts.points
    assert viewer.layers.selection.active.unique_id == points.unique_id and points.mode == "add"

    placed = click(points, (120, 200))  # a real click: napari's own add mode places the point
    wait_prediction(qtbot, widget)
    assert len(calls) == 1 and calls[-1]["multimask"] is True
    np.testing.assert_allclose(placed, (120, 200), atol=1.0)
    np.testing.assert_allclose(calls[-1]["points"], [placed])
    np.testing.assert_array_equal(calls[-1]["labels"], [1])
    preview = ctrl.preview.layer
    assert preview is not None and preview.visible
    np.testing.assert_array_equal(preview.data.astype(bool), widget.state.prediction.mask(0))
    first = widget.state.prediction

    press(viewer, "t")  # next point negative; the added point keeps its polarity
    assert not ctrl.prompts.next_positive
    click(points, (300, 310))
    wait_prediction(qtbot, widget)
    np.testing.assert_array_equal(calls[-1]["labels"], [1, 0])
    assert list(points.features["positive"]) == [True, False]
    neg, pos = points.face_color[1], points.face_color[0]
    assert not np.allclose(neg, pos)  # negative points are drawn in another colour
    # the second prompt refines the first: previous logits as mask_input, one candidate
    np.testing.assert_array_equal(calls[-1]["mask_input"], first.logits[0])
    assert calls[-1]["multimask"] is False
    np.testing.assert_array_equal(preview.data.astype(bool), widget.state.prediction.mask(0))

    # moving a point re-predicts from scratch (no stale mask_input)
    n = len(calls)
    points.data = np.array([[125.0, 205.0], [300.0, 310.0]])
    wait_prediction(qtbot, widget)
    assert len(calls) == n + 1 and calls[-1]["mask_input"] is None
    np.testing.assert_allclose(calls[-1]["points"], [[125, 205], [300, 310]])

    # a box joins the prompts
    ctrl.prompts.boxes.add_rectangles(np.array([[100, 180], [160, 240]]))
    wait_prediction(qtbot, widget)
    np.testing.assert_allclose(calls[-1]["box"], (100, 180, 160, 240))

    # deleting every prompt clears the preview
    points.data = np.zeros((0, 2))
    ctrl.prompts.boxes.data = []
    wait_prediction(qtbot, widget)
    assert widget.state.prediction is None and not preview.data.any()


def test_toggle_flips_selected_points_in_select_mode(widget_factory, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    viewer, _, widget = widget_factory(image[:128, :128], fast_models[0])
    wait_ready(qtbot, widget)
    points = widget.controller.prompts.points
    calls = predict_calls(widget.state.predictor)
    points.add([[20, 20], [60, 60]])
    wait_prediction(qtbot, widget)
    points.mode = "select"
    points.selected_data = {1}
    press(viewer, "t")
    wait_prediction(qtbot, widget)
    assert list(points.features["positive"]) == [True, False]
    np.testing.assert_array_equal(calls[-1]["labels"], [1, 0])
    assert not widget.controller.prompts.next_positive
    assert "negative" in widget.polarity_label.text()


def test_picker_shows_k_thumbnails_and_keys_choose(widget_factory, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    viewer, _, widget = widget_factory(image, fast_models[0])
    wait_ready(qtbot, widget)
    widget.controller.prompts.points.add([[256, 256]])
    wait_prediction(qtbot, widget)
    pred = widget.state.prediction
    assert len(pred) == 3
    qtbot.waitUntil(lambda: widget.picker.shown() == 3)  # drawn just after the preview
    texts = [b.text() for b in widget.picker.buttons]
    assert texts == [f"{i + 1}: IoU {s:.2f}" for i, s in enumerate(pred.scores)]
    assert [b.isChecked() for b in widget.picker.buttons] == [True, False, False]
    assert not widget.picker.buttons[0].icon().isNull()
    preview = widget.controller.preview.layer
    for key, index in (("2", 1), ("3", 2), ("1", 0)):
        press(viewer, key)
        assert widget.state.chosen == index
        assert [b.isChecked() for b in widget.picker.buttons] == [i == index for i in range(3)]
        np.testing.assert_array_equal(preview.data.astype(bool), pred.mask(index))
    widget.picker.buttons[2].click()
    assert widget.state.chosen == 2
    np.testing.assert_array_equal(preview.data.astype(bool), pred.mask(2))
    # the keys also work with the boxes layer selected, and with no layer selected
    viewer.layers.selection.active = widget.controller.prompts.boxes
    press(viewer, "2")
    assert widget.state.chosen == 1
    viewer.layers.selection.clear()
    press(viewer, "3")
    assert widget.state.chosen == 2


def test_the_best_candidate_comes_first_and_no_mask_is_made_on_the_gui_thread(widget_factory, qtbot, nuclei2d,
                                                                             fast_models, monkeypatch):
    """A click's preview needs only the best candidate's full-size mask: the worker makes it first and
    the others after (for the thumbnails), and none of them on the GUI thread."""
    made = []
    original = Prediction.mask

    def mask(self, i=0):
        if self._masks is None and i not in self._single:
            made.append((i, threading.current_thread() is threading.main_thread()))
        return original(self, i)

    monkeypatch.setattr(Prediction, "mask", mask)
    image, _ = nuclei2d
    viewer, _, widget = widget_factory(image, fast_models[0])
    wait_ready(qtbot, widget)
    widget.controller.prompts.points.add([[256, 256]])
    wait_prediction(qtbot, widget)
    qtbot.waitUntil(lambda: widget.picker.shown() == 3)
    assert made[0] == (0, False)  # the best one first, in the worker
    assert sorted(i for i, _ in made) == [0, 1, 2] and not any(on_gui for _, on_gui in made)
    assert widget.state.prediction.masks_ready
    np.testing.assert_array_equal(widget.controller.preview.layer.data.astype(bool), widget.state.prediction.mask(0))


def test_regions_checkbox_switches_the_predictor_and_re_predicts(widget_factory, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    viewer, _, widget = widget_factory(image, fast_models[0])
    wait_ready(qtbot, widget)
    predictor = widget.state.predictor
    assert widget.regions_box.isChecked() and predictor.regions == "prompted"
    widget.controller.prompts.points.add([[256, 256]])
    wait_prediction(qtbot, widget)
    prompted = widget.state.prediction.masks.copy()

    widget.regions_box.setChecked(False)  # as a click on the box does
    assert predictor.regions == "all" and not widget.state.options.prompted_regions
    qtbot.waitUntil(lambda: widget.state.prediction is not None)
    raw = widget.state.prediction.masks
    assert raw.shape == prompted.shape and not (prompted & ~raw).any()  # islands come back, nothing else
    preview = widget.controller.preview.layer
    np.testing.assert_array_equal(preview.data.astype(bool), widget.state.prediction.mask(0))

    widget.regions_box.setChecked(True)
    qtbot.waitUntil(lambda: widget.state.prediction is not None)
    np.testing.assert_array_equal(widget.state.prediction.masks, prompted)
    # a model loaded later gets the same choice
    widget.regions_box.setChecked(False)
    wait_prediction(qtbot, widget)
    from napari_segany import Predictor

    widget.controller.set_predictor(Predictor(fast_models[1]), "second")
    assert widget.state.predictor.regions == "all"

"""Commits: ids, protection of other objects, one undo step, clearing, editing, autosave."""

import numpy as np
import tifffile
from gui_helpers import press, wait_prediction, wait_ready
from qt_events import open_plugin_widget


def _prompt(qtbot, widget, point, choose=0):
    widget.controller.prompts.points.add([point])
    wait_prediction(qtbot, widget)
    widget.controller.choose(choose)
    mask = widget.state.chosen_mask()
    assert mask is not None and mask.any()
    return mask


def _biggest_candidate(widget):
    pred = widget.state.prediction
    return int(np.argmax([pred.mask(i).sum() for i in range(len(pred))]))


def test_commit_new_id_protects_others_and_undo_restores(widget_factory, qtbot, nuclei2d, fast_models):
    image, labels = nuclei2d
    viewer, _, widget = widget_factory(image, fast_models[0])
    target = viewer.add_labels(labels.copy(), name="cellpose")
    widget.set_target_layer(target)
    widget.controller.prompts.activate_points()
    wait_ready(qtbot, widget)
    before = target.data.copy()

    widget.controller.prompts.points.add([[250, 250]])
    wait_prediction(qtbot, widget)
    widget.controller.choose(_biggest_candidate(widget))  # a big mask overlaps other nuclei
    mask = widget.state.chosen_mask()
    assert (mask & (before > 0)).any() and (mask & (before == 0)).any()
    press(viewer, "c")

    after = target.data
    new_id = int(before.max()) + 1
    expected = before.copy()
    expected[mask & (before == 0)] = new_id  # overwrite off: other objects keep their pixels
    np.testing.assert_array_equal(after, expected)
    assert target.selected_label == new_id
    assert len(widget.controller.prompts.points.data) == 0  # prompts clear after commit
    assert widget.state.prediction is None and not widget.controller.preview.layer.data.any()

    # one commit = one undo step; Ctrl+Z on the labels layer restores exactly
    viewer.layers.selection.active = target
    target.undo()
    np.testing.assert_array_equal(target.data, before)
    target.redo()
    np.testing.assert_array_equal(target.data, expected)


def test_ctrl_z_key_undoes_a_commit(widget_factory, qtbot, nuclei2d, fast_models):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    image, labels = nuclei2d
    viewer, _, widget = widget_factory(image, fast_models[0])
    target = viewer.add_labels(labels.copy(), name="cellpose")
    widget.set_target_layer(target)
    wait_ready(qtbot, widget)
    before = target.data.copy()
    _prompt(qtbot, widget, (100, 400))
    widget.commit_button.click()
    assert not np.array_equal(target.data, before)
    viewer.layers.selection.active = target
    QTest.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key_Z, Qt.ControlModifier)
    np.testing.assert_array_equal(target.data, before)


def test_overwrite_option_takes_pixels_of_other_objects(widget_factory, qtbot, nuclei2d, fast_models):
    image, labels = nuclei2d
    viewer, _, widget = widget_factory(image, fast_models[0])
    target = viewer.add_labels(labels.copy(), name="cellpose")
    widget.set_target_layer(target)
    wait_ready(qtbot, widget)
    before = target.data.copy()
    widget.overwrite_box.setChecked(True)
    widget.controller.prompts.points.add([[250, 250]])
    wait_prediction(qtbot, widget)
    widget.controller.choose(_biggest_candidate(widget))
    mask = widget.state.chosen_mask()
    assert (mask & (before > 0)).any()
    widget.controller.commit()
    expected = before.copy()
    expected[mask] = before.max() + 1
    np.testing.assert_array_equal(target.data, expected)


def test_new_layer_selected_label_and_clear(widget_factory, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    viewer, layer, widget = widget_factory(image, fast_models[0], scale=(0.5, 0.5))
    wait_ready(qtbot, widget)
    assert widget.target_combo.currentText() == "(new labels layer)"
    mask = _prompt(qtbot, widget, (100, 100))
    widget.controller.commit()
    target = widget.controller.target_layer
    assert target.data.shape == image.shape and tuple(target.scale) == (0.5, 0.5)
    assert widget.target_combo.currentData() == target.unique_id
    np.testing.assert_array_equal(target.data, mask.astype(target.data.dtype))

    # X clears prompts without committing
    widget.controller.prompts.points.add([[300, 300]])
    wait_prediction(qtbot, widget)
    press(viewer, "x")
    assert len(widget.controller.prompts.points.data) == 0
    assert widget.state.prediction is None

    # "use selected label": the next object gets id 7
    widget.selected_box.setChecked(True)
    target.selected_label = 7
    mask2 = _prompt(qtbot, widget, (400, 400))
    result = widget.controller.commit()
    assert result.label_id == 7
    assert set(np.unique(target.data[mask2 & ~mask])) == {7}


def test_edit_existing_object_replaces_only_it(widget_factory, qtbot, nuclei2d, fast_models):
    image, labels = nuclei2d
    viewer, _, widget = widget_factory(image, fast_models[0])
    target = viewer.add_labels(labels.copy(), name="gt")
    widget.set_target_layer(target)
    wait_ready(qtbot, widget)
    obj = int(labels[labels > 0][len(labels[labels > 0]) // 2])
    target.selected_label = obj
    widget.edit_box.setChecked(True)
    predictor = widget.state.predictor
    calls = []
    real = predictor.predict
    predictor.predict = lambda **kw: calls.append(kw) or real(**kw)
    rows, cols = np.nonzero(labels == obj)
    widget.controller.prompts.points.add([[rows.mean(), cols.mean()]])
    wait_prediction(qtbot, widget)
    expected_input = predictor.mask_prompt(labels == obj, embedding=widget.state.embedding())
    np.testing.assert_array_equal(calls[-1]["mask_input"], expected_input)  # the object feeds mask_input
    new_mask = widget.state.chosen_mask()
    before = target.data.copy()
    result = widget.controller.commit()
    assert result.label_id == obj
    expected = before.copy()
    expected[(before == obj) & ~new_mask] = 0
    expected[new_mask & (before == 0)] = obj
    np.testing.assert_array_equal(target.data, expected)
    assert target.data.max() == before.max()  # no new id


def test_autosave_next_to_the_image(make_napari_viewer, qtbot, nuclei2d, fast_models, tmp_path):
    from napari_segany import Predictor

    image, _ = nuclei2d
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, image[:200, :200])
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari")
    _, widget = open_plugin_widget(viewer)
    assert widget.autosave_box.isChecked()
    widget.controller.set_predictor(Predictor(fast_models[0]), "fast")
    wait_ready(qtbot, widget)
    _prompt(qtbot, widget, (100, 100))
    widget.controller.commit()
    target = widget.controller.target_layer
    saved = tmp_path / "cells.cells_labels.tif"
    qtbot.waitUntil(saved.exists, timeout=10_000)
    qtbot.waitUntil(lambda: not widget.controller.autosaver.busy, timeout=10_000)
    np.testing.assert_array_equal(tifffile.imread(saved), target.data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.cells_labels.tif", "cells.tif"]  # no temp file left
    widget.close_widget()

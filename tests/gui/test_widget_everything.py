"""Segment everything from the widget (issue 29, item 5): the slice on screen or the whole volume,
in a worker with progress and Cancel, written into the target labels layer as one undoable step,
existing objects kept unless asked; Cancel, closing the dock or deleting the target writes nothing."""

import numpy as np
import pytest
from gui_helpers import wait_prediction, wait_ready
from qt_events import click_canvas, close_dock, key_canvas
from qtpy.QtCore import Qt

from napari_segany.sample_data import load_sample


@pytest.fixture(scope="module")
def included_model():
    from napari_segany import load_model

    return load_model(device="cpu")


def _press(qtbot, button):
    assert button.isEnabled()
    qtbot.mouseClick(button, Qt.LeftButton)


def _wait_done(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: widget.everything.job is None, timeout=timeout)


def _grid(widget, points=10, **fields):
    panel = widget.everything_panel
    panel.mode_combo.setCurrentText("Grid")
    panel.points_spin.setValue(points)
    for name, value in fields.items():
        getattr(panel, f"{name}_spin").setValue(value)


def _commit_one(qtbot, viewer, widget, point):
    """A real click on a nucleus and C: the object the user committed before segmenting everything."""
    wait_ready(qtbot, widget)
    viewer.layers.selection.active = widget.controller.prompts.points
    click_canvas(viewer, point)
    wait_prediction(qtbot, widget)
    qtbot.waitUntil(lambda: widget.state.chosen_mask() is not None and widget.state.chosen_mask().any(),
                    timeout=10_000)
    key_canvas(viewer, "c")
    target = widget.controller.target_layer
    assert target is not None and target.data.any(), widget.status_label.text()
    return target


def test_the_slice_is_segmented_around_committed_objects_in_one_undo_step(plugin_widget, qtbot, nuclei2d,
                                                                          included_model):
    image, truth = nuclei2d
    viewer, dock, widget, layer = plugin_widget(image, included_model)
    ids, counts = np.unique(truth[truth > 0], return_counts=True)
    rows, cols = np.nonzero(truth == ids[np.argmax(counts)])
    target = _commit_one(qtbot, viewer, widget, (float(np.median(rows)), float(np.median(cols))))
    before = np.array(target.data)
    first_id = int(before.max())

    _grid(widget, 10)
    _press(qtbot, widget.everything_panel.run_button)
    assert widget.everything.job is not None, widget.status_label.text()
    assert widget.everything_panel.cancel_button.isEnabled() and not widget.everything_panel.run_button.isEnabled()
    _wait_done(qtbot, widget)

    after = np.array(target.data)
    new = np.unique(after[after != before])
    status = widget.status_label.text()
    assert len(new) >= 8, status  # the included model finds many nuclei with a 10 x 10 grid
    assert f"Segmented {len(new)} new objects on the image (ids {first_id + 1}-{first_id + len(new)})" in status
    assert "Ctrl+Z" in status
    np.testing.assert_array_equal(new, np.arange(first_id + 1, first_id + 1 + len(new)))  # ids continue
    np.testing.assert_array_equal(after[before > 0], before[before > 0])  # the committed object is untouched
    assert widget.everything_panel.run_button.isEnabled() and not widget.everything_panel.progress.isVisible()
    # objects overlap the truth: they are nuclei, not noise
    found = np.isin(after, new)
    assert (truth[found] > 0).mean() > 0.7

    # the prompts go on working: a click on an unlabelled nucleus commits the next id
    c = widget.controller
    assert viewer.layers.selection.active.unique_id == c.prompts.points.unique_id
    free = [i for i in ids if not after[truth == i].any()]
    if free:
        rr, cc = np.nonzero(truth == free[0])
        click_canvas(viewer, (float(np.median(rr)), float(np.median(cc))))
        wait_prediction(qtbot, widget)
        qtbot.waitUntil(lambda: c.state.chosen_mask() is not None, timeout=10_000)
        key_canvas(viewer, "c")
        assert int(target.data.max()) == first_id + len(new) + 1, widget.status_label.text()
        key_canvas(viewer, Qt.Key_Z, Qt.ControlModifier)  # from the points layer: undoes that commit
        np.testing.assert_array_equal(target.data, after)

    # one Ctrl+Z (the labels layer selected, napari's way) restores the labels exactly
    viewer.layers.selection.active = target
    key_canvas(viewer, Qt.Key_Z, Qt.ControlModifier)
    np.testing.assert_array_equal(target.data, before)


def test_an_object_committed_during_the_run_is_kept(plugin_widget, qtbot, nuclei2d, included_model):
    image, truth = nuclei2d
    viewer, dock, widget, layer = plugin_widget(image, included_model)
    ids, counts = np.unique(truth[truth > 0], return_counts=True)
    rows, cols = np.nonzero(truth == ids[np.argmax(counts)])
    wait_ready(qtbot, widget)
    viewer.layers.selection.active = widget.controller.prompts.points
    click_canvas(viewer, (float(np.median(rows)), float(np.median(cols))))
    wait_prediction(qtbot, widget)
    _grid(widget, 10)
    _press(qtbot, widget.everything_panel.run_button)
    key_canvas(viewer, "c")  # committed while the grid runs: it makes the target layer
    assert widget.everything.job is not None
    target = widget.controller.target_layer
    committed = np.array(target.data)
    assert committed.max() == 1
    _wait_done(qtbot, widget)
    after = np.array(target.data)
    np.testing.assert_array_equal(after[committed > 0], 1)  # the commit keeps every pixel
    new = np.unique(after[after != committed])
    assert len(new) >= 8 and new.min() == 2, widget.status_label.text()
    viewer.layers.selection.active = target
    key_canvas(viewer, Qt.Key_Z, Qt.ControlModifier)  # undoes the grid's objects, not the commit
    np.testing.assert_array_equal(target.data, committed)


def test_replace_existing_objects_replaces_the_slice_in_one_undo_step(plugin_widget, qtbot, nuclei2d,
                                                                      included_model):
    image, truth = nuclei2d
    viewer, dock, widget, layer = plugin_widget(image, included_model)
    start = np.zeros(truth.shape, np.uint32)
    start[truth > 0] = 500  # one big "object" over every nucleus: replaced
    target = viewer.add_labels(start.copy(), name="old")
    widget.set_target_layer(target)
    wait_ready(qtbot, widget)
    _grid(widget, 10)
    widget.everything_panel.replace_box.setChecked(True)
    _press(qtbot, widget.everything_panel.run_button)
    _wait_done(qtbot, widget)
    after = np.array(target.data)
    n = len(np.unique(after)) - 1
    assert n >= 8 and 500 not in after, widget.status_label.text()
    np.testing.assert_array_equal(np.unique(after), np.arange(n + 1))  # a 2D layer: ids 1..n
    assert "Replaced the labels of the image" in widget.status_label.text()
    target.undo()
    np.testing.assert_array_equal(target.data, start)


def test_cancel_writes_nothing(plugin_widget, qtbot, nuclei2d, included_model):
    image, truth = nuclei2d
    viewer, dock, widget, layer = plugin_widget(image, included_model)
    start = np.zeros(truth.shape, np.uint32)
    start[truth == truth.max()] = 7
    target = viewer.add_labels(start.copy(), name="nuclei")
    widget.set_target_layer(target)
    wait_ready(qtbot, widget)
    _grid(widget, 48)  # long enough to cancel in the middle
    panel = widget.everything_panel
    _press(qtbot, panel.run_button)
    qtbot.waitUntil(lambda: panel.progress.value() > 0 or widget.everything.job is None, timeout=30_000)
    _press(qtbot, panel.cancel_button)
    _wait_done(qtbot, widget)
    np.testing.assert_array_equal(target.data, start)
    assert "cancelled; nothing was written" in widget.status_label.text()
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_deleting_the_target_or_closing_the_dock_during_the_run_writes_nothing(plugin_widget, qtbot, nuclei2d,
                                                                               included_model):
    image, truth = nuclei2d
    viewer, dock, widget, layer = plugin_widget(image, included_model)
    target = viewer.add_labels(np.zeros(truth.shape, np.uint32), name="nuclei")
    widget.set_target_layer(target)
    wait_ready(qtbot, widget)
    _grid(widget, 32)
    _press(qtbot, widget.everything_panel.run_button)
    viewer.layers.remove(target)
    assert "deleted" in widget.status_label.text()
    _wait_done(qtbot, widget)
    assert not any(lay.name.startswith("nuclei") for lay in viewer.layers)  # nothing made, nothing written
    assert "nothing" in widget.status_label.text()

    target = viewer.add_labels(np.zeros(truth.shape, np.uint32), name="again")
    widget.set_target_layer(target)
    _press(qtbot, widget.everything_panel.run_button)
    job = widget.everything.job
    close_dock(dock)
    assert widget.controller is None and job.dropped
    qtbot.waitUntil(lambda: job.ended, timeout=60_000)
    qtbot.wait(50)
    assert not target.data.any()


def test_the_slice_of_a_volume_then_the_whole_volume(plugin_widget, qtbot, included_model):
    volume = load_sample("nuclei3d")[28:32, 64:192, 64:192]
    viewer, dock, widget, layer = plugin_widget(volume, included_model)
    start = np.zeros(volume.shape, np.uint32)
    start[3, :6, :6] = 40  # an object on another slice
    target = viewer.add_labels(start.copy(), name="nuclei")
    widget.set_target_layer(target)
    viewer.dims.set_current_step(0, 1)
    qtbot.waitUntil(lambda: widget.state.plane is not None and widget.state.plane.fixed == ((0, 1),))
    wait_ready(qtbot, widget)
    panel = widget.everything_panel
    panel.settings_section.expand(animate=False)
    _grid(widget, 6, stability=0.85)  # the included model's masks of these upscaled nuclei are soft

    # the slice on screen: only it changes, and new ids continue above every id of the layer
    _press(qtbot, panel.run_button)
    _wait_done(qtbot, widget)
    after = np.array(target.data)
    status = widget.status_label.text()
    assert set(np.flatnonzero((after != start).any(axis=(1, 2)))) == {1}, status
    new = np.unique(after[after != start])
    assert new.min() == 41 and "on slice 1" in status, status
    target.undo()
    np.testing.assert_array_equal(target.data, start)

    # the whole volume: objects through several slices keep one id; the other object stays
    panel.scope_combo.setCurrentText("Whole volume")
    _press(qtbot, panel.run_button)
    _wait_done(qtbot, widget, timeout=120_000)
    status = widget.status_label.text()
    labels = np.array(target.data)
    assert "in the volume (4 slices along axis 0)" in status, status
    assert (labels[3, :6, :6] == 40).all() and labels[labels != 40].min(initial=41) >= 0
    new = np.unique(labels[(labels > 0) & (start == 0)])
    assert new.min() == 41, status
    spans = {int(i): int((labels == i).any(axis=(1, 2)).sum()) for i in new}
    assert max(spans.values()) >= 3, spans  # an object through several slices keeps one id

    # again, replacing: the volume becomes the result (ids from 1), from the embeddings kept
    store = widget.everything._store_obj
    encoded = store.stats["encoded"]
    panel.replace_box.setChecked(True)
    _press(qtbot, panel.run_button)
    _wait_done(qtbot, widget, timeout=120_000)
    replaced = np.array(target.data)
    assert "Replaced the labels of the volume" in widget.status_label.text(), widget.status_label.text()
    n = len(np.unique(replaced)) - 1
    np.testing.assert_array_equal(np.unique(replaced), np.arange(n + 1))
    assert widget.everything._store_obj is store and store.stats["encoded"] == encoded
    target.undo()
    np.testing.assert_array_equal(target.data, labels)
    target.undo()
    np.testing.assert_array_equal(target.data, start)


def test_whole_volume_is_refused_on_a_2d_image(plugin_widget, qtbot, nuclei2d, included_model):
    image, _ = nuclei2d
    viewer, dock, widget, layer = plugin_widget(image[:128, :128], included_model)
    wait_ready(qtbot, widget)
    widget.everything_panel.scope_combo.setCurrentText("Whole volume")
    _press(qtbot, widget.everything_panel.run_button)
    assert widget.everything.job is None
    assert "2D" in widget.status_label.text()


def test_the_models_head_gives_the_prompts_by_default_and_a_model_without_one_says_so(plugin_widget, qtbot,
                                                                                     nuclei2d, included_model,
                                                                                     tiny_model):
    """With the included model and the settings as they open, Segment everything prompts from the
    model's instance head: the real nuclei come out as objects in one undoable step. Asking for
    the head with a model that has none says what to do and writes nothing."""
    image, truth = nuclei2d
    viewer, dock, widget, layer = plugin_widget(image, included_model)
    target = viewer.add_labels(np.zeros(truth.shape, np.uint32), name="nuclei")
    widget.set_target_layer(target)
    wait_ready(qtbot, widget)
    panel = widget.everything_panel
    assert panel.mode_combo.currentText() == "Model's" and panel.settings().uses_head(included_model)
    _press(qtbot, panel.run_button)
    _wait_done(qtbot, widget)
    found = np.array(target.data)
    assert len(np.unique(found)) - 1 >= 60, widget.status_label.text()
    assert np.count_nonzero(truth[found > 0]) / np.count_nonzero(found) > 0.8  # the objects are nuclei
    viewer.layers.selection.active = target
    key_canvas(viewer, Qt.Key_Z, Qt.ControlModifier)
    assert not target.data.any()

    viewer, dock, widget, layer = plugin_widget(image[:128, :128], tiny_model)
    target = viewer.add_labels(np.zeros((128, 128), np.uint32), name="cells")
    widget.set_target_layer(target)
    wait_ready(qtbot, widget)
    widget.everything_panel.mode_combo.setCurrentText("Instance head")
    _press(qtbot, widget.everything_panel.run_button)
    assert widget.everything.job is None  # refused before any work starts
    assert "no instance head" in widget.status_label.text() and "Prompts: Grid" in widget.status_label.text()
    assert not target.data.any()

"""Defaults people meet: the included model loads by itself, readable thumbnails that do not
resize the dock, the view reset after docking, the prompt points selected again after a commit
and an undo, a preview colour no label uses, and messages that stay readable."""

import numpy as np
import tifffile
from gui_helpers import wait_ready
from qt_events import click_canvas, drag_canvas, key_canvas, world_to_canvas


def _sizes(viewer, dock):
    canvas = viewer.window._qt_viewer.canvas.native
    return canvas.size(), dock.size(), viewer.window._qt_window.size()


def test_the_included_model_loads_when_the_widget_opens(plugin_widget, qtbot, nuclei2d):
    from napari_segany.weights.registry import DEFAULT_MODEL

    image, _ = nuclei2d
    viewer, dock, widget, _ = plugin_widget(image[:256, :256])
    assert widget.model_panel.progress.isVisible() or widget.controller.model_job is not None
    qtbot.waitUntil(lambda: widget.state.predictor is not None, timeout=60_000)
    assert widget.state.model_label == DEFAULT_MODEL
    assert DEFAULT_MODEL in widget.model_panel.model_label.text()
    wait_ready(qtbot, widget, timeout=60_000)
    click_canvas(viewer, (128, 128))  # no button pressed: a click segments
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=10_000)


def test_a_model_set_meanwhile_is_not_replaced_by_the_automatic_load(plugin_widget, qtbot, nuclei2d,
                                                                     fast_models):
    image, _ = nuclei2d
    viewer, dock, widget, _ = plugin_widget(image, fast_models[0])
    ours = widget.state.predictor
    qtbot.waitUntil(lambda: widget.controller.model_job is None, timeout=60_000)
    qtbot.wait(50)
    assert widget.state.predictor is ours
    assert "Model loading was cancelled" not in widget.status_label.text()


def test_thumbnails_are_readable_and_do_not_resize_the_dock(plugin_widget, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    viewer, dock, widget, _ = plugin_widget(image, fast_models[0], show=True)
    wait_ready(qtbot, widget)
    qtbot.wait(100)
    before = _sizes(viewer, dock)
    click_canvas(viewer, (250, 250))
    qtbot.waitUntil(lambda: widget.picker.shown() > 0, timeout=10_000)
    qtbot.wait(100)  # layouts settle
    assert _sizes(viewer, dock) == before
    for b in widget.picker.buttons[: widget.picker.shown()]:
        hint = b.sizeHint()
        assert b.width() >= hint.width() and b.height() >= hint.height(), (b.size(), hint)
        assert b.fontMetrics().horizontalAdvance(b.text()) <= b.width() - 8, b.text()


def test_the_view_shows_the_whole_image_after_docking(plugin_widget, qtbot):
    viewer, dock, widget, layer = plugin_widget(np.zeros((512, 512), np.uint8), show=True)

    def inside():
        size = viewer.window._qt_viewer.canvas.native.size()
        corners = [world_to_canvas(viewer, c) for c in ((-0.5, -0.5), (511.5, 511.5))]
        return all(-1 <= x <= size.width() + 1 and -1 <= y <= size.height() + 1 for x, y in corners)

    qtbot.wait(300)  # the dock laid out: the canvas is narrower now
    assert dock.isVisible() and dock.width() > 300
    assert inside()


def test_points_selected_again_after_a_box_commit_and_undo(plugin_widget, qtbot, nuclei2d, fast_models):
    from qtpy.QtCore import Qt

    image, labels = nuclei2d
    viewer, dock, widget, _ = plugin_widget(image, fast_models[0])
    target = viewer.add_labels(np.zeros_like(labels), name="objects")
    widget.set_target_layer(target)
    wait_ready(qtbot, widget)
    c = widget.controller
    points, boxes = c.prompts.points, c.prompts.boxes

    viewer.layers.selection.active = boxes  # the user picks the boxes layer, R, and drags a box
    key_canvas(viewer, "r")
    assert boxes.mode == "add_rectangle"
    drag_canvas(viewer, (150, 150), (300, 320))
    assert len(boxes.data) == 1
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=10_000)
    mask = widget.state.chosen_mask()
    if not mask.any():
        c.choose(int(np.argmax([m.sum() for m in widget.state.prediction.masks])))
    key_canvas(viewer, "c")
    assert target.data.any()
    assert viewer.layers.selection.active.unique_id == points.unique_id and points.mode == "add"
    click_canvas(viewer, (100, 100))  # the next click adds a point
    assert len(points.data) == 1
    key_canvas(viewer, "x")

    # Ctrl+Z with the labels layer selected (napari's way) undoes, then the points are selected again
    committed = target.data.copy()
    viewer.layers.selection.active = target
    key_canvas(viewer, Qt.Key_Z, Qt.ControlModifier)
    assert not target.data.any()
    assert viewer.layers.selection.active.unique_id == points.unique_id and points.mode == "add"
    key_canvas(viewer, Qt.Key_Z, Qt.ShiftModifier | Qt.ControlModifier)  # napari's redo still works
    viewer.layers.selection.active = target
    key_canvas(viewer, Qt.Key_Z, Qt.ShiftModifier | Qt.ControlModifier)
    np.testing.assert_array_equal(target.data, committed)
    # Ctrl+Z with the points selected undoes the last commit too
    viewer.layers.selection.active = points
    key_canvas(viewer, Qt.Key_Z, Qt.ControlModifier)
    assert not target.data.any()
    assert viewer.layers.selection.active.unique_id == points.unique_id


def test_the_preview_colour_is_none_of_the_labels_colours(plugin_widget, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    viewer, dock, widget, _ = plugin_widget(image, fast_models[0])
    objects = np.zeros(image.shape, np.uint32)
    for i in range(1, 6):
        objects[20 * i: 20 * i + 10, 10:20] = i
    target = viewer.add_labels(objects, name="objects")
    widget.set_target_layer(target)
    wait_ready(qtbot, widget)
    viewer.layers.selection.active = widget.controller.prompts.points
    click_canvas(viewer, (250, 250))
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=10_000)
    preview = widget.controller.preview.layer
    shown = preview.colormap.map(np.array([1]))[0, :3]
    used = target.colormap.map(np.arange(1, 7))[:, :3]  # the objects and the next new id
    distances = np.linalg.norm(used - shown, axis=1)
    assert distances.min() > 0.45, distances.round(2)


def test_the_commit_message_stays_when_the_autosave_reports(plugin_widget, qtbot, nuclei2d, fast_models,
                                                            tmp_path):
    image, _ = nuclei2d
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, image[:200, :200])
    viewer, dock, widget, _ = plugin_widget(path=path, model=fast_models[0])
    wait_ready(qtbot, widget)
    click_canvas(viewer, (100, 100))
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=10_000)
    if not widget.state.chosen_mask().any():
        widget.controller.choose(int(np.argmax([m.sum() for m in widget.state.prediction.masks])))
    key_canvas(viewer, "c")
    message = widget.status_label.text()
    assert message.startswith("Committed object 1")
    qtbot.waitUntil(lambda: not widget.controller.autosaver.busy, timeout=10_000)
    qtbot.wait(200)
    assert widget.status_label.text() == message
    assert "Saved labels to" in widget.note_label.text()
    assert (tmp_path / "cells.cells_labels.tif").exists()


def test_thumbnails_are_tinted_in_the_colour_the_preview_is_drawn_in():
    from napari_segany._widget.candidates import thumbnail

    image, mask = np.zeros((4, 4)), np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    out = thumbnail(image, mask, (0, 0, 4, 4), (0.0, 1.0), [255, 0, 0])
    assert tuple(out[1, 1]) == (140, 0, 0) and tuple(out[0, 0]) == (0, 0, 0)

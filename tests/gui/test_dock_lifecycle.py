"""Closing the dock with its x tears the widget down; opening it again reuses the prompt layers."""

import numpy as np
from gui_helpers import predict_calls, wait_ready
from napari.utils.key_bindings import coerce_keybinding
from gui_helpers import connected
from qt_events import click_canvas, close_dock, key_canvas, open_plugin_widget


def _ours(keymap) -> list:
    """The key bindings napari-segany made in ``keymap``."""
    return [k for k, fn in keymap.items() if getattr(fn, "__module__", "").startswith("napari_segany")]


def _role_layers(viewer, role) -> list:
    return [lay for lay in viewer.layers if lay.metadata.get("segany_role") == role]


def test_closing_the_dock_tears_the_widget_down(plugin_widget, qtbot, nuclei2d, fast_models):
    image, labels = nuclei2d
    viewer, dock, widget, layer = plugin_widget(image, fast_models[0])
    target = viewer.add_labels(labels.copy(), name="nuclei")
    widget.set_target_layer(target)
    wait_ready(qtbot, widget)
    c = widget.controller
    points, boxes = c.prompts.points, c.prompts.boxes
    viewer.layers.selection.active = points  # adding the labels layer selected it
    click_canvas(viewer, (250, 250))
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=10_000)
    assert _ours(viewer.keymap) and _ours(points.keymap)
    parts = (widget, c, widget.model_panel, c.prompts, widget.propagator)

    close_dock(dock)

    assert widget.controller is None
    assert "Segment Anything" not in str(list(viewer.window.dock_widgets))
    for owner in (viewer, points, boxes, target):  # keys released, napari's own come back
        assert not _ours(owner.keymap), owner
    assert target.keymap.get(coerce_keybinding("Control-Z")) is None
    emitters = [viewer.layers.events.inserted, viewer.layers.events.removed, viewer.dims.events.current_step,
                viewer.dims.events.ndisplay, viewer.dims.events.order, points.events.data, boxes.events.data,
                layer.events.data, layer.events.contrast_limits, target.events.selected_label]
    for emitter in emitters:
        assert not connected(emitter, parts), emitter
    assert not _role_layers(viewer, "preview")  # nothing pending is left on screen

    # the old points layer no longer predicts, and C no longer commits
    calls = predict_calls(c.state.predictor)
    before = target.data.copy()
    viewer.layers.selection.active = points
    click_canvas(viewer, (300, 300))
    assert len(points.data) == 2
    qtbot.wait(100)
    key_canvas(viewer, "c")
    assert calls == []
    np.testing.assert_array_equal(target.data, before)
    widget.close_widget()  # idempotent
    widget.close()


def test_closing_drops_running_work(plugin_widget, qtbot, nuclei2d, fast_models):
    """The automatic model load and an embedding under way never reach a closed widget."""
    image, _ = nuclei2d
    viewer, dock, widget, layer = plugin_widget(image)
    load = widget.controller.model_job
    assert load is not None and load.automatic  # the included model loads by itself
    state = widget.state
    close_dock(dock)
    assert load.dropped
    qtbot.waitUntil(lambda: not load.worker.is_running, timeout=60_000)
    qtbot.wait(50)
    assert state.predictor is None  # the loaded model was not installed

    viewer2, dock2, widget2, _ = plugin_widget(image, fast_models[0])
    job = widget2.state.job
    assert job is not None
    close_dock(dock2)
    assert job.dropped
    qtbot.waitUntil(lambda: not job.worker.is_running, timeout=60_000)
    qtbot.wait(50)
    assert not [lay for lay in viewer2.layers if lay.metadata.get("segany_role") == "preview"]


def test_reopening_reuses_the_prompt_layers(plugin_widget, qtbot, nuclei2d, fast_models):
    from napari_segany import Predictor

    image, _ = nuclei2d
    viewer, dock, widget, layer = plugin_widget(image, fast_models[0])
    wait_ready(qtbot, widget)
    points = widget.controller.prompts.points
    click_canvas(viewer, (250, 250))
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=10_000)
    close_dock(dock)

    dock2, widget2 = open_plugin_widget(viewer)
    try:
        assert widget2 is not widget
        assert len(_role_layers(viewer, "points")) == 1 and len(_role_layers(viewer, "boxes")) == 1
        assert widget2.controller.prompts.points.unique_id == points.unique_id
        widget2.controller.set_predictor(Predictor(fast_models[0]), "fast")
        widget2.views_combo.setCurrentText("1")
        wait_ready(qtbot, widget2)
        assert viewer.layers.selection.active.unique_id == points.unique_id
        click_canvas(viewer, (200, 220))  # the reused layer predicts for the new widget
        qtbot.waitUntil(lambda: widget2.state.prediction is not None, timeout=10_000)
        assert len(_role_layers(viewer, "preview")) == 1
        key_canvas(viewer, "c")
        assert widget2.controller.target_layer is not None and widget2.controller.target_layer.data.any()
    finally:
        qtbot.waitUntil(lambda: not widget2.controller.is_busy, timeout=60_000)
        close_dock(dock2)
    assert widget2.controller is None


def test_closing_the_viewer_while_the_model_loads(make_napari_viewer, qtbot, nuclei2d):
    """napari deletes the dock and the widget with the window, without closing them: the automatic
    load is dropped then, and its end touches nothing."""
    image, _ = nuclei2d
    viewer = make_napari_viewer()
    viewer.add_image(image)
    dock, widget = open_plugin_widget(viewer)
    load, state = widget.controller.model_job, widget.state
    assert load is not None
    del dock, widget
    viewer.close()
    qtbot.waitUntil(lambda: load.dropped, timeout=5_000)
    qtbot.waitUntil(lambda: not load.worker.is_running, timeout=60_000)
    qtbot.wait(50)
    assert state.predictor is None

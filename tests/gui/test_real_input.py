"""The foundation of the journeys: real Qt mouse and key events on the canvas reach napari and
the widget opened from the Plugins menu as a user's would."""

import numpy as np
from gui_helpers import wait_ready
from qt_events import click_canvas, key_canvas


def _pixel_size(viewer) -> float:
    """World units per canvas pixel."""
    return 1.0 / viewer.camera.zoom


def test_click_on_canvas_adds_a_point_where_clicked(plugin_widget, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    scale, translate = np.array([0.5, 2.0]), np.array([10.0, -5.0])
    viewer, dock, widget, layer = plugin_widget(image, fast_models[0], scale=scale, translate=translate)
    points = widget.controller.prompts.points
    assert viewer.layers.selection.active.unique_id == points.unique_id and points.mode == "add"
    wait_ready(qtbot, widget)

    target = np.array([212.0, 143.0])  # (row, col) in the image's pixels
    world = translate + scale * target
    landed = np.asarray(click_canvas(viewer, world))
    assert len(points.data) == 1
    # the point is where napari says the mouse was, and that is within a canvas pixel of the target
    np.testing.assert_allclose(points.data[0], (landed - translate) / scale, atol=1e-6)
    np.testing.assert_allclose(points.data[0], target, atol=0.75 * _pixel_size(viewer) / scale.min())
    prompts = widget.controller.prompts.read(layer, widget.state.plane)
    np.testing.assert_allclose(prompts.points[0], points.data[0])
    assert prompts.labels.tolist() == [1]
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=10_000)  # the click predicts


def test_real_keys_reach_the_widget(plugin_widget, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    viewer, dock, widget, layer = plugin_widget(image, fast_models[0])
    points = widget.controller.prompts.points
    wait_ready(qtbot, widget)
    key_canvas(viewer, "t")  # negative next
    assert not widget.controller.prompts.next_positive
    assert "negative" in widget.polarity_label.text()
    click_canvas(viewer, (100, 120))
    assert points.features["positive"].tolist() == [False]
    key_canvas(viewer, "t")
    click_canvas(viewer, (300, 320))
    assert points.features["positive"].tolist() == [False, True]
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=10_000)
    key_canvas(viewer, "x")  # clear
    assert len(points.data) == 0 and widget.state.prediction is None

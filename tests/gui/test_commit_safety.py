"""Nothing is destroyed silently: an empty mask is never committed, and editing an object with an
empty answer leaves it as it is; the status says why and what to do."""

import dataclasses

import numpy as np
from gui_helpers import wait_ready
from qt_events import click_canvas, key_canvas


def _answers_nothing(predictor):
    """The predictor answers every prompt with empty masks (as a model does where it sees no
    object): the real decoder runs, then its logits are set to 'background everywhere'."""
    real = predictor.predict

    def empty(*args, **kwargs):
        pred = real(*args, **kwargs)
        return dataclasses.replace(pred, logits=np.full_like(pred.logits, -30.0), _masks=None, _single={})

    predictor.predict = empty


def _open(plugin_widget, qtbot, nuclei2d, fast_models, empty=True):
    image, labels = nuclei2d
    viewer, dock, widget, _ = plugin_widget(image, fast_models[0])
    target = viewer.add_labels(labels.copy(), name="nuclei")
    widget.set_target_layer(target)
    wait_ready(qtbot, widget)
    if empty:
        _answers_nothing(widget.state.predictor)
    viewer.layers.selection.active = widget.controller.prompts.points
    return viewer, widget, target


def test_an_empty_mask_is_not_committed(plugin_widget, qtbot, nuclei2d, fast_models):
    viewer, widget, target = _open(plugin_widget, qtbot, nuclei2d, fast_models)
    before = target.data.copy()
    click_canvas(viewer, (20, 20))
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=10_000)
    n_layers = len(viewer.layers)
    assert not widget.state.chosen_mask().any()
    key_canvas(viewer, "c")
    np.testing.assert_array_equal(target.data, before)
    assert len(viewer.layers) == n_layers
    status = widget.status_label.text()
    assert "Nothing committed" in status and "empty" in status and "positive point" in status, status
    assert len(widget.controller.prompts.points.data) == 1  # the prompts stay, to be corrected


def test_editing_with_an_empty_answer_keeps_the_object(plugin_widget, qtbot, nuclei2d, fast_models):
    viewer, widget, target = _open(plugin_widget, qtbot, nuclei2d, fast_models)
    labels = target.data
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    obj = int(ids[np.argmax(counts)])
    target.selected_label = obj
    widget.edit_box.setChecked(True)
    viewer.layers.selection.active = widget.controller.prompts.points
    rows, cols = np.nonzero(labels == obj)
    before = labels.copy()
    click_canvas(viewer, (rows.mean(), cols.mean()))
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=10_000)
    key_canvas(viewer, "c")
    np.testing.assert_array_equal(target.data, before)
    assert (target.data == obj).sum() == counts.max()
    status = widget.status_label.text()
    assert f"Object {obj} left as it is" in status and "empty" in status, status


def test_a_mask_on_other_objects_only_is_not_committed(plugin_widget, qtbot, nuclei2d, fast_models):
    """Overwrite off and every pixel of the mask taken: nothing is written, and the status says
    so instead of 'Committed object N (0 pixels changed)'."""
    viewer, widget, target = _open(plugin_widget, qtbot, nuclei2d, fast_models, empty=False)
    target.data[:] = 1  # one object covers the slice
    target.refresh()
    click_canvas(viewer, (250, 250))
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=10_000)
    if not widget.state.chosen_mask().any():
        widget.controller.choose(int(np.argmax([m.sum() for m in widget.state.prediction.masks])))
    assert widget.state.chosen_mask().any()
    key_canvas(viewer, "c")
    assert (target.data == 1).all()
    status = widget.status_label.text()
    assert "Nothing committed" in status and "Overwrite other objects" in status, status


def test_editing_with_a_mask_on_other_objects_only_keeps_the_object(plugin_widget, qtbot, nuclei2d, fast_models):
    """Overwrite off: a new mask that lies only on other objects would leave the edited object no
    pixel; it stays as it is."""
    viewer, widget, target = _open(plugin_widget, qtbot, nuclei2d, fast_models, empty=False)
    target.data[:] = 9  # another object everywhere, but for object 3 in a corner
    target.data[:4, :4] = 3
    target.refresh()
    target.selected_label = 3
    widget.edit_box.setChecked(True)
    viewer.layers.selection.active = widget.controller.prompts.points
    before = target.data.copy()
    click_canvas(viewer, (300, 300))
    qtbot.waitUntil(lambda: widget.state.prediction is not None, timeout=10_000)
    masks = widget.state.prediction.masks
    usable = [i for i, m in enumerate(masks) if m.any() and not m[:4, :4].any()]
    assert usable, "every candidate covers the corner"
    widget.controller.choose(usable[0])
    key_canvas(viewer, "c")
    np.testing.assert_array_equal(target.data, before)
    status = widget.status_label.text()
    assert "Object 3 left as it is" in status and "Overwrite other objects" in status, status

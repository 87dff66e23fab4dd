"""Propagate (Shift+P) in the real viewer: one undoable step, other objects kept."""

import numpy as np
from gui_helpers import show_target, wait_ready

from napari_segany.sample_data import load_sample


def _wait_done(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: widget.propagator.job is None, timeout=timeout)


def test_propagate_selected_label_is_one_undoable_step(widget_factory, qtbot, fast_models):
    volume = load_sample("nuclei3d")[26:36]
    truth = load_sample("nuclei3d_labels")[26:36]
    viewer, layer, widget = widget_factory(volume, fast_models[0])
    ids, counts = np.unique(truth[5][truth[5] > 0], return_counts=True)
    seed_id, other_id = int(ids[np.argmax(counts)]), int(ids[np.argmin(counts)])
    start = np.zeros_like(truth, dtype=np.uint32)
    start[5][truth[5] == seed_id] = seed_id
    start[truth == other_id] = other_id  # another object, on every slice it occupies
    target = show_target(qtbot, viewer, widget, start, seed_id, 5)

    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    QTest.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key_P, Qt.ShiftModifier)
    assert widget.propagator.job is not None, widget.status_label.text()
    _wait_done(qtbot, widget)
    result = widget.propagator.last_result
    after = np.asarray(target.data)
    assert "Propagated label" in widget.status_label.text()
    # the other object is untouched; only the seed id was written; the seed slice is kept
    np.testing.assert_array_equal(after == other_id, start == other_id)
    changed = after != start
    assert set(np.unique(after[changed])) <= {seed_id, 0}
    np.testing.assert_array_equal(after[5], start[5])
    reached = set(result.objects[seed_id].slices)
    assert set(np.flatnonzero(changed.any(axis=(1, 2)))) <= reached
    # one undo step restores the array exactly
    target.undo()
    np.testing.assert_array_equal(np.asarray(target.data), start)


def test_propagate_explains_what_is_missing(widget_factory, qtbot, nuclei2d, fast_models):
    viewer, layer, widget = widget_factory(nuclei2d[0], fast_models[0])
    wait_ready(qtbot, widget)
    assert widget.propagator.start() is False
    assert "2D" in widget.status_label.text()

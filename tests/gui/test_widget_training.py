"""Train on my annotations (issue 30): the widget's section fine-tunes the loaded model on a labels
layer and the image it belongs to, in a worker with progress, shows the estimate and the held-out
report, saves the new model among the user's own models, switches to it with "Use the new model",
and Cancel stops a run, keeping the best weights so far only if they improved. A 192 x 192 crop of
the real nuclei with its real labels (4 to 8 nuclei in each quarter) and the included model, with few
steps, keeps it short (a 256 x 256 crop's quarters hold 6 to 14, and each step and check took about
twice as long)."""

import numpy as np
import pytest
from qt_events import close_dock
from qtpy.QtCore import Qt

from napari_segany.weights import user_models


@pytest.fixture(scope="module")
def included_model():
    from napari_segany import load_model

    return load_model(device="cpu")


@pytest.fixture
def opened(plugin_widget, nuclei2d, included_model, qtbot, tmp_path, monkeypatch):
    """The dock opened as users do on a crop of the nuclei and its labels, the section expanded by
    a click, models saved into a private cache."""
    monkeypatch.setenv("SEGANY_CACHE", str(tmp_path))
    image, truth = nuclei2d
    viewer, dock, widget, layer = plugin_widget(image[:192, :192], included_model, name="nuclei crop")
    labels = viewer.add_labels(np.array(truth[:192, :192]), name="my nuclei")
    viewer.add_labels(np.zeros((192, 192), np.uint16), name="empty")  # nothing to learn from: not offered
    panel = widget.training_panel
    qtbot.mouseClick(panel.toggleButton(), Qt.LeftButton)
    qtbot.waitUntil(panel.isExpanded)
    yield viewer, widget, panel, labels, dock
    job = widget.training.job
    if job is not None:
        job.cancel()
        qtbot.waitUntil(lambda: job.ended, timeout=120_000)


def _click(qtbot, button):
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.LeftButton)


def _name(qtbot, panel, name):
    panel.name_edit.clear()
    qtbot.keyClicks(panel.name_edit, name)


def _start_long_run(qtbot, panel, name, steps_done):
    """Train ``name`` for 2000 steps (far more than the test waits for) until ``steps_done`` are done."""
    _name(qtbot, panel, name)
    panel.steps_spin.setValue(2000)
    panel.minutes_spin.setValue(30)
    _click(qtbot, panel.train_button)
    qtbot.waitUntil(lambda: panel.progress.format().startswith("Training: step")
                    and panel.progress.value() >= steps_done, timeout=240_000)


def test_training_saves_a_model_that_the_widget_switches_to(opened, qtbot, included_model):
    viewer, widget, panel, labels, dock = opened
    boxes = list(panel._checks.values())
    assert [b.text() for b in boxes] == ["'my nuclei' on 'nuclei crop'"] and boxes[0].isChecked()
    assert panel.name_edit.text() == "nuclei-crop-segany_vit_t_512"  # a free name is offered
    _name(qtbot, panel, "crop-nuclei")
    panel.steps_spin.setValue(3)
    box = panel.always_box  # saved whatever the score: this test is about the doors, not the gain
    qtbot.keyClick(box, Qt.Key_Space)  # as a user ticks a box from the keyboard
    assert box.isChecked()
    _click(qtbot, panel.train_button)
    assert widget.training.job is not None, widget.status_label.text()
    assert panel.cancel_button.isEnabled() and not panel.train_button.isEnabled() and not panel.progress.isHidden()
    assert "saved only if they improved" in widget.status_label.text()  # what Cancel does, said before
    qtbot.waitUntil(lambda: panel.estimate_label.text().startswith("Estimate: 4 pictures (1 held out: by quarter"),
                    timeout=120_000)
    qtbot.waitUntil(lambda: widget.training.job is None, timeout=300_000)

    result = widget.training.last
    report = panel.report_label.text()
    assert result is not None and "Held-out mean IoU on" in report and "3 steps (all steps done)" in report
    assert f"{result.report.before['mean']:.3f} -> {result.report.after['mean']:.3f}" in report
    path = user_models.folder() / "crop-nuclei.pt"
    assert result.path == path and path.is_file() and str(path) in report
    assert "saved as 'crop-nuclei'" in widget.status_label.text()
    assert panel.train_button.isEnabled() and panel.progress.isHidden()
    mp = widget.model_panel
    assert mp.model_combo.findData("crop-nuclei") >= 0  # offered in the model list, as one of yours
    assert "(yours)" in mp.model_combo.itemText(mp.model_combo.findData("crop-nuclei"))

    _click(qtbot, panel.use_button)
    qtbot.waitUntil(lambda: widget.state.predictor is not None
                    and widget.state.predictor.model.info.name == "crop-nuclei", timeout=60_000)
    assert mp.model_combo.currentData() == "crop-nuclei"
    assert widget.state.predictor.model.info.source == str(path)
    assert "crop-nuclei" in mp.model_label.text()
    assert included_model.info.name == "segany_vit_t_512"  # the model trained from is left as it was
    np.testing.assert_array_equal(labels.data, viewer.layers["my nuclei"].data)  # the annotations untouched


def test_cancel_stops_the_run_and_keeps_the_best_weights_only_if_they_improved(opened, qtbot):
    viewer, widget, panel, labels, dock = opened
    _start_long_run(qtbot, panel, "stopped-early", steps_done=2)
    _click(qtbot, panel.cancel_button)
    qtbot.waitUntil(lambda: widget.training.job is None, timeout=120_000)

    result = widget.training.last
    assert result.report.stopped == "cancelled" and 2 <= result.report.steps < 2000
    assert "cancelled" in panel.report_label.text()
    path = user_models.folder() / "stopped-early.pt"
    assert path.is_file() == result.improved == (result.path == path)
    assert panel.use_button.isEnabled() == result.improved
    assert ("Nothing was saved" in panel.report_label.text()) == (not result.improved)


def test_closing_the_dock_stops_the_training(opened, qtbot):
    viewer, widget, panel, labels, dock = opened
    _start_long_run(qtbot, panel, "closed-early", steps_done=1)
    job = widget.training.job
    close_dock(dock)
    assert widget.controller is None and job.cancelled and job.dropped
    qtbot.waitUntil(lambda: job.ended, timeout=120_000)  # it stopped like Cancel, long before 2000 steps
    assert widget.training.last is None  # the result never reached the closed widget


def test_nothing_to_learn_from_is_said_and_nothing_starts(plugin_widget, nuclei2d, included_model, qtbot):
    image, _ = nuclei2d
    viewer, dock, widget, layer = plugin_widget(image[:128, :128], included_model)
    panel = widget.training_panel
    qtbot.mouseClick(panel.toggleButton(), Qt.LeftButton)
    qtbot.waitUntil(panel.isExpanded)
    assert panel._checks == {} and panel.empty_label.isVisibleTo(panel)
    _click(qtbot, panel.train_button)
    assert widget.training.job is None and "Tick at least one labels layer" in widget.status_label.text()

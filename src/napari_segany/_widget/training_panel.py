"""The "Train on my annotations" section of the widget (collapsible, closed at first): the labels
layers to learn from, the new model's name, the time budget, Train and Cancel, a progress bar, the
held-out report, and "Use the new model". The work is :class:`.Training`'s."""

from __future__ import annotations

from qtpy.QtGui import QFontDatabase
from qtpy.QtWidgets import (
    QCheckBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton, QSpinBox,
    QVBoxLayout,
)
from .section import Section
from .training import CANCEL_RULE, Training, default_name

STAGES = {"estimate": "Measuring the time it takes...", "embedding": "Embeddings: %v of %m pictures",
          "before": "Checking the held-out objects (before)...", "training": "Training: step %v of %m",
          "after": "Checking the held-out objects (after)..."}


class TrainingPanel(Section):
    """Drives ``training`` (a :class:`Training`); ``use_model(name)`` is called by "Use the new model"."""

    def __init__(self, training: Training, use_model, parent=None) -> None:
        super().__init__("Train on my annotations", parent)
        self.training, self._use_model = training, use_model
        self._checks: dict[tuple[str, str], QCheckBox] = {}
        self._named = False  # the user typed a name: keep it
        layout = QVBoxLayout(self.content())
        layout.setContentsMargins(0, 0, 0, 0)
        intro = QLabel("Fine-tune the loaded model on the objects of these labels layers (each with its image): "
                       "the image encoder stays frozen, part of the data is held out to measure the result, "
                       "and the new model is saved among your own models only if it improved.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.layers_box = QVBoxLayout()
        layout.addLayout(self.layers_box)
        self.empty_label = QLabel("No labels layer with objects that matches an image yet: commit some objects.")
        self.empty_label.setWordWrap(True)
        layout.addWidget(self.empty_label)
        form = QFormLayout()
        self.name_edit = QLineEdit()
        self.name_edit.setToolTip("The new model's name among your own models (letters, digits, - and _); "
                                  "load it later by this name, here or with --model NAME.")
        self.name_edit.textEdited.connect(self._name_typed)
        form.addRow("New model", self.name_edit)
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.5, 240.0)
        self.minutes_spin.setValue(5.0)
        self.minutes_spin.setSuffix(" min")
        self.minutes_spin.setToolTip("Time budget for everything, embeddings and checks included.")
        form.addRow("Time budget", self.minutes_spin)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 100_000)
        self.steps_spin.setSpecialValueText("as the budget allows")
        self.steps_spin.setToolTip("Training steps (the time budget still applies).")
        form.addRow("Steps", self.steps_spin)
        self.held_out_spin = QDoubleSpinBox()
        self.held_out_spin.setRange(0.05, 0.9)
        self.held_out_spin.setSingleStep(0.05)
        self.held_out_spin.setValue(0.25)
        self.held_out_spin.setToolTip("Share of the images (or blocks of slices, or quarters of one image) held "
                                      "out to measure the result; never seen in training.")
        form.addRow("Held out", self.held_out_spin)
        layout.addLayout(form)
        self.always_box = QCheckBox("Save it even if it did not improve")
        self.always_box.setToolTip("Off (the default): the new model is saved only when it scores better than the "
                                   "loaded one on the held-out objects.")
        layout.addWidget(self.always_box)
        buttons = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip(CANCEL_RULE)
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        layout.addWidget(self.progress)
        self.estimate_label = QLabel()
        self.estimate_label.setWordWrap(True)
        layout.addWidget(self.estimate_label)
        self.report_label = QLabel()
        self.report_label.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.report_label.setWordWrap(True)
        layout.addWidget(self.report_label)
        self.use_button = QPushButton("Use the new model")
        self.use_button.setEnabled(False)
        layout.addWidget(self.use_button)

        self.train_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(training.cancel)
        self.use_button.clicked.connect(self._use)
        self.toggled.connect(lambda *_: self.refresh())
        training.busy.connect(self._busy)
        training.progress.connect(self._progress)
        training.estimated.connect(self._estimated)
        training.finished.connect(self._finished)

    # -- the layers ------------------------------------------------------------
    def refresh(self, *_) -> None:
        """List the labels layers that can be learnt from (only while the section is open: it reads
        their data); ticked: the ones the user committed to, or all when there are none such."""
        if not self.isExpanded():
            return
        pairs = self.training.pairs()
        before = {key: box.isChecked() for key, box in self._checks.items()}
        for box in self._checks.values():
            self.layers_box.removeWidget(box)
            box.deleteLater()
        self._checks = {}
        committed = any(p.target for p in pairs)
        for pair in pairs:
            key = (pair.labels, pair.image)
            box = QCheckBox(pair.text)
            box.setChecked(before.get(key, pair.target or not committed))
            box.pair = pair
            self.layers_box.addWidget(box)
            self._checks[key] = box
        self.empty_label.setVisible(not pairs)
        predictor = self.training.controller.state.predictor
        if not self._named and pairs and predictor is not None:
            self.name_edit.setText(default_name(predictor.model.info.name, pairs[0].image_name))

    def checked(self) -> list:
        return [box.pair for box in self._checks.values() if box.isChecked()]

    def _name_typed(self, text: str) -> None:
        self._named = bool(text)

    # -- running ---------------------------------------------------------------
    def start(self) -> bool:
        self.refresh()
        self.report_label.clear()
        self.estimate_label.clear()
        self.use_button.setEnabled(False)
        steps = self.steps_spin.value() or None
        return self.training.start(self.checked(), self.name_edit.text().strip(), minutes=self.minutes_spin.value(),
                                   steps=steps, held_out=self.held_out_spin.value(),
                                   always=self.always_box.isChecked())

    def _busy(self, busy: bool) -> None:
        self.train_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)

    def _estimated(self, text: str) -> None:
        self.estimate_label.setText(f"Estimate: {text}")

    def _progress(self, stage: str, done: int, total: int) -> None:
        counted = stage in ("embedding", "training") and total > 0
        self.progress.setRange(0, total if counted else 0)
        if counted:
            self.progress.setValue(min(done, total))
        self.progress.setFormat(STAGES.get(stage, stage))

    def _finished(self, result) -> None:
        if result is None:
            self.report_label.setText("Cancelled before the training began: nothing was saved.")
            return
        lines = [str(result.report)]
        if result.path is not None:
            lines.append(f"Saved as '{result.trained.info.name}'" + ("" if result.improved else
                         " although it did not improve") + f": {result.path}")
        else:
            lines.append("Nothing was saved.")
        self.report_label.setText("\n".join(lines))
        self.use_button.setEnabled(result.path is not None)
        self._named = False

    def _use(self) -> None:
        result = self.training.last
        if result is not None and result.path is not None:
            self._use_model(result.trained.info.name)

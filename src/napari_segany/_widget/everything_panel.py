"""The "Segment everything" box of the widget: scope, the replace option, the grid's parameters in
a collapsible section, the button, Cancel and a progress bar. The work is :class:`.Everything`'s."""

from __future__ import annotations

from dataclasses import fields

from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QProgressBar, QPushButton,
    QSpinBox, QVBoxLayout, QWidget,
)
from superqt import QCollapsible

from ..auto.grid import GridSettings
from .everything import Everything

SLICE, VOLUME = "Slice on screen", "Whole volume"
#: The prompt sources offered (:attr:`GridSettings.mode`); the model's own choice first.
MODE_NAMES = {"Model's": "auto", "Grid": "grid", "Instance head": "head"}


def _defaults() -> dict:
    return {f.name: f.default for f in fields(GridSettings)}


class EverythingPanel(QGroupBox):
    """Drives ``everything`` (an :class:`Everything`); ``settings()`` is what the fields say."""

    def __init__(self, everything: Everything, parent=None) -> None:
        super().__init__("Segment everything", parent)
        self.everything = everything
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.scope_combo = QComboBox()
        self.scope_combo.addItems([SLICE, VOLUME])
        self.scope_combo.setToolTip("The slice on screen, or every slice of the volume through it (objects "
                                    "that continue from slice to slice keep one id).")
        row.addWidget(self.scope_combo)
        self.replace_box = QCheckBox("Replace existing objects")
        self.replace_box.setToolTip("Off: only unlabelled pixels receive new objects; existing objects keep "
                                    "their pixels and ids. On: the result replaces the labels of the slice "
                                    "(or the volume). Either way one Ctrl+Z undoes it.")
        row.addWidget(self.replace_box)
        layout.addLayout(row)

        d = _defaults()
        self.settings_section = QCollapsible("Settings")
        content = QWidget()
        form = QFormLayout(content)
        form.setContentsMargins(0, 0, 0, 0)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(MODE_NAMES))
        self.mode_combo.setToolTip("Where the prompts come from. Model's: its instance head when it has one "
                                   "(one box per object it finds; fewer decoder calls) unless you set the "
                                   "points per side, else the grid. Grid: a grid of point prompts, with any "
                                   "model.")
        form.addRow("Prompts", self.mode_combo)
        self.points_spin = QSpinBox()
        self.points_spin.setRange(0, 256)
        self.points_spin.setSpecialValueText("auto")
        self.points_spin.setValue(d["points_per_side"] or 0)
        self.points_spin.setToolTip("Grid points along the image's longest side, in grid mode (auto: one every "
                                    f"{d.get('spacing', 32)} pixels of the model's frame). More finds smaller objects "
                                    "and takes longer.")
        form.addRow("Points per side", self.points_spin)
        self.iou_spin = self._fraction(d["min_iou"] or 0.0, "model's",
                                       "Candidates the model itself rates below this predicted IoU are dropped "
                                       "(model's: a level chosen for the loaded model).")
        form.addRow("Least predicted IoU", self.iou_spin)
        # None: the engine takes the loaded model's level (shown as "model's", at 0)
        self._auto_stability = d["min_stability"] is None
        self.stability_spin = self._fraction(d["min_stability"] or 0.0,
                                             "model's" if self._auto_stability else None,
                                             "Masks that change more than this when their cut-off moves are "
                                             "dropped (1 = perfectly stable; model's: a level chosen for the "
                                             "loaded model). Lower it (e.g. 0.85) on soft, blurry objects.")
        form.addRow("Least stability", self.stability_spin)
        self.area_spin = QSpinBox()
        self.area_spin.setRange(0, 10**8)
        self.area_spin.setSuffix(" px")
        self.area_spin.setValue(int(d["min_area"]))
        self.area_spin.setToolTip("Objects smaller than this (in pixels of the slice) are not kept.")
        form.addRow("Least object area", self.area_spin)
        self.settings_section.addWidget(content)
        layout.addWidget(self.settings_section)

        buttons = QHBoxLayout()
        self.run_button = QPushButton("Segment everything")
        self.run_button.setToolTip("Find every object without prompts of yours and write them into the "
                                   "target labels layer as one undoable step.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        layout.addWidget(self.progress)

        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(everything.cancel)
        everything.busy.connect(self._busy)
        everything.progress.connect(self._progress)

    @staticmethod
    def _fraction(value: float, special: str | None, tip: str) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(0.0, 1.0)
        spin.setSingleStep(0.01)
        spin.setDecimals(2)
        if special:
            spin.setSpecialValueText(special)
        spin.setValue(float(value))
        spin.setToolTip(tip)
        return spin

    def settings(self) -> GridSettings:
        """The grid's parameters as the fields say (0 = auto for the points and the IoU)."""
        return GridSettings(mode=MODE_NAMES[self.mode_combo.currentText()],
                            points_per_side=self.points_spin.value() or None,
                            min_iou=self.iou_spin.value() or None,
                            min_stability=(self.stability_spin.value() or None) if self._auto_stability
                            else float(self.stability_spin.value()),
                            min_area=int(self.area_spin.value()))

    def start(self) -> bool:
        try:
            settings = self.settings()
        except ValueError as exc:
            self.everything.status.emit(str(exc))
            return False
        return self.everything.start(settings, volume=self.scope_combo.currentText() == VOLUME,
                                     replace=self.replace_box.isChecked())

    def _busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 0))
        self.progress.setValue(min(done, total) if total > 0 else 0)

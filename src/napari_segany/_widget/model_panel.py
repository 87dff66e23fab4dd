"""The model panel: image layer, model, device and precision, with progress and Cancel."""

from __future__ import annotations

import os

from napari.layers import Image
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget,
)

from ..engine.precision import PRECISIONS  # "auto" first: the default
from ..weights import registry, user_models
from .layers import find_layer

LOCAL_FILE = "__local_file__"
DEVICES = ("auto", "cpu", "cuda", "mps")


def model_items() -> list[tuple[str, str]]:
    """(text, source) for every registry model, with its cache status."""
    items = []
    for name in registry.model_names():
        spec = registry.get_spec(name)
        if spec.bundled:
            where = "included"
        else:
            where = "cached" if registry.is_cached(name) else f"download {spec.size_text}"
        items.append((f"{name} ({where}) - {spec.description}", name))
    for own in user_models.list_models():  # fine-tuned and saved by name: loaded by that name
        items.append((f"{own.name} (yours) - {own.describe()}", own.name))
    return items


class ModelPanel(QWidget):
    """Emits ``load_requested(source, device, precision)``, ``cancel_requested()``
    and ``image_selected(layer or None)``."""

    load_requested = Signal(str, str, str)
    cancel_requested = Signal()
    image_selected = Signal(object)
    recompute_requested = Signal()

    def __init__(self, viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The image to segment; prompts apply to the slice on screen.")
        form.addRow("Image", self.image_combo)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("A registry model (downloaded once, verified), one of your own (fine-tuned) "
                                    "models, or a checkpoint file.")
        for text, source in model_items():
            self.model_combo.addItem(text, source)
        self.model_combo.addItem("Local file...", LOCAL_FILE)
        for combo in (self.image_combo, self.model_combo):  # long names must not widen the dock
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(16)
        self._select_default_model()
        form.addRow("Model", self.model_combo)
        row = QHBoxLayout()
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(PRECISIONS)
        self.precision_combo.setToolTip("auto: bf16 where it was measured faster than fp32 on this machine with "
                                        "logits within 2 %, else fp32. fp32 reproduces the reference.")
        row.addWidget(self.device_combo)
        row.addWidget(self.precision_combo)
        self.load_button = QPushButton("Load model")
        row.addWidget(self.load_button)
        form.addRow("Device", row)
        bar = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.recompute_button = QPushButton("Recompute embedding")
        self.recompute_button.setToolTip("Recompute this slice's embedding, e.g. after changing the contrast limits.")
        bar.addWidget(self.progress, 1)
        bar.addWidget(self.cancel_button)
        bar.addWidget(self.recompute_button)
        form.addRow(bar)
        self.model_label = QLabel("No model loaded.")
        self.model_label.setWordWrap(True)
        form.addRow(self.model_label)

        self.load_button.clicked.connect(self._load_clicked)
        self.cancel_button.clicked.connect(self.cancel_requested.emit)
        self.recompute_button.clicked.connect(self.recompute_requested.emit)
        self.model_combo.activated.connect(self._model_activated)
        self.image_combo.currentIndexChanged.connect(lambda _: self.image_selected.emit(self.image_layer))
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed):
            ev.connect(self.refresh_images)
        self.refresh_images()

    # -- image layers ---------------------------------------------------------
    @property
    def image_layer(self):
        """The chosen image layer (found by its ``unique_id``), or None."""
        return find_layer(self.viewer, self.image_combo.currentData())

    def refresh_images(self, event=None) -> None:
        current = self.image_combo.currentData()
        layers = [lay for lay in self.viewer.layers if isinstance(lay, Image)]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        for lay in layers:
            self.image_combo.addItem(lay.name, lay.unique_id)
        index = self.image_combo.findData(current) if current is not None else -1
        if index >= 0:
            self.image_combo.setCurrentIndex(index)
        self.image_combo.blockSignals(False)
        if self.image_combo.currentData() != current:
            self.image_selected.emit(self.image_layer)

    def set_image_layer(self, layer) -> None:
        index = self.image_combo.findData(layer.unique_id) if layer is not None else -1
        if index >= 0:
            self.image_combo.setCurrentIndex(index)

    # -- models -----------------------------------------------------------------
    def _select_default_model(self) -> None:
        self.model_combo.setCurrentIndex(self.model_combo.findData(registry.DEFAULT_MODEL))

    def _model_activated(self, index: int) -> None:
        if self.model_combo.itemData(index) != LOCAL_FILE:
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a Segment Anything checkpoint", os.path.expanduser("~"),
            "Checkpoints (*.pth *.pt *.ckpt *.bin *.safetensors);;All files (*)")
        if path:
            self.add_local_model(path)
        else:
            self._select_default_model()

    def add_local_model(self, path: str) -> None:
        """Add a checkpoint file to the model choices and select it."""
        path = str(path)
        index = self.model_combo.findData(path)
        if index < 0:
            self.model_combo.insertItem(0, f"file: {os.path.basename(path)}", path)
            self.model_combo.setItemData(0, path, 3)  # Qt.ToolTipRole
            index = 0
        self.model_combo.setCurrentIndex(index)

    @property
    def source(self) -> str | None:
        data = self.model_combo.currentData()
        return None if data in (None, LOCAL_FILE) else str(data)

    def _load_clicked(self) -> None:
        source = self.source
        if source is None:
            self._model_activated(self.model_combo.currentIndex())
            source = self.source
        if source is not None:
            self.load_requested.emit(source, self.device_combo.currentText(), self.precision_combo.currentText())

    # -- progress -----------------------------------------------------------------
    def set_busy(self, text: str) -> None:
        busy = bool(text)
        self.progress.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setRange(0, 0)  # indeterminate until a download reports sizes
        self.progress.setFormat(text)
        self.progress.setToolTip(text)

    def set_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * min(done / total, 1.0)))
            self.progress.setFormat(f"Downloading: {done / 1e6:.0f} of {total / 1e6:.0f} MB")

    def close_panel(self) -> None:
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.disconnect(self.refresh_images)

    def refresh_models(self) -> None:
        """Update the cached/download marks (after a download) and add the user's models saved
        since (after a fine-tuning)."""
        for text, source in model_items():
            index = self.model_combo.findData(source)
            if index >= 0:
                self.model_combo.setItemText(index, text)
            else:
                self.model_combo.insertItem(self.model_combo.findData(LOCAL_FILE), text, source)

    def load(self, source: str) -> None:
        """Choose ``source`` in the list and load it with the chosen device and precision."""
        self.select_model(source)
        self.load_requested.emit(source, self.device_combo.currentText(), self.precision_combo.currentText())

    def select_model(self, source: str) -> None:
        """Choose ``source`` (a registry name, one of the user's models, or a file) in the list."""
        index = self.model_combo.findData(source)
        if index < 0:
            self.refresh_models()
            index = self.model_combo.findData(source)
        if index >= 0:
            self.model_combo.setCurrentIndex(index)
        else:
            self.add_local_model(source)

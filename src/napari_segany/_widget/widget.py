"""The "Segment Anything" dock widget: layout, key bindings, and wiring to the controller."""

from __future__ import annotations

from functools import partial

from napari.layers import Labels
from qtpy.QtCore import QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QFormLayout, QFrame, QGroupBox, QHBoxLayout, QLabel, QPushButton, QScrollArea,
    QVBoxLayout, QWidget,
)

from .candidates import CandidatePicker
from .commit import fits_image, layer_file
from .controller import Controller
from .everything import Everything
from .everything_panel import EverythingPanel
from .lifecycle import HELP, LifecycleMixin, _deleted_with_the_viewer
from .layers import find_layer
from .preview import hex_rgb
from .model_panel import ModelPanel
from .prompts import ROLE
from .propagation import Propagator
from .state import WidgetState
from .training import Training
from .training_panel import TrainingPanel
from ..weights import registry
from ..engine.views import VIEW_COUNTS

NEW_LAYER = "(new labels layer)"

class SegmentAnythingWidget(LifecycleMixin, QWidget):
    """Promptable segmentation of the slice on screen into a Labels layer."""

    def __init__(self, napari_viewer, state: WidgetState | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.state = state or WidgetState()
        self.controller = Controller(napari_viewer, self.state)
        self.setToolTip(HELP)
        self._docked = False  # set when napari puts the widget in its dock (see ``event``)
        self._closed = [False]  # shared with ``_deleted_with_the_viewer``
        self._view_reset = False
        self._colors_for = None  # (target, slice, commits) the preview colour was chosen for
        self._commits = 0
        # everything scrolls inside the dock: content that grows (thumbnails, messages) never
        # makes the dock, and so the window and the canvas, change size under the user's mouse
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        content = QWidget()
        self.scroll.setWidget(content)
        outer.addWidget(self.scroll)
        layout = QVBoxLayout(content)

        self.model_panel = ModelPanel(napari_viewer)
        box = QGroupBox("Model and image")
        QVBoxLayout(box).addWidget(self.model_panel)
        layout.addWidget(box)

        prompts = QGroupBox("Prompts")
        pl = QVBoxLayout(prompts)
        self.polarity_label = QLabel()
        buttons = QHBoxLayout()
        self.toggle_button = QPushButton("Toggle +/- (T)")
        self.clear_button = QPushButton("Clear prompts (X)")
        buttons.addWidget(self.toggle_button)
        buttons.addWidget(self.clear_button)
        pl.addWidget(self.polarity_label)
        pl.addLayout(buttons)
        self.picker = CandidatePicker()
        pl.addWidget(self.picker)
        self.regions_box = self._check("Only the prompted regions", self.state.options.prompted_regions,
                                       "prompted_regions", "On: islands of the mask away from the points "
                                       "and the box are dropped. Off: every region the model returns.")
        pl.addWidget(self.regions_box)
        self.zoom_box = self._check("Zoom into small objects", self.state.options.zoom, "zoom",
                                    "On: a small object is segmented again on an enlarged crop around it "
                                    "(computed in the background), which gives a finer mask; propagation "
                                    "too segments such objects on crops of the large slices.")
        pl.addWidget(self.zoom_box)
        views_row = QHBoxLayout()
        views_row.addWidget(QLabel("Mirrored views"))
        self.views_combo = QComboBox()
        self.views_combo.addItems([str(n) for n in VIEW_COUNTS])
        self.views_combo.setToolTip("The model's answers for this many mirrored copies of the slice are "
                                    "averaged: finer masks, one more embedding each. Set to the model's "
                                    "recommendation when a model is loaded.")
        self.views_combo.setCurrentText(str(self.state.options.views))
        self.views_combo.currentTextChanged.connect(self._views_chosen)
        views_row.addWidget(self.views_combo)
        pl.addLayout(views_row)
        layout.addWidget(prompts)

        commit = QGroupBox("Commit")
        form = QFormLayout(commit)
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("Labels layer that receives committed objects.")
        self.target_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.target_combo.setMinimumContentsLength(16)
        form.addRow("Target", self.target_combo)
        opts = self.state.options
        self.overwrite_box = self._check("Overwrite other objects", opts.overwrite, "overwrite",
                                         "Off: pixels of other objects keep their id.")
        self.selected_box = self._check("Use selected label id", opts.use_selected_label, "use_selected_label",
                                        "Commit as the target layer's selected label instead of a new id.")
        self.edit_box = self._check("Edit selected label", opts.edit_selected, "edit_selected",
                                    "Refine the selected object with new prompts; commit replaces it on this slice.")
        self.autosave_box = self._check("Autosave next to the image", opts.autosave, "autosave",
                                        "After each commit, save the target labels as a TIFF beside the image file.")
        for w in (self.overwrite_box, self.selected_box, self.edit_box, self.autosave_box):
            form.addRow(w)
        self.commit_button = QPushButton("Commit (C)")
        form.addRow(self.commit_button)
        layout.addWidget(commit)

        self.propagator = Propagator(self.controller)
        volume = QGroupBox("Volume")
        vl = QHBoxLayout(volume)
        self.propagate_button = QPushButton("Propagate selected label (Shift+P)")
        self.propagate_button.setToolTip("Segment the neighbouring slices one by one, up and down, from the "
                                         "selected label on this slice; stops where the object ends.")
        self.propagate_cancel = QPushButton("Cancel")
        self.propagate_cancel.setEnabled(False)
        vl.addWidget(self.propagate_button)
        vl.addWidget(self.propagate_cancel)
        layout.addWidget(volume)

        self.everything = Everything(self.controller)
        self.everything_panel = EverythingPanel(self.everything)
        layout.addWidget(self.everything_panel)

        self.training = Training(self.controller)
        self.training_panel = TrainingPanel(self.training, self.model_panel.load)
        box = QGroupBox()  # framed like the other parts; the section's header is its title
        QVBoxLayout(box).addWidget(self.training_panel)
        layout.addWidget(box)

        self.status_label = QLabel("Load a model to start.")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        # background notes (autosave) get their own line: they never replace the status
        self.note_label = QLabel()
        self.note_label.setWordWrap(True)
        self.note_label.setStyleSheet("color: gray;")
        layout.addWidget(self.note_label)
        help_label = QLabel(HELP)
        help_label.setWordWrap(True)
        layout.addWidget(help_label)
        layout.addStretch(1)

        self._thumb_timer = QTimer(self, singleShot=True, interval=30)
        self._thumb_timer.timeout.connect(self._update_thumbnails)
        self._wire()
        self.refresh_targets()
        self._show_polarity()
        self._set_image(self.model_panel.image_layer)
        bar = self.scroll.verticalScrollBar().sizeHint().width()
        self.scroll.setMinimumWidth(content.minimumSizeHint().width() + bar)
        # closing the viewer deletes the dock and this widget with it (no close event, no
        # ParentChange): the work under way is dropped then, so that it never reaches a dead widget
        self.destroyed.connect(partial(_deleted_with_the_viewer, self.controller,
                                       (self.propagator, self.everything, self.training), self._closed))
        self._auto_load()

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name): as narrow as the content allows, for the canvas
        return QSize(self.minimumSizeHint().width(), super().sizeHint().height())

    def _auto_load(self) -> None:
        """Start loading the included model (in a worker), so that clicks work without pressing
        'Load model'. A predictor set meanwhile (or a model the user loads) wins over it."""
        mp = self.model_panel
        source = mp.source
        if (self.state.predictor is not None or source not in registry.REGISTRY
                or not registry.get_spec(source).bundled):
            return
        self.controller.load_model(source, mp.device_combo.currentText(), mp.precision_combo.currentText())
        if self.controller.model_job is not None:
            self.controller.model_job.automatic = True
        self.status_label.setText("Loading the included model...")

    def _set_image(self, layer) -> None:
        self.controller.set_image_layer(layer)
        self._bind_prompt_layers()
        has_file = layer is not None and layer_file(layer) is not None
        self.autosave_box.setEnabled(has_file)
        self.autosave_box.setText("Autosave next to the image" if has_file or layer is None
                                  else "Autosave (the image has no file)")

    def _check(self, text: str, value: bool, option: str, tip: str) -> QCheckBox:
        box = QCheckBox(text)
        box.setChecked(value)
        box.setToolTip(tip)
        box.toggled.connect(lambda v: self._option(option, v))
        return box

    def _option(self, name: str, value: bool) -> None:
        setattr(self.state.options, name, bool(value))
        if name == "prompted_regions":
            self.state.apply_regions()
        if name in ("edit_selected", "prompted_regions", "zoom"):  # the current prompts, predicted afresh
            self.controller.state.forget_prediction()
            self.controller.schedule_predict()

    def _views_chosen(self, text: str) -> None:
        views = int(text)
        if views != self.state.options.views:
            self.state.options.views = views
            self.controller.state.forget_prediction()
            self.controller.request_embedding()  # the slice with this many views: cached or computed

    # -- wiring ---------------------------------------------------------------
    def _wire(self) -> None:
        c, mp = self.controller, self.model_panel
        mp.load_requested.connect(c.load_model)
        mp.cancel_requested.connect(c.cancel)
        mp.recompute_requested.connect(lambda: c.request_embedding(force=True))
        mp.image_selected.connect(self._set_image)
        c.busy.connect(mp.set_busy)
        c.progress.connect(mp.set_progress)
        c.status.connect(self.status_label.setText)
        c.model_changed.connect(self._model_changed)
        c.prediction_changed.connect(self._prediction_changed)
        c.chosen_changed.connect(self.picker.set_chosen)
        c.target_changed.connect(self.refresh_targets)
        c.committed.connect(self._committed)
        c.autosaver.report = self._note
        self.picker.chosen.connect(c.choose)
        self.toggle_button.clicked.connect(self.toggle_polarity)
        self.clear_button.clicked.connect(c.clear_prompts)
        self.commit_button.clicked.connect(c.commit)
        p = self.propagator
        self.propagate_button.clicked.connect(p.start)
        self.propagate_cancel.clicked.connect(p.cancel)
        p.status.connect(self.status_label.setText)
        p.busy.connect(self.propagate_cancel.setEnabled)
        p.busy.connect(lambda busy: self.propagate_button.setEnabled(not busy))
        self.everything.status.connect(self.status_label.setText)
        self.everything.written.connect(self._committed)  # the preview's colour is chosen again
        t = self.training
        t.status.connect(self.status_label.setText)
        t.finished.connect(lambda result: self.model_panel.refresh_models())  # a model saved: in the list
        for ev in (c.committed, self.everything.written):  # a labels layer may now hold objects to learn from
            ev.connect(self.training_panel.refresh)
        self.target_combo.currentIndexChanged.connect(self._target_selected)
        layers = self.viewer.layers.events
        for ev in (layers.inserted, layers.removed):
            ev.connect(self.refresh_targets)
            ev.connect(self.training_panel.refresh)
        self._bind_keys()

    # -- reactions ---------------------------------------------------------------
    def toggle_polarity(self) -> None:
        self.controller.toggle_polarity()
        self._show_polarity()

    def _show_polarity(self) -> None:
        positive = self.controller.prompts.next_positive
        self.polarity_label.setText(
            "Next point: <b style='color:#39ff14'>positive</b> (object)" if positive
            else "Next point: <b style='color:#ff2bd6'>negative</b> (background)")

    def _model_changed(self) -> None:
        s = self.state
        self.model_panel.refresh_models()
        self.views_combo.setCurrentText(str(s.options.views))
        if s.predictor is not None:
            info = s.predictor.model.info
            self.model_panel.model_label.setText(
                f"Model: {info.name} ({info.arch}) on {s.predictor.device}, {s.predictor.precision}")
        self._bind_prompt_layers()

    def _prediction_changed(self) -> None:
        # thumbnails after the canvas has drawn the preview: they are not urgent
        self._thumb_timer.start()
        self._avoid_label_colors()

    def _avoid_label_colors(self) -> None:
        """Draw the preview in a colour none of the target's labels on this slice has (chosen again
        when the target, the slice or the labels change)."""
        c, s = self.controller, self.state
        if c is None or s.prediction is None or s.plane is None:
            return
        target = c.target_layer
        key = (None if target is None else target.unique_id, s.plane.key, self._commits)
        if key != self._colors_for:
            self._colors_for = key
            c.preview.avoid_labels(target, s.plane)

    def _committed(self, result) -> None:
        self._commits += 1

    def _note(self, text: str) -> None:
        if not self._closed[0]:  # an autosave may end after the widget was closed or deleted
            self.note_label.setText(text)

    def _update_thumbnails(self) -> None:
        if self.controller is None:  # closed meanwhile
            return
        s = self.state
        pred = s.prediction
        if pred is None or s.prediction_key != s.wanted:
            self.picker.set_candidates(None, None, None, None, 0)
            return
        if not pred.masks_ready:  # the worker is still making them; they come with a second signal
            return
        window = pred.embedding.window if pred.embedding is not None else (0.0, 1.0)
        self.picker.set_candidates(self.controller.image2d(), pred.masks, pred.scores, window, s.chosen,
                                   tint=255 * hex_rgb(self.controller.preview.color))

    def refresh_targets(self, event=None) -> None:
        """The Target box lists the labels layers of the image's shape and shows the current
        image's own target (or that a new layer will be made)."""
        current = self.controller.target_layer
        image = self.state.image_layer
        layers = [lay for lay in self.viewer.layers
                  if isinstance(lay, Labels) and lay.metadata.get(ROLE) != "preview"
                  and (image is None or fits_image(lay, image))]
        self.target_combo.blockSignals(True)
        self.target_combo.clear()
        self.target_combo.addItem(NEW_LAYER, None)
        for lay in layers:
            self.target_combo.addItem(lay.name, lay.unique_id)
        index = self.target_combo.findData(current.unique_id) if current is not None else 0
        self.target_combo.setCurrentIndex(max(index, 0))
        self.target_combo.blockSignals(False)

    def _target_selected(self, index: int) -> None:
        self.controller.set_target(find_layer(self.viewer, self.target_combo.itemData(index)))

    def set_target_layer(self, layer) -> None:
        """Choose the labels layer that receives commits on the current image (None: a new one)."""
        self.controller.set_target(layer)
        self.refresh_targets()

"""What happens when: model loaded, image or slice changed, prompts edited,
candidate chosen, commit. Holds no Qt widgets; the dock widget wires it up.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_warning
from qtpy.QtCore import QObject, QTimer, Signal

from ..engine.predictor import ImageEmbedding, Predictor
from .autosave import Autosaver
from .cache import EmbeddingKey, for_slice, one_view
from .committing import CommitMixin
from .decoding import DecodeRunner
from .predicting import PredictMixin
from .geometry import current_plane, layer_array
from .layers import has_layer, same_layer
from .preview import PreviewLayer
from .prompts import PromptLayers
from .state import WidgetState
from .workers import Job, start_embedding, start_model_load
from .zoom import WidgetZoom


class Controller(CommitMixin, PredictMixin, QObject):
    """Glue between napari layers, the predictor and background workers.

    Signals: ``status(str)`` a sentence for the user; ``busy(str)`` what is
    running ('' when idle); ``prediction_changed()``; ``committed(object)``
    with the Commit; ``target_changed()`` when a new labels layer was made.
    """

    status = Signal(str)
    busy = Signal(str)
    progress = Signal(int, int)
    prediction_changed = Signal()
    chosen_changed = Signal(int)
    committed = Signal(object)
    target_changed = Signal()
    model_changed = Signal()
    target_deleted = Signal(object)  # the unique_id of a target layer that was deleted

    def __init__(self, viewer, state: WidgetState | None = None, debounce_ms: int = 10) -> None:
        super().__init__()
        self.viewer = viewer
        self.state = state or WidgetState()
        self._targets: dict[str | None, str] = {}  # image layer id -> its target labels layer id
        self._watched_target = None
        self._undo_bound: dict = {}  # labels layer id -> our Ctrl+Z binding on it (CommitMixin._bind_undo)
        self.prompts = PromptLayers(viewer, self.schedule_predict)
        self.preview = PreviewLayer(viewer)
        self.autosaver = Autosaver(self.status.emit, self._fail)
        self.model_job: Job | None = None
        self.zoom = WidgetZoom(self)
        self.decoder = DecodeRunner(self._answered, self._answer_failed, self._candidates_made)
        self._predict_timer = QTimer(self, singleShot=True, interval=debounce_ms)
        self._predict_timer.timeout.connect(self.predict_now)
        self._plane_timer = QTimer(self, singleShot=True, interval=120)
        self._plane_timer.timeout.connect(self.refresh_plane)
        for ev in (viewer.dims.events.current_step, viewer.dims.events.ndisplay, viewer.dims.events.order):
            ev.connect(self._dims_changed)
        viewer.layers.events.removed.connect(self._layer_removed)

    # -- model --------------------------------------------------------------
    def load_model(self, source: str, device: str = "auto", precision: str = "auto") -> None:
        """Load ``source`` (registry name or file) in a worker, then use it."""
        if self.model_job is not None:
            self.model_job.cancel()
        self.busy.emit(f"Loading model {source}...")
        self.model_job = start_model_load(source, device, precision, self._model_loaded,
                                          self._model_failed, self.progress.emit)

    def _model_loaded(self, job: Job, predictor: Predictor | None) -> None:
        if job is self.model_job:
            self.model_job = None
            if job.automatic and self.state.predictor is not None:
                if self.state.job is None:  # else the embedding under way keeps its busy line
                    self.busy.emit("")
                return  # the widget's automatic load of the included model never replaces a model set meanwhile
            self.busy.emit("")
            if predictor is None:
                self.status.emit("Model loading was cancelled.")
            else:
                self.set_predictor(predictor, predictor.model.info.name)

    def _model_failed(self, job: Job, exc: Exception) -> None:
        if job is self.model_job:
            self.model_job = None
            self.busy.emit("")
            self._fail("Model loading was cancelled." if job.cancelled
                       else f"Could not load model {job.what!r}: {exc}")

    def set_predictor(self, predictor: Predictor | None, label: str = "") -> None:
        s = self.state
        if s.job is not None:
            s.job.cancel()
            s.job.restart = True
        s.predictor, s.model_label = predictor, label
        s.apply_regions()
        if predictor is not None:
            s.options.views = predictor.model.info.views  # the model's recommendation; the user may change it
        self._forget()
        self.model_changed.emit()
        if predictor is not None:
            self.status.emit(f"Model {label} ready on {predictor.device} ({predictor.precision}).")
        self.request_embedding()

    # -- image and slice ----------------------------------------------------
    def set_image_layer(self, layer) -> None:
        s = self.state
        if same_layer(layer, s.image_layer) or (layer is None and s.image_layer is None):
            return
        self._watch_image(False)
        if s.job is not None:
            s.job.cancel()
            s.job.restart = True
        s.image_layer, s.plane, s.image2d, s.image2d_key = layer, None, None, None
        self._forget()
        if layer is not None:
            self._watch_image(True)
            self.prompts.ensure(layer)
            self.prompts.clear(layer, None)  # prompts placed on another image do not apply
        self._follow_target()
        self.target_changed.emit()
        self.refresh_plane()

    def _watch_image(self, on: bool) -> None:
        """Follow (or stop following) the image layer's data and contrast."""
        layer = self.state.image_layer
        if layer is None:
            return
        events = ((layer.events.data, self._image_data_changed),
                  (layer.events.contrast_limits, self._contrast_changed))
        for event, handler in events:
            if on:
                event.connect(handler)
            else:
                event.disconnect(handler)

    def _image_data_changed(self, event=None) -> None:
        s = self.state
        uid = s.image_layer.unique_id
        s.bump_generation(uid)
        s.cache.discard(lambda k: k.layer_id == uid)
        s.plane, s.image2d, s.image2d_key = None, None, None
        self._forget()
        self.refresh_plane()

    def _contrast_changed(self, event=None) -> None:
        self._plane_timer.start()  # debounced: a contrast drag asks for one embedding, at its end

    def _dims_changed(self, event=None) -> None:
        self._plane_timer.start()

    def _layer_removed(self, event) -> None:
        layer = event.value
        s = self.state
        if same_layer(layer, s.image_layer):
            s.cache.discard(lambda k: k.layer_id == layer.unique_id)
            self.set_image_layer(None)
        if layer.unique_id in self._targets.values() or same_layer(layer, self._watched_target):
            self.target_removed(layer)

    def refresh_plane(self) -> None:
        """Follow the slice on screen; ask for its embedding."""
        s = self.state
        layer = s.image_layer
        plane = current_plane(self.viewer, layer) if has_layer(self.viewer, layer) else None
        if plane != s.plane:
            s.plane = plane
            self._forget()
        self.request_embedding()

    def embedding_key(self) -> EmbeddingKey | None:
        s = self.state
        if s.predictor is None or s.plane is None or s.image_layer is None:
            return None
        uid = s.image_layer.unique_id
        return EmbeddingKey(uid, s.generation(uid), s.plane.key, s.predictor.model_id, s.options.views,
                            self._window())

    def _window(self) -> tuple[float, float] | None:
        """The contrast limits the slice on screen is encoded with (None: uint8 RGB, 0-255)."""
        s = self.state
        if s.plane.rgb and np.dtype(s.image_layer.dtype) == np.uint8:
            return None
        return tuple(float(v) for v in s.image_layer.contrast_limits)

    def image2d(self) -> np.ndarray:
        """The slice on screen (``state.wanted``'s), read once per slice and data version (a new
        contrast window, model or views count reads nothing again)."""
        s = self.state
        pixels = (s.wanted.layer_id, s.wanted.generation, s.wanted.plane)
        if s.image2d is None or s.image2d_key != pixels:
            s.image2d, s.image2d_key = s.plane.extract(layer_array(s.image_layer)), pixels
        return s.image2d

    def request_embedding(self, force: bool = False) -> None:
        """Make sure the embedding of what is on screen is (being) computed: from the cache, or in
        a worker (``force`` recomputes it). With mirrored views, one view comes first, so that the
        first answer does not wait for the others (answers refine when they arrive)."""
        s = self.state
        old, key = s.wanted, self.embedding_key()
        s.wanted = key
        if key != old:
            self._forget()  # a prediction belongs to the slice it was made on
        if key is None:
            if s.image_layer is not None and s.plane is None and self.viewer.dims.ndisplay != 2:
                self.status.emit("Switch the viewer to 2D to segment: prompts work on the slice on screen.")
            return
        if force:
            s.cache.discard(lambda k: k in (key, one_view(key)))
        todo = self._todo(key)
        if (key != old or force) and s.usable() is not None:
            self._use()
        if s.job is not None and not for_slice(s.job.what, key):
            s.job.cancel()  # not needed any more; its end starts what is wanted then
            s.job.restart = True
        if todo is None or s.job is not None:  # one embedding at a time: the model's modules are shared
            if s.job is not None:
                s.job.restart = True
            return
        if not (s.options.auto_embed or force):
            self.status.emit("Press 'Recompute embedding' to segment this slice.")
            return
        kwargs = {"rgb": s.plane.rgb, "contrast_limits": key.window}
        first = s.cache.get(one_view(key)) if todo == key and key.views > 1 else None
        if first is not None:
            kwargs["reuse"] = first  # the mirrored views are added to the first one
        s.job = start_embedding(todo, s.predictor, self.image2d(), kwargs, self._embedding_done,
                                self._embedding_failed)
        self.busy.emit(f"Adding the mirrored views of {self._where()}..." if first is not None
                       else f"Computing the embedding of {self._where()}...")

    def _todo(self, key: EmbeddingKey) -> EmbeddingKey | None:
        """The embedding to compute next for ``key``: its one-view version first, then ``key``."""
        cache = self.state.cache
        if cache.get(key) is not None:
            return None
        return one_view(key) if key.views > 1 and cache.get(one_view(key)) is None else key

    def _embedding_done(self, job: Job, emb: ImageEmbedding | None) -> None:
        s = self.state
        self._job_ended(job)
        key = job.what
        # a result is kept only for the data it was computed from, and used only
        # if it is (still) for what the screen shows: same image, slice, model and window
        if emb is not None and key.generation == s.generation(key.layer_id):
            s.cache.put(key, emb)
            if s.wanted is not None and key in (s.wanted, one_view(s.wanted)):
                self._use()
        self._next(job)

    def _embedding_failed(self, job: Job, exc: Exception) -> None:
        self._job_ended(job)
        if not job.cancelled:
            self._fail(f"Computing the embedding failed: {exc}")
        self._next(job)

    def _job_ended(self, job: Job) -> None:
        if self.state.job is job:
            self.state.job = None
            self.busy.emit("")

    def _next(self, job: Job | None = None) -> None:
        """After a job (or an answer) ended: start the embedding the screen needs now, then a
        wanted crop. While prompts are being answered this waits for the answer (the next embedding
        would take the CPU from it), which calls it again."""
        s = self.state
        if s.job is not None or s.wanted is None or (job is not None and job.cancelled and not job.restart):
            return
        if not self.decoder.idle:
            return
        if self._todo(s.wanted) is not None:
            self.request_embedding()
        else:
            self.zoom.start_wanted()

    def _use(self) -> None:
        s = self.state
        if s.embedding_ready:
            self.status.emit(f"Ready: click on {self._where()} (T toggles positive/negative).")
        else:
            self.status.emit(f"Ready: click on {self._where()} (the mirrored views are being added; "
                             "answers refine when they are).")
        self.predict_now()

    def cancel(self) -> None:
        """Stop the running download/model load and embedding."""
        embedding = self.state.job is not None
        for job in self._jobs:
            job.cancel()
            job.restart = False
        self.status.emit("Cancelled. Press 'Recompute embedding' to compute this slice's embedding."
                         if embedding else "Cancelled.")

    @property
    def _jobs(self) -> list[Job]:
        """The model load and the embedding (whole image or zoomed crop) under way, if any."""
        return [j for j in (self.model_job, self.state.job) if j is not None]

    @property
    def is_busy(self) -> bool:
        return any(j.running for j in self._jobs) or self.autosaver.busy

    # -- helpers ----------------------------------------------------------------
    def _where(self) -> str:
        s = self.state
        if s.plane is None or not s.plane.fixed:
            return "the image"
        return "slice " + ", ".join(f"axis {a} = {i}" for a, i in s.plane.fixed)

    def _fail(self, message: str) -> None:
        show_warning(message)
        self.status.emit(message)

    def close(self) -> None:
        # results that arrive after this must not touch the viewer (it may be closing)
        for job in self._jobs:
            job.drop()
        self.decoder.close()
        for timer in (self._predict_timer, self._plane_timer):
            try:
                timer.stop()
            except RuntimeError:  # Qt deleted it already: the viewer closed before the widget did
                pass
        for ev in (self.viewer.dims.events.current_step, self.viewer.dims.events.ndisplay,
                   self.viewer.dims.events.order):
            ev.disconnect(self._dims_changed)
        self.viewer.layers.events.removed.disconnect(self._layer_removed)
        if self._watched_target is not None:
            self._watched_target.events.selected_label.disconnect(self._selected_label_changed)
            self._watched_target = None
        self._undo_bound: dict = {}  # labels layer id -> our Ctrl+Z binding on it (CommitMixin._bind_undo)
        self._watch_image(False)

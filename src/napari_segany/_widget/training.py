"""Train on my annotations: the widget's model fine-tuned (:func:`napari_segany.finetune`) on the
labels layers the user annotated, each with the image it was made on, in a worker with progress and
Cancel; the new model is saved among the user's own models when it improved on the held-out objects.

Which image a labels layer belongs to: the image whose target it is in this widget (the user
committed to it), else the first image layer of its shape. Only layers holding objects are offered.
The layers' data are copied when the run starts, so annotating goes on meanwhile. Cancel (or
closing the dock) stops the training: the best weights so far are checked on the held-out objects
and saved only if they improved; cancelled before the training began, nothing is saved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from qtpy.QtCore import QObject, Signal

from ..engine.predictor import Cancelled
from ..weights import user_models
from ._compat import guard_triton
from .commit import fits_image
from .geometry import layer_array
from .layers import find_layer
from .prompts import ROLE
from .workers import Job, launch

CANCEL_RULE = ("Cancel stops the training: the best weights so far are checked on the held-out objects and "
               "saved only if they improved, else nothing is saved.")


@dataclass(frozen=True)
class Pair:
    """A labels layer and the image it was made on (by ``unique_id``); ``target``: the widget's own
    target of that image, i.e. the user committed to it."""

    labels: str
    image: str
    text: str
    target: bool
    image_name: str = ""


def find_pairs(viewer, targets: dict) -> list[Pair]:
    """Every labels layer (not the preview) that holds objects and has the shape of an image layer,
    with its image: the one whose target it is (``targets``: image id -> labels id), else the first
    image of its shape."""
    images = [lay for lay in viewer.layers if isinstance(lay, Image)]
    found = []
    for lay in viewer.layers:
        if not isinstance(lay, Labels) or lay.metadata.get(ROLE) == "preview":
            continue
        fitting = [img for img in images if fits_image(lay, img)]
        own = [img for img in fitting if targets.get(img.unique_id) == lay.unique_id]
        chosen = (own or fitting or [None])[0]
        if chosen is not None and np.asarray(lay.data).any():
            found.append(Pair(lay.unique_id, chosen.unique_id, f"'{lay.name}' on '{chosen.name}'", bool(own),
                              chosen.name))
    return found


def default_name(base: str, image: str) -> str:
    """A free name for the user's new model: ``<image>-<base>``, made of allowed characters, with a
    number added when the user already has one of that name."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{image}-{base}").strip("-_")[:56] or "my-model"
    name, n = stem, 1
    while not _free(name):
        n += 1
        name = f"{stem}-{n}"
    return name


def _free(name: str) -> bool:
    try:
        user_models.check_name(name)
    except ValueError:
        return False
    return user_models.find(name) is None


def _arrays(viewer, pairs: list[Pair]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Copies of the pairs' image and labels arrays (ValueError with advice when one cannot be used)."""
    out = []
    for pair in pairs:
        image, labels = find_layer(viewer, pair.image), find_layer(viewer, pair.labels)
        if image is None or labels is None:
            raise ValueError(f"The layers of {pair.text} were removed; tick other labels layers.")
        if not fits_image(labels, image):
            raise ValueError(f"{pair.text}: the labels layer no longer has the image's shape.")
        spatial = image.ndim
        if spatial not in (2, 3) or (spatial == 3 and image.rgb):
            raise ValueError(f"{pair.text}: training takes 2D images and 3D volumes (slices along their first "
                             f"axis); this image has {spatial} axes.")
        pixels = np.array(layer_array(image))
        out.append((pixels, np.array(labels.data)))
    return out


class Training(QObject):
    """Runs fine-tuning for the widget. Signals: ``status(str)`` a sentence for the status line;
    ``busy(bool)``; ``progress(stage, done, total)``; ``estimated(str)`` before the work;
    ``finished(object)`` the :class:`~napari_segany.finetune.FinetuneResult` (None when cancelled
    before training)."""

    status = Signal(str)
    busy = Signal(bool)
    progress = Signal(str, int, int)
    estimated = Signal(str)
    finished = Signal(object)

    def __init__(self, controller) -> None:
        super().__init__()
        self.controller = controller
        self.job: Job | None = None
        self.last = None  # the last FinetuneResult, for the panel (and the tests)

    def pairs(self) -> list[Pair]:
        return find_pairs(self.controller.viewer, self.controller._targets)

    def start(self, pairs: list[Pair], name: str, *, minutes: float, steps: int | None = None,
              held_out: float = 0.25, always: bool = False) -> bool:
        """Fine-tune the loaded model on ``pairs`` into the user's model ``name`` (saved when it
        improved, or ``always``); False, with a status sentence, when it cannot start."""
        if self.job is not None:
            self.status.emit("Training is already running; wait for it or press Cancel.")
            return False
        predictor = self.controller.state.predictor
        try:
            if predictor is None:
                raise ValueError("Load a model first: training starts from the loaded model.")
            if not pairs:
                raise ValueError("Tick at least one labels layer with objects to train on.")
            path = user_models.path_for(name)
            if path.exists():
                raise ValueError(f"You already have a model called {name!r}; choose another name.")
            arrays = _arrays(self.controller.viewer, pairs)
        except ValueError as exc:
            self.status.emit(str(exc))
            return False
        from ..finetune import estimate, finetune

        model = predictor.model
        job = Job(name)
        settings = dict(max_minutes=minutes, steps=steps, held_out=held_out)
        guard_triton()

        @thread_worker
        def run():
            found = estimate(model, arrays, **settings)
            self.estimated.emit(str(found))
            if job.cancelled:
                return None
            try:
                return finetune(model, arrays, name, progress=lambda *a: self.progress.emit(*a),
                                should_stop=lambda: job.cancelled, save="always" if always else "improved",
                                **settings)
            except Cancelled:  # during the embeddings: nothing learnt yet
                return None

        self.job, self.last = job, None
        self.busy.emit(True)
        self.progress.emit("estimate", 0, 0)
        self.status.emit(f"Training {name!r} from {model.info.name} on {len(pairs)} labels layer"
                         f"{'s' * (len(pairs) != 1)}: measuring how long it takes... {CANCEL_RULE}")
        launch(job, run(), self._done, self._failed)
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.emit("Stopping the training: checking the best weights so far on the held-out objects...")

    def _finish(self) -> None:
        self.job = None
        self.busy.emit(False)

    def _failed(self, job: Job, exc: Exception) -> None:
        self._finish()
        self.status.emit(f"Training could not be done: {exc}")

    def _done(self, job: Job, result) -> None:
        self._finish()
        self.last = result
        if result is None:
            self.status.emit("Training was cancelled before it began learning; nothing was saved.")
        elif result.path is not None:
            how = "improved the held-out score" if result.improved else "did not improve the held-out score"
            self.status.emit(f"Training {how}; saved as {job.what!r} among your own models. Press 'Use the new "
                             "model' to switch to it.")
        else:
            self.status.emit(f"Training did not improve the held-out score, so nothing was saved; keep using "
                             f"{result.model.info.name}.")
        self.finished.emit(result)

    def close(self) -> None:
        if self.job is not None:
            self.job.drop()  # stops like Cancel; the result never reaches a closed widget

"""Prompts answered off the GUI thread: the decoder (and the masks' upscaling and refinement) runs
in a worker, one request at a time; while one runs, only the newest request waits.

A request carries everything its answer depends on, read on the GUI thread: the key and the
embedding it answers on, the prompts and their signature, and the ZoomPredictor to use. The
controller decides on arrival whether the answer still belongs to what is on screen.

An answer with several candidates (one click) arrives in two steps: first with the best candidate's
full-size mask only, which the preview shows at once; then, from the same worker, with the other
candidates' masks too (each one is upscaled and boundary-refined), which the thumbnails show.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from napari.qt.threading import thread_worker

from ..engine.predictor import ImageEmbedding, Prediction
from .cache import EmbeddingKey
from .workers import Job, launch


@dataclass
class DecodeRequest:
    key: EmbeddingKey  # of the embedding it answers on (maybe the quick one-view embedding)
    embedding: ImageEmbedding
    signature: frozenset  # of the prompts on screen when it was made
    prompts: dict  # keyword arguments of predict: points, labels, box, mask_input, multimask
    prompter: Any = None  # a ZoomPredictor, or None for the predictor itself
    predictor: Any = None
    missing: list = field(default_factory=list)  # crops the answer asked for and the cache lacked
    shown: bool = False  # its best candidate has been delivered; the others follow


_collecting = threading.local()  # the request a worker thread answers (for missing_crop)


def missing_crop(item) -> None:
    """Called while answering (in the worker): a crop the answer wanted is not computed yet."""
    request = getattr(_collecting, "request", None)
    if request is not None:
        request.missing.append(item)


def answer(request: DecodeRequest, best_only: bool = False) -> Prediction:
    """The prediction for ``request``, with every candidate's full-size mask made (for the preview
    and the thumbnails), so that the GUI thread only draws; ``best_only``: the best one's only."""
    _collecting.request = request
    try:
        return _answer(request, best_only)
    finally:
        _collecting.request = None


def _answer(request: DecodeRequest, best_only: bool) -> Prediction:
    prompts = dict(request.prompts)
    if request.prompter is not None:
        pred = request.prompter.predict(**prompts)
    else:
        prompts.pop("mask_window", None)
        pred = request.predictor.predict(embedding=request.embedding, **prompts)
    if best_only:
        pred.mask(0)  # computed here, in the worker
    else:
        pred.masks  # noqa: B018 (computed here, in the worker)
    return pred


class DecodeRunner:
    """At most one decoder job at a time; ``submit`` while one runs keeps only the newest request.
    ``on_answer(request, prediction)``, ``on_candidates(request, prediction)`` (the same prediction
    with all its candidates' masks, after an answer delivered with the best one's only) and
    ``on_error(request, exc)`` run on the GUI thread."""

    def __init__(self, on_answer: Callable[[DecodeRequest, Prediction], None],
                 on_error: Callable[[DecodeRequest, Exception], None],
                 on_candidates: Callable[[DecodeRequest, Prediction], None] | None = None) -> None:
        self.on_answer, self.on_error, self.on_candidates = on_answer, on_error, on_candidates
        self.job: Job | None = None
        self.pending: DecodeRequest | None = None

    @property
    def idle(self) -> bool:
        """True when no request runs or waits (and every answer has been delivered)."""
        return self.pending is None and (self.job is None or not self.job.running)

    def submit(self, request: DecodeRequest) -> None:
        if self.job is not None and self.job.running:
            self.pending = request  # replaces an older waiting request: the newest prompts win
            return
        self._start(request)

    def forget(self) -> None:
        """Drop the waiting request (the running one's answer is judged when it arrives)."""
        self.pending = None

    def _start(self, request: DecodeRequest) -> None:
        job = Job(request)

        @thread_worker
        def run():
            pred = answer(request, best_only=True)
            if len(pred) > 1:
                yield pred  # the preview first
                pred.masks  # noqa: B018 (then the other candidates', for the thumbnails)
            return pred

        self.job = launch(job, run(), self._done, self._failed, self._first)

    def _first(self, job: Job, prediction: Prediction) -> None:
        job.what.shown = True
        self.on_answer(job.what, prediction)

    def _done(self, job: Job, prediction: Prediction) -> None:
        self._after(job)
        if not job.what.shown:
            self.on_answer(job.what, prediction)
        elif self.on_candidates is not None:
            self.on_candidates(job.what, prediction)

    def _failed(self, job: Job, exc: Exception) -> None:
        self._after(job)
        self.on_error(job.what, exc)

    def _after(self, job: Job) -> None:
        if self.job is job:
            self.job = None
        request, self.pending = self.pending, None
        if request is not None:
            self._start(request)

    def close(self) -> None:
        self.pending = None
        if self.job is not None:
            self.job.drop()

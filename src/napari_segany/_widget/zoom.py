"""Zoomed prediction in the widget: small objects segmented again on an enlarged
crop (:mod:`napari_segany.zoom`), whose embedding is computed in a worker.

The whole slice answers at once; when the crop's embedding arrives, the same
prompts are predicted again on it. Crop embeddings live in the widget's
embedding cache under the slice's key plus the crop.
"""

from __future__ import annotations

from dataclasses import replace

from ..predictor import ImageEmbedding, Prediction
from ..zoom import Window, ZoomPredictor
from .cache import EmbeddingKey
from .workers import Job, start_embedding


def crop_key(key: EmbeddingKey, window: Window) -> EmbeddingKey:
    """The cache key of a crop of the slice ``key`` names (same layer, data version and model), with
    the intensity window it is encoded with."""
    return replace(key, plane=(key.plane, "crop", window.top, window.left, window.height, window.width,
                               window.limits))


class WidgetZoom:
    """Answers the controller's prompts, zoomed when ``options.zoom`` is on."""

    def __init__(self, controller) -> None:
        self.controller = controller
        self._zoom: ZoomPredictor | None = None
        self._attached = (None, None, None)  # predictor, embedding, image the ZoomPredictor was made for

    def predict(self, *, mask_window=None, **prompts) -> Prediction:
        s = self.controller.state
        if not s.options.zoom:
            return s.predictor.predict(**prompts)
        return self._prompter().predict(mask_window=mask_window, **prompts)

    def _prompter(self) -> ZoomPredictor:
        s = self.controller.state
        now = (s.predictor, s.predictor.embedding, s.image2d)
        if any(a is not b for a, b in zip(now, self._attached)):
            self._zoom = ZoomPredictor(s.predictor, crops=self._crop)
            self._zoom.attach(s.predictor.embedding, s.image2d, rgb=s.plane.rgb)
            self._attached = now
        return self._zoom

    def _crop(self, window: Window, image, kwargs: dict) -> ImageEmbedding | None:
        """The crop's embedding from the cache, or None while a worker computes it."""
        c = self.controller
        s = c.state
        key = crop_key(s.ready, window)
        emb = s.cache.get(key)
        if emb is None and s.job is None:
            c.busy.emit("Computing a zoomed view of the object...")
            s.job = start_embedding(key, s.predictor, image, kwargs, self._done, c._embedding_failed)
        return emb

    def _done(self, job: Job, emb: ImageEmbedding | None) -> None:
        c = self.controller
        s = c.state
        c._job_ended(job)
        key = job.what
        if emb is not None and key.generation == s.generation(key.layer_id):
            s.cache.put(key, emb)
            if s.embedding_ready and replace(key, plane=key.plane[0]) == s.ready:  # a crop of this slice
                c.predict_now()  # the same prompts, now on the crop
        c._next(job)

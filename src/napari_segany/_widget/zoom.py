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
    """Answers the controller's prompts on a given embedding, zoomed when ``options.zoom`` is on."""

    def __init__(self, controller) -> None:
        self.controller = controller
        self._zoom: ZoomPredictor | None = None
        self._attached: tuple = (None, None)  # (predictor, slice key) the ZoomPredictor was made for

    def predict(self, key: EmbeddingKey, embedding: ImageEmbedding, *, mask_window=None, **prompts) -> Prediction:
        """The answer to ``prompts`` on ``embedding``, the embedding of the slice ``key`` names."""
        s = self.controller.state
        if not s.options.zoom:
            return s.predictor.predict(embedding=embedding, **prompts)
        return self._prompter(key, embedding).predict(mask_window=mask_window, **prompts)

    def _prompter(self, key: EmbeddingKey, embedding: ImageEmbedding) -> ZoomPredictor:
        s = self.controller.state
        zoom = self._zoom
        if zoom is None or self._attached != (s.predictor, key) or zoom.embedding is not embedding:
            zoom = ZoomPredictor(s.predictor, crops=lambda window, image, kwargs: self._crop(key, window, image,
                                                                                             kwargs))
            zoom.attach(embedding, self.controller.image2d(), rgb=s.plane.rgb)
            self._zoom, self._attached = zoom, (s.predictor, key)
        return zoom

    def _crop(self, key: EmbeddingKey, window: Window, image, kwargs: dict) -> ImageEmbedding | None:
        """The crop's embedding from the cache, or None while a worker computes it."""
        c = self.controller
        s = c.state
        ckey = crop_key(key, window)
        emb = s.cache.get(ckey)
        if emb is None and s.job is None:
            c.busy.emit("Computing a zoomed view of the object...")
            s.job = start_embedding(ckey, s.predictor, image, kwargs, self._done, c._embedding_failed)
        return emb

    def _done(self, job: Job, emb: ImageEmbedding | None) -> None:
        c = self.controller
        s = c.state
        c._job_ended(job)
        key = job.what
        if emb is not None and key.generation == s.generation(key.layer_id):
            s.cache.put(key, emb)
            if s.embedding_ready and replace(key, plane=key.plane[0]) == s.wanted:  # a crop of this slice
                c.predict_now()  # the same prompts, now on the crop
        c._next(job)

"""Zoomed prediction in the widget: small objects segmented again on an enlarged
crop (:mod:`napari_segany.engine.zoom`), whose embedding is computed in a worker.

The whole slice answers at once; when the crop's embedding arrives, the same
prompts are predicted again on it. Crop embeddings live in the widget's
embedding cache under the slice's key plus the crop.
"""

from __future__ import annotations

from dataclasses import replace

from ..engine.predictor import ImageEmbedding
from ..engine.zoom import Window, ZoomPredictor
from .cache import EmbeddingKey, for_slice, one_view
from .decoding import missing_crop
from .workers import Job, start_embedding


def crop_key(key: EmbeddingKey, window: Window) -> EmbeddingKey:
    """The cache key of a crop of the slice ``key`` names (same layer, data version and model), with
    the intensity window it is encoded with."""
    return replace(key, plane=(key.plane, "crop", window.top, window.left, window.height, window.width,
                               window.limits))


class WidgetZoom:
    """The ZoomPredictor for the slice on screen, whose crop embeddings come from the widget's cache
    and are computed in a worker when an answer (decoded in another worker) asks for them."""

    def __init__(self, controller) -> None:
        self.controller = controller
        self._zoom: ZoomPredictor | None = None
        self._attached: tuple = (None, None)  # (predictor, key) the ZoomPredictor was made for
        self._wanted = None  # (crop key, image, encode kwargs) to compute when the embedding worker is free

    def prompter(self, key: EmbeddingKey, embedding: ImageEmbedding) -> ZoomPredictor:
        """The ZoomPredictor for ``embedding`` of the slice ``key`` names (made on the GUI thread)."""
        s = self.controller.state
        zoom = self._zoom
        if zoom is None or self._attached != (s.predictor, key) or zoom.embedding is not embedding:
            zoom = ZoomPredictor(s.predictor, crops=lambda window, image, kwargs: self._crop(key, window, image,
                                                                                             kwargs))
            zoom.attach(embedding, self.controller.image2d(), rgb=s.plane.rgb)
            self._zoom, self._attached = zoom, (s.predictor, key)
        return zoom

    def _crop(self, key: EmbeddingKey, window: Window, image, kwargs: dict) -> ImageEmbedding | None:
        """The crop's embedding from the cache; None (and noted for the GUI thread) when missing.
        Runs in the decoder's worker."""
        ckey = crop_key(key, window)
        cache = self.controller.state.cache
        emb = cache.get(ckey)
        if emb is None:  # with mirrored views, the crop's first view comes first
            emb = cache.get(one_view(ckey)) if ckey.views > 1 else None
            missing_crop((ckey if emb is not None or ckey.views == 1 else one_view(ckey), image, kwargs))
        return emb

    def want(self, item) -> None:
        """Compute the crop ``item`` (from :func:`missing_crop`) in a worker, now or when the
        embedding worker is free."""
        self._wanted = item
        self.start_wanted()

    def start_wanted(self) -> None:
        c = self.controller
        s = c.state
        if self._wanted is None or s.job is not None or not c.decoder.idle:
            return  # the embedding worker is busy, or an answer is being made (it calls this again)
        (ckey, image, kwargs), self._wanted = self._wanted, None
        if s.wanted is None or not for_slice(ckey, s.wanted):
            return
        if s.cache.get(ckey) is not None:  # computed since the answer asked for it
            c.predict_now()
            return
        first = s.cache.get(one_view(ckey)) if ckey.views > 1 else None
        if first is not None:
            kwargs = {**kwargs, "reuse": first}
        c.busy.emit("Computing a zoomed view of the object...")
        s.job = start_embedding(ckey, s.predictor, image, kwargs, self._done, c._embedding_failed)

    def _done(self, job: Job, emb: ImageEmbedding | None) -> None:
        c = self.controller
        s = c.state
        c._job_ended(job)
        key = job.what
        if emb is not None and key.generation == s.generation(key.layer_id):
            s.cache.put(key, emb)
            if s.wanted is not None and for_slice(key, s.wanted):  # a crop of this slice
                c.predict_now()  # the same prompts, now on the crop
        c._next(job)

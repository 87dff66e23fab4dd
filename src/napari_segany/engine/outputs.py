"""What a :class:`napari_segany.Predictor` hands out: an image's embedding and a prompt's
candidate masks (also importable from :mod:`napari_segany.engine.predictor`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .preprocess import Geometry
from .views import View


@dataclass(frozen=True, eq=False)
class ImageEmbedding:
    """What the decoder needs from one image, detached from the image itself; immutable.

    It knows what it encodes: ``model_id`` (the model that computed it),
    ``image_id`` (:func:`image_fingerprint` of the pixels the model was shown,
    or a name the caller gave, e.g. a layer and slice) and ``window`` (the
    intensity window). A :class:`~napari_segany.Predictor` answers from it
    only for its own model, and :class:`~napari_segany.ZoomPredictor` only
    for the image it encodes.

    features: (256, h, w) float32; ``window`` is the intensity window used;
    ``views``: embeddings of mirrored copies of the image whose answers
    :meth:`Predictor.predict` averages in (:mod:`napari_segany.engine.views`), empty
    for one view. ``guide``: the (H, W) image in [0, 1] (channels averaged)
    that a model's boundary refiner reads (:mod:`napari_segany.engine.refine`);
    None for models without one.
    """

    features: np.ndarray
    geometry: Geometry
    model_id: str
    window: tuple[float, float] = (0.0, 1.0)
    views: tuple[tuple[View, "ImageEmbedding"], ...] = ()
    guide: np.ndarray | None = field(default=None, repr=False)
    image_id: str = ""

    @property
    def original_size(self) -> tuple[int, int]:
        return self.geometry.original_size

    @property
    def nbytes(self) -> int:
        """Memory held by the features of every view (and the refiner's guide image)."""
        guide = 0 if self.guide is None else int(self.guide.nbytes)
        return int(self.features.nbytes) + guide + sum(e.nbytes for _, e in self.views)


@dataclass
class Prediction:
    """Candidate masks for one prompt set, best first.

    scores: (K,) predicted IoU; logits: (K, h, w) low-res logits (pass one as
    ``mask_input`` to refine); masks: (K, H, W) bool at the image's size,
    computed on first access (``mask(i)`` computes a single one). ``window``:
    the crop of the image the logits belong to (:class:`napari_segany.engine.zoom.Window`),
    None for the whole image. ``embedding``: the embedding the answer comes from
    (of the crop, when there is a ``window``).
    """

    scores: np.ndarray
    logits: np.ndarray
    token_index: np.ndarray
    _upscale: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    _masks: np.ndarray | None = field(default=None, repr=False)
    window: object | None = None
    embedding: ImageEmbedding | None = field(default=None, repr=False)  # what it answers on
    _single: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # masks made one at a time

    @property
    def masks(self) -> np.ndarray:
        if self._masks is None:
            if self._single:  # reuse those already made (a boundary refiner makes each one cost)
                self._masks = np.stack([self.mask(i) for i in range(len(self.logits))])
            else:
                self._masks = self._upscale(self.logits)
        return self._masks

    @property
    def masks_ready(self) -> bool:
        """Whether every candidate's full-resolution mask is made (``masks`` costs nothing more)."""
        return self._masks is not None or len(self._single) == len(self.logits)

    def mask(self, i: int = 0) -> np.ndarray:
        """Full-resolution mask of candidate ``i`` (0 = best) without computing the others."""
        if self._masks is not None:
            return self._masks[i]
        if i not in self._single:
            self._single[i] = self._upscale(self.logits[i : i + 1])[0]
        return self._single[i]

    def __len__(self) -> int:
        return len(self.scores)

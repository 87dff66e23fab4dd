"""The state of one Segment Anything widget (one instance per widget, no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.predictor import ImageEmbedding, Prediction, Predictor
from .cache import EmbeddingKey, EmbeddingStore, MemoryEmbeddingCache, one_view
from .geometry import Plane


@dataclass
class Options:
    """User choices that change what a commit does."""

    overwrite: bool = False  # may the mask take pixels of other objects?
    use_selected_label: bool = False  # commit as the target layer's selected label
    edit_selected: bool = False  # refine and replace the selected label
    autosave: bool = True  # save target labels next to the image after each commit
    auto_embed: bool = True  # compute the embedding of a slice as soon as it is shown
    prompted_regions: bool = True  # drop mask islands away from the prompts (Predictor regions="prompted")
    zoom: bool = True  # segment small objects again on an enlarged crop (napari_segany.engine.zoom)
    views: int = 1  # mirrored views averaged (napari_segany.engine.views); set to the model's recommendation on loading


@dataclass
class WidgetState:
    """Everything the widget knows, passed explicitly to its parts.

    ``wanted`` is the key of the embedding the screen needs now (layer, data
    version, slice, model, views, contrast window). What is ready is derived
    from the cache alone: the embedding under ``wanted``, if it is there. A
    prediction is made on that embedding and remembers its key
    (``prediction_key``); whatever arrives for another key is not shown.
    """

    cache: EmbeddingStore = field(default_factory=MemoryEmbeddingCache)
    options: Options = field(default_factory=Options)
    predictor: Predictor | None = None
    model_label: str = ""
    image_layer: Any = None
    plane: Plane | None = None
    generations: dict[str, int] = field(default_factory=dict)
    wanted: EmbeddingKey | None = None
    job: Any = None  # the running EmbeddingJob, if any
    prediction: Prediction | None = None
    prediction_key: EmbeddingKey | None = None
    chosen: int = 0
    prompt_signature: frozenset = frozenset()
    image2d: np.ndarray | None = None  # the slice on screen (for thumbnails and zoomed crops) ...
    image2d_key: tuple | None = None  # ... for this (layer id, data generation, plane)
    last_commit: Any = None
    refining: bool = False  # the answer on screen is not the final one: a crop or more views are under way

    def usable(self) -> tuple[EmbeddingKey, ImageEmbedding] | None:
        """(key, embedding) to answer on now: the wanted one, or while its mirrored views are being
        computed, the slice's one-view embedding; None when neither is computed."""
        if self.wanted is None:
            return None
        for key in (self.wanted, one_view(self.wanted)):
            emb = self.cache.get(key)
            if emb is not None:
                return key, emb
        return None

    def embedding(self) -> ImageEmbedding | None:
        """The embedding of what is on screen, or None while it is not computed."""
        return None if self.wanted is None else self.cache.get(self.wanted)

    @property
    def ready(self) -> EmbeddingKey | None:
        """The key of the embedding on screen when it is computed, else None."""
        return self.wanted if self.embedding() is not None else None

    @property
    def embedding_ready(self) -> bool:
        return self.ready is not None

    def generation(self, layer_id: str) -> int:
        return self.generations.get(layer_id, 0)

    def bump_generation(self, layer_id: str) -> None:
        self.generations[layer_id] = self.generation(layer_id) + 1

    def apply_regions(self) -> None:
        """Give the predictor the user's choice of mask regions (``options.prompted_regions``)."""
        if self.predictor is not None:
            self.predictor.regions = "prompted" if self.options.prompted_regions else "all"

    def forget_prediction(self) -> None:
        self.prediction = self.prediction_key = None
        self.refining = False
        self.chosen = 0
        self.prompt_signature = frozenset()

    def chosen_mask(self) -> np.ndarray | None:
        if self.prediction is None or len(self.prediction) == 0:
            return None
        return self.prediction.mask(min(self.chosen, len(self.prediction) - 1))

"""The state of one Segment Anything widget (one instance per widget, no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..predictor import Prediction, Predictor
from .cache import EmbeddingKey, EmbeddingStore, MemoryEmbeddingCache
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
    zoom: bool = True  # segment small objects again on an enlarged crop (napari_segany.zoom)
    views: int = 1  # mirrored views averaged (napari_segany.views); set to the model's recommendation on loading


@dataclass
class WidgetState:
    """Everything the widget knows, passed explicitly to its parts.

    ``wanted`` is the embedding the screen needs now; ``ready`` the one set in
    the predictor. Predictions happen only when they are equal, so a result
    that arrives for another image, slice or model is never used for this one.
    """

    cache: EmbeddingStore = field(default_factory=MemoryEmbeddingCache)
    options: Options = field(default_factory=Options)
    predictor: Predictor | None = None
    model_label: str = ""
    image_layer: Any = None
    plane: Plane | None = None
    generations: dict[str, int] = field(default_factory=dict)
    wanted: EmbeddingKey | None = None
    ready: EmbeddingKey | None = None
    job: Any = None  # the running EmbeddingJob, if any
    prediction: Prediction | None = None
    chosen: int = 0
    prompt_signature: frozenset = frozenset()
    image2d: np.ndarray | None = None  # the current slice, for thumbnails
    last_commit: Any = None

    @property
    def embedding_ready(self) -> bool:
        return self.wanted is not None and self.ready == self.wanted

    def generation(self, layer_id: str) -> int:
        return self.generations.get(layer_id, 0)

    def bump_generation(self, layer_id: str) -> None:
        self.generations[layer_id] = self.generation(layer_id) + 1

    def apply_regions(self) -> None:
        """Give the predictor the user's choice of mask regions (``options.prompted_regions``)."""
        if self.predictor is not None:
            self.predictor.regions = "prompted" if self.options.prompted_regions else "all"

    def forget_prediction(self) -> None:
        self.prediction = None
        self.chosen = 0
        self.prompt_signature = frozenset()

    def chosen_mask(self) -> np.ndarray | None:
        if self.prediction is None or len(self.prediction) == 0:
            return None
        return self.prediction.mask(min(self.chosen, len(self.prediction) - 1))

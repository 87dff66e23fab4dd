"""Volumes: per-slice embeddings with a disk cache, and mask propagation.

>>> import napari_segany as sg
>>> store = sg.EmbeddingStore(predictor, volume, axis=0, cache_dir="emb-cache")   # doctest: +SKIP
>>> result = sg.propagate(volume, {30: mask}, store=store, spacing=(0.29, 0.26, 0.26))  # doctest: +SKIP
>>> print(result.summary("um"))                                                   # doctest: +SKIP
"""

from .propagate import propagate
from .report import Changes, ObjectReport, PropagationResult, Stop
from .store import EmbeddingStore, volume_window

__all__ = ["Changes", "EmbeddingStore", "ObjectReport", "PropagationResult", "Stop", "propagate", "volume_window"]

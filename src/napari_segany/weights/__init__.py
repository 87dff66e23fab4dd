"""Model loading: which models exist, where their files come from, and how they are read.

- :mod:`~napari_segany.weights.known`: the models known by name (sources, sizes, hashes).
- :mod:`~napari_segany.weights.registry`: the cache, downloads and their verification.
- :mod:`~napari_segany.weights.checkpoint`: the checkpoint formats we read, safely.
- :mod:`~napari_segany.weights.load`: :func:`load_model`, from a name or a file to a model.
"""

from .load import load_model

__all__ = ["load_model"]

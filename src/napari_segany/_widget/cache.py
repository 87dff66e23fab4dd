"""Embeddings of visited slices, kept so that revisiting a slice is instant.

The widget talks to an :class:`EmbeddingStore`; :class:`MemoryEmbeddingCache`
is a small in-memory LRU bounded in bytes. A disk-backed per-slice store
(``napari_segany.volume``) can replace it by implementing the same four
methods.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable, Hashable, Protocol

from ..engine.predictor import ImageEmbedding

DEFAULT_MAX_BYTES = 512 * 2**20  # ~128 SAM embeddings of 4 MiB


@dataclass(frozen=True)
class EmbeddingKey:
    """Which image, which version of its data, which slice and which model.

    ``layer_id`` is the layer's ``unique_id``; ``generation`` grows each time
    the layer's data is replaced, so embeddings of old data are never reused.
    ``views``: how many mirrored views the embedding holds (:mod:`napari_segany.engine.views`);
    ``window``: the intensity window, so a contrast change asks for a new embedding.
    """

    layer_id: str
    generation: int
    plane: Hashable
    model_id: str
    views: int = 1
    window: tuple[float, float] | None = None  # the contrast limits it is encoded with (None: 0-255 RGB)


def one_view(key: EmbeddingKey) -> EmbeddingKey:
    """The key of the same slice's embedding with one view (what the widget answers on first)."""
    return replace(key, views=1)


def slice_of(key: EmbeddingKey) -> EmbeddingKey:
    """The slice's key for the key of a zoomed crop of it (:func:`._widget.zoom.crop_key`), else ``key``."""
    plane = key.plane
    is_crop = isinstance(plane, tuple) and len(plane) > 1 and plane[1] == "crop"
    return replace(key, plane=plane[0]) if is_crop else key


def for_slice(job_key: EmbeddingKey, key: EmbeddingKey) -> bool:
    """Whether an embedding (of a slice or a crop, any views) serves the slice ``key`` names."""
    return replace(slice_of(job_key), views=1) == one_view(key)


class EmbeddingStore(Protocol):
    def get(self, key: EmbeddingKey) -> ImageEmbedding | None: ...

    def put(self, key: EmbeddingKey, embedding: ImageEmbedding) -> None: ...

    def discard(self, predicate: Callable[[EmbeddingKey], bool]) -> None: ...

    def clear(self) -> None: ...


def embedding_nbytes(embedding: ImageEmbedding) -> int:
    return embedding.nbytes


class MemoryEmbeddingCache:
    """Least-recently-used embeddings, at most ``max_bytes`` in total; safe to use from the GUI
    thread and workers at once."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[EmbeddingKey, ImageEmbedding] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return key in self._items

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: EmbeddingKey) -> ImageEmbedding | None:
        with self._lock:
            emb = self._items.get(key)
            if emb is not None:
                self._items.move_to_end(key)
            return emb

    def put(self, key: EmbeddingKey, embedding: ImageEmbedding) -> None:
        with self._lock:
            self._put(key, embedding)

    def _put(self, key: EmbeddingKey, embedding: ImageEmbedding) -> None:
        size = embedding_nbytes(embedding)
        if key in self._items:
            self._bytes -= embedding_nbytes(self._items.pop(key))
        if size > self.max_bytes:
            return
        self._items[key] = embedding
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= embedding_nbytes(old)

    def discard(self, predicate: Callable[[EmbeddingKey], bool]) -> None:
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                self._bytes -= embedding_nbytes(self._items.pop(key))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

"""The in-memory part of the embedding store's cache: float16 features bounded in bytes."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class ByteLRU:
    """key (a slice's index, or (index, window) for a crop) -> (hash of the image encoded, float16
    features), bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.items: OrderedDict[object, tuple[str, np.ndarray]] = OrderedDict()
        self.nbytes = 0

    def get(self, index, h: str) -> np.ndarray | None:
        item = self.items.get(index)
        if item is None or item[0] != h:
            return None
        self.items.move_to_end(index)
        return item[1]

    def put(self, index, h: str, features: np.ndarray) -> None:
        old = self.items.pop(index, None)
        if old is not None:
            self.nbytes -= old[1].nbytes
        self.items[index] = (h, features)
        self.nbytes += features.nbytes
        while self.nbytes > self.max_bytes and len(self.items) > 1:
            _, (_, dropped) = self.items.popitem(last=False)
            self.nbytes -= dropped.nbytes

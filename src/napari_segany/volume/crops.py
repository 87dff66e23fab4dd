"""On-disk cache of the embeddings of enlarged crops, beside a volume's slice cache.

Propagation answers an object that is small in a large slice on an enlarged
crop around it (:mod:`napari_segany.volume.answers`), and encoding those crops
is most of its time on large slices. With a ``cache_dir`` they are kept on disk
too, so propagating again (after an interruption, with another object nearby,
or in a new session) encodes only crops it has not seen::

    <key>/crops/000042-0310-0188-0342-0342.npz   slice 42, crop top 310, left 188, 342 x 342 px

One file per crop holds the float16 embedding, the hash of the crop's own
pixels and a checksum of the embedding. A file is written under a temporary
name and renamed into place, so it appears whole or not at all; a file whose
crop hash differs (the slice was edited) is a miss, and one that does not
decode or fails its checksum is deleted and recomputed. The folder is bounded:
after each write the least recently used files beyond ``max_bytes`` are
removed (a read marks a file as used).
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from .cache import CROPS, checksum

#: Default bound of a volume's crop folder (a crop of the included model takes 0.5 MiB, of SAM's 2 MiB).
MAX_BYTES = 2 * 2**30


class CropCache:
    """Crop embeddings of one slice cache key, in ``key_path / "crops"``."""

    def __init__(self, key_path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> None:
        self.path = Path(key_path) / CROPS
        self.path.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()

    def file(self, index: int, window) -> Path:
        return self.path / f"{index:06d}-{window.top:04d}-{window.left:04d}-{window.height:04d}-{window.width:04d}.npz"

    def read(self, index: int, window, crop_hash: str) -> tuple[str, np.ndarray | None]:
        """``("hit", features)``, ``("miss", None)`` or ``("corrupted", None)`` (the file is removed)."""
        path = self.file(index, window)
        try:
            with np.load(path, allow_pickle=False) as data:
                stored_hash, stored_sum = str(data["crop_hash"]), str(data["checksum"])
                features = np.asarray(data["features"], dtype=np.float16)
        except FileNotFoundError:
            return "miss", None
        except Exception:  # truncated or not ours: never read again
            path.unlink(missing_ok=True)
            return "corrupted", None
        if stored_hash != crop_hash:
            return "miss", None
        if checksum(features) != stored_sum:
            path.unlink(missing_ok=True)
            return "corrupted", None
        try:
            os.utime(path)  # used now: the last to go when the folder is trimmed
        except OSError:
            pass
        return "hit", features

    def write(self, index: int, window, crop_hash: str, features: np.ndarray) -> None:
        """Store one crop (temporary file, then rename), then trim the folder to ``max_bytes``."""
        data = np.ascontiguousarray(features, dtype=np.float16)
        path = self.file(index, window)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part", dir=self.path)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, features=data, crop_hash=np.array(crop_hash), checksum=np.array(checksum(data)))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.trim()

    def trim(self) -> None:
        """Remove the least recently used crop files until the folder holds at most ``max_bytes``."""
        with self._lock:
            files = []
            for p in self.path.glob("*.npz"):
                try:
                    st = p.stat()
                except OSError:  # removed meanwhile
                    continue
                files.append((st.st_mtime, st.st_size, p))
            total = sum(size for _, size, _ in files)
            for _, size, p in sorted(files):
                if total <= self.max_bytes:
                    break
                p.unlink(missing_ok=True)
                total -= size

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.glob("*.npz"))

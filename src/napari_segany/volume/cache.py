"""On-disk cache of per-slice embeddings: one zarr array per settings key.

Layout under the user's ``cache_dir``::

    <key>/settings.json          what the key stands for (model, window, axis...)
    <key>/embeddings.zarr        (n_slices, 256, g, g) float16, one chunk per slice,
                                 Blosc-zstd compressed
    <key>/slices/000042.json     per-slice record: the hash of the slice's own
                                 bytes and a checksum of the stored embedding
    <key>/crops/                 enlarged crops' embeddings (napari_segany.volume.crops)

``<key>`` is a hash of the settings, so a different model, intensity window,
channel, axis or image size never reads another's embeddings. A slice is
valid only when its record exists, names the current slice hash, and the
chunk decodes to data with the recorded checksum. The chunk is written first
and the record last (atomically, by rename), so a crash mid-write leaves at
worst a slice without a valid record, which is recomputed; a damaged chunk
fails the checksum and is recomputed too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..engine.userdata import write_json_atomically

FORMAT_VERSION = 1
ARRAY_NAME = "embeddings.zarr"
RECORDS = "slices"
CROPS = "crops"  # the crops' own cache (napari_segany.volume.crops)


def slice_hash(image: np.ndarray) -> str:
    """Hash of one slice's dtype, shape and bytes (never of the whole volume)."""
    data = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{data.dtype.str}{data.shape}".encode())
    h.update(memoryview(data).cast("B"))
    return h.hexdigest()


def checksum(features: np.ndarray) -> str:
    """Checksum of the float16 embedding exactly as stored."""
    data = np.ascontiguousarray(features, dtype=np.float16)
    return hashlib.blake2b(memoryview(data).cast("B"), digest_size=16).hexdigest()


def settings_key(settings: dict) -> str:
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def slice_chunked_array(path: Path, shape: tuple[int, ...], dtype="float16"):
    """A new zarr array (format 3, or 2 with zarr 2) with one compressed chunk per slice of the first
    axis; chunks that hold only zeros are not written."""
    import zarr

    chunks, typesize = (1, *shape[1:]), np.dtype(dtype).itemsize
    if hasattr(zarr, "create_array"):  # zarr >= 3 (which writes no empty chunks by default)
        from zarr.codecs import BloscCodec

        return zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                                 compressors=BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=typesize))
    from numcodecs import Blosc  # zarr 2

    return zarr.open_array(str(path), mode="w", shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                           compressor=Blosc(cname="zstd", clevel=3, shuffle=Blosc.SHUFFLE), write_empty_chunks=False)


class SliceCache:
    """Per-slice embeddings for one settings key, in ``root / key``.

    Parameters
    ----------
    root : path
        The user's cache folder; only the sub-folder named by the key is touched.
    settings : dict
        JSON-able description of everything the embeddings depend on.
    shape : (n_slices, C, g, g)
        Shape of the stored array.
    """

    def __init__(self, root: str | os.PathLike, settings: dict, shape: tuple[int, ...]) -> None:
        self.root = Path(root).expanduser()
        self.settings = dict(settings, format=FORMAT_VERSION, array_shape=list(shape))
        self.key = settings_key(self.settings)
        self.path = self.root / self.key
        self.shape = tuple(int(s) for s in shape)
        self._lock = threading.Lock()
        self._array = self._open_or_create()

    # -- opening ------------------------------------------------------------
    def _open_or_create(self):
        import zarr

        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot create the cache folder {str(self.root)!r} ({exc.strerror or exc}); "
                          "pass a writable cache_dir or cache_dir=None") from None
        if self.path.is_dir():
            try:
                arr = zarr.open_array(str(self.path / ARRAY_NAME), mode="r+")
                if tuple(arr.shape) == self.shape and np.dtype(arr.dtype) == np.float16:
                    return arr
            except Exception:  # unreadable metadata: rebuild below
                pass
            self._discard_broken()
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.key}.", suffix=".part", dir=self.root))
        try:
            (tmp / RECORDS).mkdir()
            slice_chunked_array(tmp / ARRAY_NAME, self.shape)
            write_json_atomically(tmp / "settings.json", dict(self.settings, created=time.time()))
            try:
                os.rename(tmp, self.path)  # atomic: the key folder appears complete or not at all
            except OSError:  # another process created it first: use theirs
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return zarr.open_array(str(self.path / ARRAY_NAME), mode="r+")

    def _discard_broken(self) -> None:
        """Remove a key folder that cannot be opened, but only if it holds nothing the cache did not
        write: files of anyone else in it are never deleted."""
        names = {p.name for p in self.path.iterdir()}
        foreign = sorted(names - {ARRAY_NAME, RECORDS, CROPS, "settings.json"})
        if not foreign:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            raise ValueError(f"{str(self.path)!r} cannot be opened as an embedding cache and holds files the "
                             f"cache did not write ({', '.join(foreign[:5])}); nothing was deleted: move "
                             "them or choose another cache_dir")

    # -- slices ---------------------------------------------------------------
    def _record_path(self, index: int) -> Path:
        return self.path / RECORDS / f"{index:06d}.json"

    def record(self, index: int) -> dict | None:
        try:
            with open(self._record_path(index)) as f:
                rec = json.load(f)
            return rec if isinstance(rec, dict) else None
        except (OSError, ValueError):
            return None

    def read(self, index: int, image_hash: str) -> tuple[str, np.ndarray | None]:
        """``("hit", features)``, ``("miss", None)`` or ``("corrupted", None)``."""
        rec = self.record(index)
        if rec is None or rec.get("slice_hash") != image_hash:
            return "miss", None
        try:
            with self._lock:
                data = np.asarray(self._array[index], dtype=np.float16)
        except Exception:  # undecodable chunk
            return "corrupted", None
        if data.shape != self.shape[1:] or checksum(data) != rec.get("checksum"):
            return "corrupted", None
        return "hit", data

    def write(self, index: int, image_hash: str, features: np.ndarray) -> None:
        """Store one slice: chunk first, then its record (atomic rename)."""
        data = np.ascontiguousarray(features, dtype=np.float16)
        self._record_path(index).unlink(missing_ok=True)  # invalid while the chunk changes
        with self._lock:
            self._array[index] = data
        write_json_atomically(self._record_path(index), {
            "slice": int(index), "slice_hash": image_hash, "checksum": checksum(data), "written": time.time(),
        })

    def valid_slices(self) -> list[int]:
        """Indices that have a record (not checking the slice hash or the chunk)."""
        out = []
        for p in (self.path / RECORDS).glob("*.json"):
            try:
                out.append(int(p.stem))
            except ValueError:
                pass
        return sorted(out)

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

"""Per-slice embeddings of a volume: on demand, an in-memory LRU, background
prefetch of neighbours (see :mod:`.prefetch`), and an optional disk cache (see :mod:`.cache`)."""

from __future__ import annotations

import threading
import warnings
from collections import Counter
from typing import Callable, Iterable

import numpy as np

from ..engine.predictor import Cancelled, ImageEmbedding
from ..engine.identity import image_fingerprint
from ..engine.preprocess import DEFAULT_PERCENTILES, Geometry, as_2d_channels
from .cache import SliceCache, slice_hash
from .checks import check_axis
from .crops import CropCache
from .memory import ByteLRU
from .prefetch import Prefetching
from .window import take_slice, volume_window

__all__ = ["EmbeddingStore", "volume_window"]

class EmbeddingStore(Prefetching):
    """Embeddings of the 2D slices of a volume along one axis, computed on demand.

    Parameters
    ----------
    predictor : Predictor
        Computes the embeddings (``predictor.encode``); never two at once.
    volume : array-like, (Z, Y, X) or (Z, Y, X, C)
        Any array indexable by slices (numpy, zarr, dask...). A 4D volume's
        last axis holds channels: RGB, or pick one with ``channel``.
    axis : int
        The axis whose slices are embedded (0..2).
    cache_dir : path, optional
        Folder of the disk cache (zarr, float16, one chunk per slice; the
        enlarged crops propagation encodes go beside it, see
        :mod:`napari_segany.volume.crops`). One folder per volume is best: two
        volumes of the same shape and settings sharing one folder overwrite
        each other's slices (detected, never mixed up). None keeps embeddings
        in memory only.
    memory_bytes : int
        Bound of the in-memory LRU (float16: 2 MiB per slice for SAM models).
    contrast_limits : (low, high), optional
        Intensity window for every slice; default: robust percentiles of a
        subsample of the whole volume (see :func:`volume_window`).
    channel : int, optional
        Channel of a 4D volume to use.
    percentiles : (low, high), optional
        For the default window; (1, 99.8), or (0, 100) for MedSAM models.
    prefetch : int
        After each :meth:`get`, embed this many neighbours on each side in a
        background thread (0 disables prefetch).

    Notes
    -----
    Embeddings are rounded to float16 whether they come from disk or not, so
    results do not depend on whether the cache was warm.
    """

    def __init__(self, predictor, volume, axis: int = 0, cache_dir=None, memory_bytes: int = 512 * 2**20,
                 contrast_limits=None, channel: int | None = None, percentiles=None, prefetch: int = 2) -> None:
        if not hasattr(volume, "shape") or not hasattr(volume, "__getitem__"):
            raise TypeError(f"volume must be an array (numpy, zarr, dask...), got {type(volume).__name__}")
        spatial = len(volume.shape) - (1 if len(volume.shape) == 4 else 0)
        if len(volume.shape) not in (3, 4):
            raise ValueError(f"volume has shape {tuple(volume.shape)}; pass a 3D (Z, Y, X) volume, or 4D "
                             "(Z, Y, X, C) with channels last; for a single 2D image use Predictor")
        self.predictor = predictor
        self.volume = volume
        self.axis = check_axis(axis, spatial)
        self.channel = channel
        self.n_slices = int(volume.shape[self.axis])
        model = predictor.model
        profile = getattr(getattr(model, "info", None), "preprocess", "sam")
        if percentiles is None:
            percentiles = (0.0, 100.0) if profile == "medsam" else DEFAULT_PERCENTILES
        self.window = volume_window(volume, self.axis, channel=channel, contrast_limits=contrast_limits,
                                    percentiles=percentiles)
        plane_shape = tuple(int(s) for i, s in enumerate(volume.shape[:spatial]) if i != self.axis)
        self.slice_shape = plane_shape
        max_upscale = getattr(getattr(model, "info", None), "max_upscale", None)
        self.geometry = Geometry.for_image(plane_shape, model.image_size, profile, max_upscale)
        self.stats: Counter = Counter()
        self._memory = ByteLRU(memory_bytes)
        self._crops = ByteLRU(memory_bytes // 4)
        self._disk: SliceCache | None = None
        #: Why the disk cache was given up during this store's life (None while it works).
        self.cache_problem: str | None = None
        if cache_dir is not None:
            if ":" not in predictor.model_id:
                raise ValueError("the model has no file digest (it was not loaded with load_model), so its "
                                 "cached embeddings could not be told from another model's; load it with "
                                 "napari_segany.load_model or pass cache_dir=None")
            g = model.embedding_size
            settings = {
                "model_id": predictor.model_id, "window": [float(v) for v in self.window],
                "channel": channel, "axis": self.axis, "volume_shape": [int(s) for s in volume.shape],
                "dtype": np.dtype(volume.dtype).str, "image_size": int(model.image_size), "profile": profile,
            }
            if max_upscale is not None:  # (absent for SAM's filling, so its existing caches stay valid)
                settings["max_upscale"] = float(max_upscale)
            try:
                self._disk = SliceCache(cache_dir, settings, (self.n_slices, 256, g, g))
            except OSError as err:  # read-only, full, gone: the work goes on in memory
                self._give_up_disk(err)
        self._crop_disk = None
        if self._disk is not None:
            try:
                self._crop_disk = CropCache(self._disk.path)
            except OSError as err:
                self._give_up_disk(err)
        self._mem_lock = threading.Lock()
        self._start_prefetching(prefetch)

    # -- public -------------------------------------------------------------
    @property
    def cache_path(self):
        """Folder of this volume's disk cache (None without ``cache_dir``)."""
        return None if self._disk is None else self._disk.path

    def __len__(self) -> int:
        return self.n_slices

    def slice(self, index: int) -> np.ndarray:
        """The 2D (or H x W x C) image of slice ``index``."""
        return np.asarray(take_slice(self.volume, self.axis, self._check(index)))

    def get(self, index: int, *, should_stop: Callable[[], bool] | None = None,
            prefetch: bool = True) -> ImageEmbedding:
        """The embedding of slice ``index``: from memory, disk, or computed now.

        Blocks while it is computed (a running background prefetch is
        interrupted to make room). ``should_stop`` cancels that computation
        (:class:`~napari_segany.Cancelled`). With ``prefetch``, the
        neighbours are then embedded in the background.
        """
        i = self._check(index)
        image = self.slice(i)
        h = slice_hash(image)
        features = self._lookup(i, h)
        if features is None:
            features = self._compute_now(i, image, h, should_stop)
        if prefetch and self.prefetch_radius > 0:
            r = self.prefetch_radius
            near = sorted((j for j in range(i - r, i + r + 1) if 0 <= j < self.n_slices and j != i),
                          key=lambda j: (abs(j - i), j))
            self.prefetch(near)
        return self._embedding(features, image)

    __getitem__ = get

    def crop(self, index: int, window, *, should_stop: Callable[[], bool] | None = None) -> ImageEmbedding:
        """The embedding of a crop of slice ``index`` (a :class:`napari_segany.engine.zoom.Window`), encoded
        with the volume's intensity window, as propagation uses for objects that are small in their
        slice. Crops are kept in memory (a quarter of ``memory_bytes``) and, with a ``cache_dir``,
        on disk (:class:`~napari_segany.volume.crops.CropCache`)."""
        i = self._check(index)
        image = self.slice(i)[window.slices]
        h, key = slice_hash(image), (i, window)
        with self._mem_lock:
            features = self._crops.get(key, h)
        if features is not None:
            self.stats["crop_hits"] += 1
            return self._embedding(features, image)
        state, features = ("miss", None) if self._crop_disk is None else self._crop_disk.read(i, window, h)
        if state == "hit":
            self.stats["crop_disk_hits"] += 1
        else:
            self.stats["corrupted"] += state == "corrupted"
            with self._wanting(key), self._encode_lock:
                features = self._encode(image, should_stop)
            self.stats["crops_encoded"] += 1
            if self._crop_disk is not None:
                try:
                    self._crop_disk.write(i, window, h, features)
                except OSError as err:
                    self._give_up_disk(err)
        with self._mem_lock:
            self._crops.put(key, h, features)
        return self._embedding(features, image)

    def keep(self, index: int, embedding: ImageEmbedding) -> None:
        """Hold ``embedding``, computed elsewhere, as slice ``index``'s (no encoder pass). It must be
        of this slice's pixels, in this store's intensity window, by this store's model: anything
        else is refused (ValueError) rather than answered from the wrong picture."""
        i = self._check(index)
        image = self.slice(i)
        image_id = self._image_id(image)
        window = None if embedding.window is None else tuple(float(v) for v in embedding.window)
        for what, theirs, ours in (("image", embedding.image_id, image_id),
                                   ("model", embedding.model_id, self.predictor.model_id),
                                   ("intensity window", window, tuple(float(v) for v in self.window))):
            if theirs != ours:
                raise ValueError(f"this embedding is of another {what} than slice {i} of the store "
                                 f"({theirs!r}, not {ours!r}); it cannot stand for that slice")
        self._keep(i, slice_hash(image), np.asarray(embedding.features, dtype=np.float16))

    def peek(self, index: int) -> ImageEmbedding | None:
        """The embedding if it is in memory now, else None; never computes."""
        i = self._check(index)
        image = self.slice(i)
        with self._mem_lock:
            features = self._memory.get(i, slice_hash(image))
        return None if features is None else self._embedding(features, image)

    def status(self, index: int) -> str:
        """``"memory"``, ``"disk"`` (valid record for the current slice) or ``"missing"``."""
        i = self._check(index)
        h = slice_hash(self.slice(i))
        with self._mem_lock:
            if self._memory.get(i, h) is not None:
                return "memory"
        if self._disk is not None:
            rec = self._disk.record(i)
            if rec is not None and rec.get("slice_hash") == h:
                return "disk"
        return "missing"

    def compute_all(self, indices: Iterable[int] | None = None, *, progress: Callable[[int, int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> Counter:
        """Make sure every slice (or ``indices``) is embedded and cached; returns ``stats``."""
        todo = list(range(self.n_slices)) if indices is None else [self._check(i) for i in indices]
        for k, i in enumerate(todo):
            if should_stop is not None and should_stop():
                raise Cancelled("embedding was cancelled")
            self.get(i, should_stop=should_stop, prefetch=False)
            if progress is not None:
                progress(k + 1, len(todo))
        return self.stats

    def memory_bytes(self) -> int:
        return self._memory.nbytes

    def disk_bytes(self) -> int:
        return 0 if self._disk is None else self._disk.disk_bytes()

    def __enter__(self) -> "EmbeddingStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ------------------------------------------------------------
    def _write_disk(self, i: int, h: str, features: np.ndarray) -> None:
        disk = self._disk
        if disk is None:
            return
        try:
            disk.write(i, h, features)
        except OSError as err:
            self._give_up_disk(err)

    def _give_up_disk(self, err: OSError) -> None:
        """Carry on with the embeddings in memory: the cache folder is read-only, full or gone. Said
        once, in a warning and in :attr:`cache_problem`; what was computed is kept."""
        where = getattr(self._disk, "path", None) or err.filename or "the cache folder"
        self._disk = self._crop_disk = None
        if self.cache_problem is None:
            self.cache_problem = (f"The embedding cache in {where} cannot be written ({err.strerror or err}); "
                                  "embeddings are kept in memory for this run only. Free disk space or pass "
                                  "another cache_dir to keep them.")
            warnings.warn(self.cache_problem, RuntimeWarning, stacklevel=3)
    def _check(self, index) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"slice index must be a whole number, got {index!r}")
        if not -self.n_slices <= index < self.n_slices:
            raise IndexError(f"slice {index!r} is outside the volume, which has {self.n_slices} slices "
                             f"along axis {self.axis} (0..{self.n_slices - 1})")
        return int(index) % self.n_slices

    def _embedding(self, features: np.ndarray, image: np.ndarray) -> ImageEmbedding:
        """``features`` of ``image`` (a slice, or a crop of one) as an embedding of it."""
        guide_image = getattr(self.predictor, "guide_image", None)  # predictor-like objects may lack one
        guide = None if guide_image is None else guide_image(image, self.window, channel=self.channel)
        geometry = self.geometry.for_other(image.shape[:2])
        return ImageEmbedding(features.astype(np.float32), geometry, self.predictor.model_id, self.window,
                              guide=guide, image_id=self._image_id(image))

    def _image_id(self, image: np.ndarray) -> str:
        """The identity of what an embedding of ``image`` (a slice, or a crop of one) encodes."""
        return image_fingerprint(as_2d_channels(image, channel=self.channel))

    def _lookup(self, i: int, h: str, count: bool = True) -> np.ndarray | None:
        with self._mem_lock:
            features = self._memory.get(i, h)
        if features is not None:
            self.stats["memory_hits"] += count
            return features
        if self._disk is None:
            return None
        state, features = self._disk.read(i, h)
        if state == "hit":
            self.stats["disk_hits"] += count
            with self._mem_lock:
                self._memory.put(i, h, features)
            return features
        if state == "corrupted":
            self.stats["corrupted"] += count
        return None

    def _encode(self, image: np.ndarray, should_stop) -> np.ndarray:
        emb = self.predictor.encode(image, channel=self.channel, contrast_limits=self.window,
                                    should_stop=should_stop, views=1)  # propagation: no mirrored views
        self.stats["encoded"] += 1
        return np.asarray(emb.features, dtype=np.float16)

    def _keep(self, i: int, h: str, features: np.ndarray) -> None:
        with self._mem_lock:
            self._memory.put(i, h, features)

    def _compute_now(self, i: int, image: np.ndarray, h: str, should_stop) -> np.ndarray:
        with self._wanting(i):
            with self._cond:
                while self._inflight == i:  # the worker is on this very slice: wait for it
                    self._cond.wait(0.05)
                    if should_stop is not None and should_stop():
                        raise Cancelled("embedding was cancelled")
            with self._encode_lock:
                features = self._lookup(i, h, count=False)
                if features is not None:
                    return features
                features = self._encode(image, should_stop)
                self._keep(i, h, features)
                self._write_disk(i, h, features)
                return features

"""The embedding store with the real model (random-weight vit_t): one window
per volume, disk cache hits and misses, resume after a crash, corrupted chunks.
The threading and the LRU are tested with the stand-in (no real encodes)."""

from __future__ import annotations

import os
import shutil
import threading
import time

import numpy as np
import pytest

import napari_segany as sg
from napari_segany.volume import volume_window
from napari_segany.model import build_sam
from napari_segany.engine.predictor import Cancelled
from napari_segany.volume import cache as cache_module
from standin import StandInPredictor


@pytest.fixture(scope="module")
def small_volume(nuclei3d):
    """Two real slices, cropped (the encoder input is 1024 px whatever the size)."""
    return np.ascontiguousarray(nuclei3d[0][29:31, 64:160, 64:160])


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return sg.Predictor(tiny_model)


@pytest.fixture(scope="module")
def warm(predictor, small_volume, tmp_path_factory):
    """A disk cache holding both slices, and their embeddings."""
    path = tmp_path_factory.mktemp("warm")
    store = sg.EmbeddingStore(predictor, small_volume, cache_dir=path, prefetch=0)
    store.compute_all()
    assert store.stats["encoded"] == 2
    return path, [store.get(i).features for i in range(2)], store


def test_one_window_for_the_whole_volume(warm, small_volume):
    _, _, store = warm
    lo, hi = np.percentile(small_volume, (1, 99.8))
    assert store.window == pytest.approx((lo, hi), rel=0.02)
    a, b = store.get(0), store.get(1)
    assert a.window == b.window == store.window
    assert a.features.shape == (256, 64, 64) and a.features.dtype == np.float32
    assert a.geometry.original_size == (96, 96)
    assert store.memory_bytes() == 2 * 256 * 64 * 64 * 2  # float16 in memory


def test_padding_slices_are_left_out_of_the_window_even_where_the_sample_sees_only_padding(small_volume):
    """Slices of one value (zero or saturated padding) would drag the window's percentiles onto the
    padding value; a volume that is mostly padding, whose evenly spaced sample of 16 slices holds
    none of its content, would get a window of one value and its content would be segmented
    saturated. Both windows are the content's own."""
    own = volume_window(small_volume)
    shape = small_volume.shape[1:]
    padded = np.concatenate([np.zeros((6, *shape), small_volume.dtype), small_volume,
                             np.full((6, *shape), 65535, small_volume.dtype)])
    assert volume_window(padded) == own
    sparse = np.zeros((300, *shape), small_volume.dtype)
    sparse[151] = small_volume[0]  # read in the fourth round (128 evenly spaced slices), not before
    assert volume_window(sparse) == volume_window(small_volume[:1]) != volume_window(sparse[:150])
    assert volume_window(np.zeros((40, 8, 8), np.uint8)) == (0.0, 0.0)  # nothing else to take it from


def test_disk_cache_hit_miss_and_edited_slice(warm, predictor, small_volume):
    path, features, store = warm
    again = sg.EmbeddingStore(predictor, small_volume, cache_dir=path, prefetch=0)
    assert [again.status(i) for i in range(2)] == ["disk", "disk"]
    assert np.array_equal(again.get(1).features, features[1])  # float16 in memory and on disk
    assert again.get(1) is not None and again.stats["disk_hits"] == 1 and again.stats["memory_hits"] == 1
    assert again.stats["encoded"] == 0
    edited = small_volume.copy()
    edited[0, 10, 10] += 1  # an edited slice is recomputed alone
    other = sg.EmbeddingStore(predictor, edited, cache_dir=path, contrast_limits=again.window, prefetch=0)
    assert other.cache_path == again.cache_path
    assert [other.status(i) for i in range(2)] == ["missing", "disk"]
    # other settings (another window) never share embeddings
    wider = sg.EmbeddingStore(predictor, small_volume, cache_dir=path, contrast_limits=(0, 65535), prefetch=0)
    assert wider.cache_path != again.cache_path and wider.status(0) == "missing"
    assert again.disk_bytes() > 0


def test_resume_after_a_crash_mid_write(predictor, small_volume, tmp_path, monkeypatch):
    store = sg.EmbeddingStore(predictor, small_volume, cache_dir=tmp_path, prefetch=0)
    store.get(0)
    real = cache_module.write_json_atomically

    def crash(path, obj):
        if obj.get("slice") == 1:
            raise KeyboardInterrupt("simulated crash after the chunk, before the record")
        real(path, obj)

    monkeypatch.setattr(cache_module, "write_json_atomically", crash)
    with pytest.raises(KeyboardInterrupt):
        store.get(1)
    monkeypatch.setattr(cache_module, "write_json_atomically", real)
    resumed = sg.EmbeddingStore(predictor, small_volume, cache_dir=tmp_path, prefetch=0)
    assert [resumed.status(i) for i in range(2)] == ["disk", "missing"]
    resumed.compute_all()
    assert resumed.stats["disk_hits"] == 1 and resumed.stats["encoded"] == 1
    assert [resumed.status(i) for i in range(2)] == ["memory"] * 2


def test_corrupted_chunk_is_detected_and_recomputed(warm, predictor, small_volume, tmp_path):
    import zarr

    src, features, _ = warm
    shutil.copytree(src, tmp_path, dirs_exist_ok=True)
    fresh = sg.EmbeddingStore(predictor, small_volume, cache_dir=tmp_path, prefetch=0)
    chunks = sorted(p for p in (fresh.cache_path / "embeddings.zarr").rglob("*") if p.is_file()
                    and p.name != "zarr.json")
    assert len(chunks) == 2  # one chunk per slice
    chunks[1].write_bytes(b"\x00garbage" * 100)  # undecodable
    arr = zarr.open_array(str(fresh.cache_path / "embeddings.zarr"), mode="r+")
    arr[0] = np.asarray(arr[0]) + np.float16(0.5)  # decodes, wrong content
    assert np.array_equal(fresh.get(1).features, features[1])
    assert np.array_equal(fresh.get(0).features, features[0])
    assert fresh.stats["corrupted"] == 2 and fresh.stats["encoded"] == 2
    assert sg.EmbeddingStore(predictor, small_volume, cache_dir=tmp_path, prefetch=0).status(1) == "disk"


class SlowStandIn(StandInPredictor):
    """The stand-in with an encoder that takes ``delay`` seconds and honours should_stop."""

    delay = 0.3

    def encode(self, image, should_stop=None, **kwargs):
        end = time.time() + self.delay
        while time.time() < end:
            if should_stop is not None and should_stop():
                raise Cancelled("embedding was cancelled")
            time.sleep(0.01)
        return super().encode(image, should_stop=should_stop, **kwargs)


def test_background_prefetch_of_neighbours(nuclei3d):
    volume, truth = nuclei3d
    with sg.EmbeddingStore(SlowStandIn(volume, truth), volume, prefetch=2) as store:
        store.get(30)
        deadline = time.time() + 30
        while time.time() < deadline and store.stats["prefetched"] < 4:
            time.sleep(0.05)
        assert [store.status(z) for z in (28, 29, 31, 32)] == ["memory"] * 4
        assert store.status(27) == "missing" and store.peek(31) is not None and store.peek(40) is None


def test_a_caller_interrupts_a_stale_prefetch(nuclei3d):
    volume, truth = nuclei3d
    pred = SlowStandIn(volume, truth)
    pred.delay = 5.0
    with sg.EmbeddingStore(pred, volume, prefetch=0) as store:
        store.prefetch([5])
        time.sleep(0.2)  # the worker is now encoding slice 5
        pred.delay = 0.0
        t0 = time.time()
        store.get(40)  # must not wait 5 s for the prefetch
        assert time.time() - t0 < 2.0
        assert store.stats["prefetch_cancelled"] == 1 and store.status(40) == "memory"


def test_get_does_not_block_other_threads(nuclei3d):
    volume, truth = nuclei3d
    with sg.EmbeddingStore(SlowStandIn(volume, truth), volume, prefetch=0) as store:
        results = []
        threads = [threading.Thread(target=lambda z=z: results.append(store.get(z))) for z in (1, 1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 3 and store.stats["encoded"] == 2


def test_memory_is_bounded(nuclei3d):
    volume, truth = nuclei3d
    store = sg.EmbeddingStore(StandInPredictor(volume, truth), volume, memory_bytes=5, prefetch=0)
    store.compute_all([0, 1, 2, 3])
    assert store.memory_bytes() <= 5  # 2 bytes per stand-in embedding
    assert [store.status(i) for i in range(4)] == ["missing", "missing", "memory", "memory"]


def test_store_errors(predictor, small_volume):
    with pytest.raises(ValueError, match="3D"):
        sg.EmbeddingStore(predictor, small_volume[0])
    with pytest.raises(ValueError, match="axis=3"):
        sg.EmbeddingStore(predictor, small_volume, axis=3)
    with pytest.raises(IndexError, match="outside the volume"):
        sg.EmbeddingStore(predictor, small_volume).get(3)
    with pytest.raises(ValueError, match="file digest"):
        sg.EmbeddingStore(sg.Predictor(build_sam("vit_t")), small_volume, cache_dir="unused")


def test_a_broken_cache_folder_with_foreign_files_is_left_alone(warm, predictor, small_volume, tmp_path):
    """A cache folder whose metadata is broken was deleted whole, with files the cache did not write;
    without such files it is rebuilt."""
    src, features, _ = warm
    shutil.copytree(src, tmp_path, dirs_exist_ok=True)
    key_dir = sg.EmbeddingStore(predictor, small_volume, cache_dir=tmp_path, prefetch=0).cache_path
    (key_dir / "embeddings.zarr" / "zarr.json").write_text("{ broken")
    mine = key_dir / "my_notes.txt"
    mine.write_text("precious")
    with pytest.raises(ValueError, match="nothing was deleted"):
        sg.EmbeddingStore(predictor, small_volume, cache_dir=tmp_path, prefetch=0)
    assert mine.read_text() == "precious"
    mine.unlink()
    rebuilt = sg.EmbeddingStore(predictor, small_volume, cache_dir=tmp_path, prefetch=0)
    assert np.array_equal(rebuilt.get(0).features, features[0]) and rebuilt.stats["encoded"] == 1


def test_a_script_that_ends_mid_prefetch_exits_cleanly():
    """A script that never closes its store ends while the worker embeds the next slices: the
    worker is stopped at exit (a daemon thread still inside torch used to abort Python, exit 134)."""
    import subprocess
    import sys

    code = """
import torch; torch.set_num_threads(1)
import napari_segany as sg
from napari_segany.sample_data import load_sample
store = sg.EmbeddingStore(sg.Predictor(sg.load_model(), precision="fp32"), load_sample("nuclei3d"), axis=0)
store.get(30)
print("done", flush=True)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert (res.returncode, res.stdout.strip()) == (0, "done"), res.stderr
    assert "terminate called" not in res.stderr


def _full_disk(path):
    """A real 1 MiB filesystem at ``path`` (tmpfs), or None where mounting is not permitted."""
    import subprocess

    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True)
    return path if res.returncode == 0 else None


def test_a_full_disk_cache_carries_on_in_memory(predictor, small_volume, tmp_path):
    """The cache folder fills up mid-run: the embeddings already computed are kept, the run goes on
    in memory, and one warning says so. A real 1 MiB tmpfs where mounting is allowed (CI as root);
    elsewhere an OSError(ENOSPC) from the chunk write stands in for it."""
    import errno
    import subprocess
    import warnings

    disk = _full_disk(tmp_path / "small")
    try:
        with pytest.MonkeyPatch.context() as mp:
            if disk is None:
                def full(self, *args):
                    raise OSError(errno.ENOSPC, "No space left on device")
                mp.setattr(cache_module.SliceCache, "write", full)
                disk = tmp_path / "small"
            filler = disk / "filler.bin"  # leave room for the cache's own files only
            if os.path.ismount(disk):
                with open(filler, "wb") as f:
                    f.write(b"\0" * (1024 * 1024 - 200 * 1024))
            store = sg.EmbeddingStore(predictor, small_volume, cache_dir=disk, prefetch=0)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                first = store.get(0)
                second = store.get(1)
                again = store.get(0)
        problems = [w for w in caught if "kept in memory" in str(w.message)]
        assert len(problems) == 1 and "cache_dir" in str(problems[0].message)
        assert store.cache_problem == str(problems[0].message)
        assert first.features.shape == second.features.shape
        np.testing.assert_array_equal(again.features, first.features)  # from memory, not lost
        assert store.stats["memory_hits"] >= 1
    finally:
        if os.path.ismount(tmp_path / "small"):
            subprocess.run(["umount", str(tmp_path / "small")], check=False)


def test_a_cache_folder_that_cannot_be_created_is_memory_only(predictor, small_volume):
    with pytest.warns(RuntimeWarning, match="kept in memory for this run only"):
        store = sg.EmbeddingStore(predictor, small_volume, cache_dir="/proc/segany-embeddings", prefetch=0)
    assert store.cache_path is None and store.get(0).features.size > 0


def test_an_embedding_computed_elsewhere_is_kept_only_for_its_own_slice(warm, predictor, small_volume):
    """``keep`` takes a slice's embedding from another store of the same volume and window (no
    encoder pass), and refuses one of another slice, window or model."""
    _, features, store = warm
    other = sg.EmbeddingStore(predictor, small_volume[:1], contrast_limits=store.window, prefetch=0)
    other.keep(0, store.get(0))
    assert other.status(0) == "memory" and other.stats["encoded"] == 0
    assert np.array_equal(other.get(0).features, features[0]) and other.stats["encoded"] == 0
    with pytest.raises(ValueError, match="another image"):
        other.keep(0, store.get(1))
    narrower = sg.EmbeddingStore(predictor, small_volume, contrast_limits=(0, 1), prefetch=0)
    with pytest.raises(ValueError, match="another intensity window"):
        narrower.keep(0, store.get(0))
    foreign = sg.EmbeddingStore(sg.Predictor(build_sam("vit_t")), small_volume, contrast_limits=store.window,
                                prefetch=0)
    with pytest.raises(ValueError, match="another model"):
        foreign.keep(0, store.get(0))

"""A volume larger than the memory each worker may use, segmented on a LocalCluster of 2 worker
processes (``--block-slices``): dask restarts a worker that goes over 95 % of its limit, so the run
completes with its workers unchanged only if no task held the volume, and each worker's peak memory
is read after it. The volume is a zarr array of blank slices (blank slices cost no model pass) with
the same few slices of the real 3D nuclei in two places, inside a block and across a block boundary:
both places must hold the labels of those slices segmented alone, with the volume's window."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import napari_segany as sg
from napari_segany.batch import connect, run_auto
from napari_segany.batch.inputs import read_input
from napari_segany.cli.benchmark import peak_rss_mb
from napari_segany.sample_data import load_sample

pytest.importorskip("distributed")  # installed by `make setup` (the cluster extra)

LIMIT = 2 * 1024**3  # bytes a worker may hold: dask pauses it at 80 % and restarts it at 95 %
SIDE, BLOCK = 512, 64  # the included model's frame; slices per task
PLACES = (1000, 1791)  # where the nuclei go: inside the block of 960-1023, across the boundary at 1792


def _equal_up_to_ids(a: np.ndarray, b: np.ndarray) -> bool:
    """The same labels up to the ids' numbers: each id of one meets exactly one id of the other."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


@pytest.mark.slow  # about half a minute: 2560 slices in 40 tasks on 2 workers, 3 blocks with nuclei
def test_a_volume_larger_than_the_workers_memory_limit_is_segmented_block_by_block(tmp_path):
    import zarr

    slab = np.zeros((2, SIDE, SIDE), np.float32)
    slab[:, 192:320, 192:320] = load_sample("nuclei3d")[40:42, 96:224, 96:224]
    n = int(np.ceil(1.25 * LIMIT / slab[0].nbytes))
    path = tmp_path / "long.zarr"
    volume = zarr.create_array(str(path), shape=(n, SIDE, SIDE), chunks=(1, SIDE, SIDE), dtype="float32",
                               fill_value=0)
    for start in PLACES:
        volume[start:start + len(slab)] = slab
    assert volume.nbytes > 1.2 * LIMIT
    out = tmp_path / "out"
    with connect(local=2, memory_limit=LIMIT) as client:
        workers = set(client.scheduler_info()["workers"])
        results = run_auto(path, out, client=client, block_slices=BLOCK, block_overlap=2, progress=False)
        peaks = client.run(peak_rss_mb, 0.0)  # MiB, since each worker started
    assert results[0]["status"] == "segmented", results[0].get("error")
    assert results[0]["blocks"] == int(np.ceil(n / BLOCK))
    assert set(peaks) == workers  # none was restarted
    assert max(peaks.values()) < 0.95 * LIMIT / 2**20, peaks

    with tifffile.TiffFile(out / "long_labels.tif") as f:  # page by page: 2560 pages of 512 x 512
        assert len(f.pages) == n and f.pages[0].shape == (SIDE, SIDE)
        filled = {z: page.asarray() for z, page in enumerate(f.pages) if page.asarray().any()}
    assert set(filled) <= {start + i for start in PLACES for i in range(len(slab))}  # nothing elsewhere
    window = sg.volume.volume_window(read_input(path))
    assert 0 <= window[0] < window[1] <= slab.max()  # the nuclei's, not the blank slices' (0, 0)
    alone = sg.segment_volume(sg.Predictor(sg.load_model(device="cpu")), slab, contrast_limits=window).labels
    assert alone.max() >= 3
    ids = set()
    for start in PLACES:
        here = np.stack([filled.get(start + i, np.zeros((SIDE, SIDE), alone.dtype)) for i in range(len(slab))])
        assert _equal_up_to_ids(here, alone), start
        ids |= set(np.unique(here).tolist()) - {0}
    assert sorted(ids) == list(range(1, results[0]["objects"] + 1)) and len(ids) == 2 * alone.max()
    assert sorted(p.name for p in out.iterdir()) == ["long_labels.tif", "long_objects.csv"]  # blocks removed

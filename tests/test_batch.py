"""Many inputs on dask.distributed (napari_segany.batch, ``auto --cluster/--scheduler``), against a
real LocalCluster of 2 worker processes on 127.0.0.1, with the included model on crops of the real
nuclei: the same files as the single process, a worker killed by its process id mid-run, resuming
without the model, a bad input among good ones, the command line, and running without distributed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_segany import GridSettings
from napari_segany.batch import cluster, connect, local_workers, run_auto
from napari_segany.batch.environ import MMAP_THRESHOLD, TORCH_THREADS, TRIM_THRESHOLD, spawning_with
from napari_segany.batch.worker import worker_stats
from napari_segany.cli import main
from napari_segany.sample_data import load_sample

distributed = pytest.importorskip("distributed")  # installed by `make setup` (the cluster extra)

GRID = GridSettings(points_per_side=6)
CROPS = {"a": (slice(0, 160), slice(0, 160)), "b": (slice(300, 460), slice(280, 440)),
         "c": (slice(150, 310), slice(330, 490)), "d": (slice(352, 512), slice(0, 160))}


def _outputs(folder: Path, names) -> dict:
    """name -> (labels, table text) of a run's outputs."""
    return {n: (tifffile.imread(folder / f"{n}_labels.tif"), (folder / f"{n}_objects.csv").read_text())
            for n in names}


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Four 160 x 160 crops of the real nuclei as TIFFs, and their outputs from the single process."""
    folder = tmp_path_factory.mktemp("crops")
    image = load_sample("nuclei2d")
    for name, window in CROPS.items():
        tifffile.imwrite(folder / f"{name}.tif", image[window])
    out = tmp_path_factory.mktemp("single")
    results = run_auto(folder, out, settings=GRID, progress=False)
    assert [r["status"] for r in results] == ["segmented"] * 4
    return folder, _outputs(out, CROPS)


@pytest.fixture(scope="module")
def client():
    # spawning_with({}): this process's environment as it was after, where dask's nannies leave theirs
    with spawning_with({}), distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                     host="127.0.0.1", dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0])
        assert a[name][0].max() > 0
        assert a[name][1] == b[name][1], name


def test_a_cluster_writes_what_one_process_writes_and_a_rerun_loads_nothing(crops, client, tmp_path):
    folder, single = crops
    results = run_auto(folder, tmp_path, settings=GRID, client=client, progress=False)
    assert [r["path"] for r in results] == [str(folder / f"{n}.tif") for n in CROPS]
    assert [r["status"] for r in results] == ["segmented"] * 4
    assert all(r["worker"].startswith("tcp://127.0.0.1:") and r["seconds"] > 0 for r in results)
    _same(_outputs(tmp_path, CROPS), single)
    stats = client.run(worker_stats)
    assert len(stats) == 2 and all(s["threads"] == 1 and s["loads"] <= 1 for s in stats.values())
    assert sum(s["loads"] for s in stats.values()) >= 1  # each worker loaded it at most once, for 4 inputs

    # a re-run skips every input before submitting: a model that cannot be loaded is never asked for
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    again = run_auto(folder, tmp_path, settings=GRID, client=client, model=str(tmp_path / "absent.pth"),
                     progress=False)
    assert [r["status"] for r in again] == ["skipped"] * 4
    assert [r["objects"] for r in again] == [r["objects"] for r in results]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps
    assert client.run(worker_stats) == stats

    # with an input to do, the model that cannot be loaded stops the run with a sentence
    (tmp_path / "a_labels.tif").unlink()
    with pytest.raises(RuntimeError, match="absent.pth"):
        run_auto(folder, tmp_path, settings=GRID, client=client, model=str(tmp_path / "absent.pth"), progress=False)


def test_a_worker_killed_mid_run_and_the_run_still_completes(crops, client, tmp_path):
    folder, single = crops
    pids = client.run(os.getpid)
    done: dict = {}
    run = threading.Thread(target=lambda: done.update(results=run_auto(folder, tmp_path, settings=GRID,
                                                                        client=client, progress=False)))
    run.start()
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and run.is_alive():
        busy = [w for w, keys in client.processing().items() if keys and w in pids]
        if busy and not any((tmp_path / f"{n}_labels.tif").exists() for n in CROPS):
            victim = busy[0]
        time.sleep(0.02)
    assert victim is not None, "no task was seen running"
    os.kill(pids[victim], signal.SIGKILL)  # the worker process dies with its task; its nanny starts another
    run.join(timeout=300)
    assert not run.is_alive()
    assert [r["status"] for r in done["results"]] == ["segmented"] * 4
    _same(_outputs(tmp_path, CROPS), single)
    assert victim not in {r["worker"] for r in done["results"]}  # what it held was run again elsewhere
    outputs = {f"{n}_{kind}" for n in CROPS for kind in ("labels.tif", "objects.csv")}
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")} == outputs


def test_a_bad_input_is_reported_and_the_others_are_written(crops, client, tmp_path):
    folder, single = crops
    plate = tmp_path / "plate"
    plate.mkdir()
    for n in "ab":
        (plate / f"{n}.tif").write_bytes((folder / f"{n}.tif").read_bytes())
    (plate / "bad.tif").write_text("not an image")
    whole = (folder / "c.tif").read_bytes()  # a TIFF whose header is whole and whose pixels are cut off
    (plate / "cut.tif").write_bytes(whole[: len(whole) // 3])
    results = run_auto(plate, tmp_path / "out", settings=GRID, client=client, progress=False)
    status = {Path(r["path"]).name: r for r in results}
    assert [Path(r["path"]).name for r in results] == ["a.tif", "b.tif", "bad.tif", "cut.tif"]
    assert status["a.tif"]["status"] == status["b.tif"]["status"] == "segmented"
    for name in ("bad.tif", "cut.tif"):
        assert status[name]["status"] == "failed" and name in status[name]["error"]
        assert not (tmp_path / "out" / f"{name[:-4]}_labels.tif").exists()
    assert "could not be read as an image" in status["bad.tif"]["error"]
    _same(_outputs(tmp_path / "out", "ab"), {n: single[n] for n in "ab"})


def test_the_command_line_runs_on_a_local_cluster(crops, tmp_path, capsys, monkeypatch):
    folder, single = crops
    argv = ["auto", str(folder / "a.tif"), str(folder / "d.tif"), "-d", str(tmp_path), "--points-per-side", "6",
            "--json"]
    assert main(argv + ["--cluster", "local:2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["segmented"] == 2 and summary["model"] == "segany_vit_t_512" and summary["precision"] == "fp32"
    assert len({r["worker"] for r in summary["inputs"]}) <= 2
    _same(_outputs(tmp_path, "ad"), {n: single[n] for n in "ad"})
    for bad in ("local:0", "slurm", "local:two"):
        with pytest.raises(SystemExit):
            main(argv + ["--cluster", bad])
        assert "local:N" in capsys.readouterr().err
    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT", "1s")  # dask retries for as long: 20 s by default
    assert main(argv + ["--scheduler", "tcp://127.0.0.1:9"]) == 1  # nothing listens there
    assert "could not reach the dask scheduler at 'tcp://127.0.0.1:9'" in capsys.readouterr().err


def test_without_distributed_one_process_works_and_a_cluster_says_how_to_install_it(crops, tmp_path):
    """In a fresh interpreter where ``import distributed`` fails, as on an install without the extra."""
    folder, single = crops
    script = f"""
import sys
sys.modules["distributed"] = None  # what a missing package does to `import distributed`
from napari_segany.cli import main
argv = ["auto", {str(folder / "a.tif")!r}, "-d", {str(tmp_path)!r}, "--points-per-side", "6"]
assert main(argv) == 0, "the single process failed"
assert main(argv + ["--overwrite", "--cluster", "local"]) == 1
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "error: running on a dask cluster needs dask.distributed, which is not installed" in done.stderr
    assert "pip install 'napari-segany[cluster]'" in done.stderr
    _same(_outputs(tmp_path, "a"), {"a": single["a"]})


def test_embed_many_volumes_on_the_cluster_then_reuse_their_caches(client, tmp_path, capsys):
    """Each volume's cache in its own folder, filled by the workers; the single process then finds
    every slice there (the caches the workers wrote are whole and keyed as its own); a 2D image
    among the volumes is reported and the others go on."""
    from napari_segany.batch import AutoOptions, plan_caches, run_embed
    from napari_segany.batch.inputs import expand_inputs

    stack = load_sample("nuclei3d")
    inputs = tmp_path / "stacks"
    inputs.mkdir()
    tifffile.imwrite(inputs / "one.tif", stack[28:30, 64:160, 64:160], photometric="minisblack")
    tifffile.imwrite(inputs / "two.tif", stack[40:43, 100:196, 100:196], photometric="minisblack")
    tifffile.imwrite(inputs / "flat.tif", stack[30, :96, :96])
    volumes = plan_caches(expand_inputs([str(inputs)]), tmp_path / "cache")
    assert [(v.name, c.name) for v, c in volumes] == [("flat.tif", "flat"), ("one.tif", "one"), ("two.tif", "two")]
    results, model = run_embed(volumes, AutoOptions(), client=client, progress=False)
    assert model == ("segany_vit_t_512", "fp32")
    assert [r["status"] for r in results] == ["failed", "embedded", "embedded"]
    assert "flat.tif" in results[0]["error"] and "2D image" in results[0]["error"]
    assert [(r["slices"], r["computed"], r["cached"]) for r in results[1:]] == [(2, 2, 0), (3, 3, 0)]

    assert main(["embed", str(inputs / "one.tif"), str(inputs / "two.tif"), "--cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "one.tif: 2 slices along axis 0: 0 computed, 2 already cached" in out
    assert "two.tif: 3 slices along axis 0: 0 computed, 3 already cached" in out
    assert "2 volumes: 2 embedded, 0 failed" in out


@pytest.mark.slow  # about a minute on 2 loaded cores: 16 slices found and followed
def test_a_long_volume_in_blocks_keeps_one_id_per_object_across_blocks(client, tmp_path, capsys):
    """12 slices in blocks of 5 sharing 2 slices with each neighbour (3 tasks); the nuclei run
    through the stack, so objects cross both block boundaries and must keep their ids there."""
    volume = tmp_path / "stack.tif"
    tifffile.imwrite(volume, load_sample("nuclei3d")[22:34, 64:144, 64:144], photometric="minisblack")
    out = tmp_path / "out"
    results = run_auto(volume, out, client=client, settings=GRID, block_slices=5, block_overlap=1, progress=False)
    assert results[0]["status"] == "segmented" and results[0]["blocks"] == 3 and results[0]["kind"] == "volume"
    labels = tifffile.imread(out / "stack_labels.tif")
    assert labels.shape == (12, 80, 80) and labels.dtype == np.uint16
    ids = [int(i) for i in np.unique(labels) if i]
    assert ids == list(range(1, results[0]["objects"] + 1)) and len(ids) >= 3
    import csv

    with open(out / "stack_objects.csv", newline="") as f:
        rows = {int(r["id"]): r for r in csv.DictReader(f)}
    assert sorted(rows) == ids
    for i, r in rows.items():  # the table is the labels' own, as a whole volume's
        z, y, x = np.nonzero(labels == i)
        assert int(r["voxels"]) == z.size
        assert [int(r[f"bbox_{e}_{a}"]) for e in ("min", "max") for a in "zyx"] == \
            [int(v) for v in (z.min(), y.min(), x.min(), z.max(), y.max(), x.max())]
        assert (int(r["first_slice"]), int(r["last_slice"])) == (z.min(), z.max())
        assert float(r["centroid_y"]) == pytest.approx(y.mean(), abs=0.01)
    for boundary in (5, 10):  # one id on both sides of each boundary
        assert set(np.unique(labels[boundary - 1])) & set(np.unique(labels[boundary])) - {0}
    assert sorted(p.name for p in out.iterdir()) == ["stack_labels.tif", "stack_objects.csv"]  # blocks removed

    again = run_auto(volume, out, client=client, settings=GRID, block_slices=5, block_overlap=1, progress=False)
    assert again[0]["status"] == "skipped"
    assert main(["auto", str(volume), "-d", str(out), "--block-slices", "5"]) == 1
    assert "--block-slices cuts volumes into tasks for a dask cluster" in capsys.readouterr().err


def _settings() -> dict:
    import dask

    return {"environ": {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                                         "OMP_NUM_THREADS", TORCH_THREADS)},
            "profile": dask.config.get("distributed.worker.profile.enabled"),
            "tick": dask.config.get("distributed.admin.tick.interval")}


def test_our_local_clusters_give_their_workers_our_settings_and_leave_this_process_as_it_was():
    """What ``--cluster local`` starts: workers whose freed memory is reused (not faulted in anew per
    image), whose event loop does not wake every few ms while the model works, and with their share
    of the cores, also when an earlier cluster in this process had other shares (dask's nannies take
    this process's environment over their settings, and leave their settings in it)."""
    before = dict(os.environ)
    for n in (2, 1):
        workers, threads = local_workers(n)
        with connect(local=n) as client:
            seen = list(client.run(_settings).values())
        assert dict(os.environ) == before
        assert len(seen) == workers == n
        for worker in seen:
            assert worker["environ"] == {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
                                         "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
                                         "OMP_NUM_THREADS": str(threads), TORCH_THREADS: str(threads)}
            assert worker["profile"] is False and worker["tick"] == "1s"

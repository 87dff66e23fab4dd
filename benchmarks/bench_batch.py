"""Many images on dask.distributed (issue 31): ``napari_segany.batch.run_auto`` in one process
against a ``LocalCluster`` on this machine, on the same images with the included model.

The single process runs with the allocator settings of the ``napari-segany`` command
(:func:`napari_segany.batch.environ.keep_freed_memory`), the workers with those of ``--cluster``.

Images: ``--images`` (default 20) 512 x 512 images, the real nuclei image (sample_data/nuclei2d.tif)
in its 8 orientations (rotations and mirror images) in turn, written as TIFFs. Both runs start
from empty output folders and load the model themselves (the single process once; each worker
once, inside its first task). Measured:

- throughput (images/s) of each, from the call of ``run_auto`` to its return; the cluster's start
  (worker processes spawned) is timed apart and not in its throughput; ratio cluster / single;
- per-task overhead, two ways, each as a share of a task's compute (the time the worker's model
  worked for it, measured inside the task): dask's own time on the worker around our function
  (its task stream's span of the call minus the time measured inside the call); and everything
  that is not compute, per task: (wall time x workers - the sum of the tasks' compute) / tasks,
  which holds model loading, reading, writing, scheduling and idle workers, and the same without
  what each worker pays once, not per task: loading the model (the tasks that loaded it took that
  much longer than the others) and the time until the first task started (planning, and the
  workers importing torch and napari-segany for our plugin);
- identical results: every label image and table of the two runs compared.

    python benchmarks/bench_batch.py --save                  # 20 images; on a quiet machine
    python benchmarks/bench_batch.py --images 2 --json /tmp/bench_batch.json   # a check that it runs

Writes ``benchmarks/results/batch_cpu_<date>.json`` with ``--save`` (or ``--json PATH``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_automatic import _git, cpu_info  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def write_images(folder: Path, n: int) -> list[Path]:
    import tifffile

    from napari_segany.sample_data import load_sample

    image = load_sample("nuclei2d")
    views = [np.rot90(image, k) for k in range(4)] + [np.rot90(image[:, ::-1], k) for k in range(4)]
    paths = []
    for i in range(n):
        paths.append(folder / f"nuclei_{i:03d}.tif")
        tifffile.imwrite(paths[-1], np.ascontiguousarray(views[i % 8]))
    return paths


def single(folder: Path, out: Path, threads: int) -> dict:
    import torch

    from napari_segany.batch import run_auto

    torch.set_num_threads(threads)
    start = time.perf_counter()
    results = run_auto(folder, out, progress=False)
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 3), "threads": threads, "results": results}


def cluster(folder: Path, out: Path, workers: int) -> dict:
    """The run as ``auto --cluster local:WORKERS`` makes it (napari_segany.batch.cluster.connect)."""
    import distributed

    from napari_segany.batch import run_auto
    from napari_segany.batch.cluster import connect, local_workers

    start = time.perf_counter()
    with connect(local=workers) as client:
        client.wait_for_workers(workers)
        started = time.perf_counter() - start
        with distributed.get_task_stream(client) as stream:
            called = time.time()  # the task stream's clock
            start = time.perf_counter()
            results = run_auto(folder, out, client=client, progress=False)
            wall = time.perf_counter() - start
        tasks = stream.data
    return {"wall_s": round(wall, 3), "start_s": round(started, 3), "workers": workers, "called": called,
            "threads": local_workers(workers)[1], "results": results, "tasks": tasks}


def overheads(run: dict) -> dict:
    """Per task: its time on the worker (dask's task stream) minus the time inside our function;
    per run: the share of the workers' wall time their model was busy, and what the rest costs per
    task (model loading, reading, writing, scheduling, idle), as a share of a task's compute."""
    by_path = {r["path"]: r for r in run["results"]}
    order = sorted(by_path)  # the jobs are the inputs in order; keys are segany-auto_task-<run>-<index>
    tasks = []
    for t in run["tasks"]:
        compute = [s for s in t["startstops"] if s["action"] == "compute"]
        if not compute or not str(t["key"]).startswith("segany-auto_task-"):
            continue
        r = by_path[order[int(str(t["key"]).rsplit("-", 1)[1])]]
        span = compute[-1]["stop"] - compute[0]["start"]
        tasks.append({"input": Path(r["path"]).name, "worker": r["worker"], "on_worker_s": round(span, 4),
                      "inside_s": r["seconds"], "compute_s": r["compute_seconds"], "wait_s": r["wait_seconds"],
                      "loaded_model": r["loaded_model"], "overhead_on_worker_s": round(span - r["seconds"], 4)})
    computes = [t["compute_s"] for t in tasks]
    busy = sum(computes) / (run["wall_s"] * run["workers"])
    rest = (run["wall_s"] * run["workers"] - sum(computes)) / len(tasks)
    median = statistics.median(computes)
    on_worker = [t["overhead_on_worker_s"] / t["compute_s"] for t in tasks if t["compute_s"] > 0]
    # a task that loaded the model spent that on top of what the others spend outside compute
    besides = statistics.median([t["inside_s"] - t["compute_s"] for t in tasks if not t["loaded_model"]] or [0.0])
    loading = sum(t["inside_s"] - t["compute_s"] - besides for t in tasks if t["loaded_model"])
    # before the first task: planning, and the workers importing torch and napari-segany for our plugin
    first = min(s["start"] for t in run["tasks"] for s in t["startstops"] if s["action"] == "compute")
    startup = first - run["called"]
    per_task = rest - (loading + startup * run["workers"]) / len(tasks)
    return {"tasks": tasks, "median_compute_s": round(median, 3),
            "median_overhead_on_worker_share": round(statistics.median(on_worker), 5),
            "workers_busy_share": round(busy, 4), "rest_per_task_s": round(rest, 3),
            "rest_per_task_share": round(rest / median, 4), "model_loading_s": round(loading, 3),
            "until_first_task_s": round(startup, 3),
            "per_task_without_startup_s": round(per_task, 4), "per_task_without_startup_share": round(per_task / median, 4)}


def identical(a: Path, b: Path, names: list[str]) -> bool:
    import tifffile

    return all(np.array_equal(tifffile.imread(a / f"{n}_labels.tif"), tifffile.imread(b / f"{n}_labels.tif"))
               and (a / f"{n}_objects.csv").read_bytes() == (b / f"{n}_objects.csv").read_bytes() for n in names)


def main() -> int:
    from napari_segany.batch import local_workers
    from napari_segany.batch.environ import keep_freed_memory

    keep_freed_memory()  # as the napari-segany command does for the single process

    default_workers, default_threads = local_workers()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--workers", type=int, default=default_workers, help=f"default {default_workers}")
    p.add_argument("--save", action="store_true", help="write benchmarks/results/batch_cpu_<date>.json")
    p.add_argument("--json", default=None, metavar="PATH", help="write the JSON here instead")
    args = p.parse_args()
    threads = local_workers(args.workers)[1]  # each worker's torch threads, as --cluster local:N shares them
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        names = [p.stem for p in write_images(tmp / "in", args.images)]
        one = single(tmp / "in", tmp / "single", args.workers * threads)
        many = cluster(tmp / "in", tmp / "cluster", args.workers)
        same = identical(tmp / "single", tmp / "cluster", names)
    over = overheads(many)
    n = args.images
    res = {
        "date": date.today().isoformat(), "cpu": cpu_info(), "commit": _git(), "images": n, "size": [512, 512],
        "model": "segany_vit_t_512 (included), default GridSettings (head mode since 2026-12-07)", "precision_env": _precision(),
        "single": {"wall_s": one["wall_s"], "threads": one["threads"], "images_per_s": round(n / one["wall_s"], 4),
                   "statuses": sorted({r["status"] for r in one["results"]})},
        "cluster": {"wall_s": many["wall_s"], "start_s": many["start_s"], "workers": many["workers"],
                    "torch_threads_per_worker": many["threads"], "task_threads_per_worker": 1, "images_per_s": round(n / many["wall_s"], 4),
                    "statuses": sorted({r["status"] for r in many["results"]})},
        "throughput_ratio": round(one["wall_s"] / many["wall_s"], 4),
        "overhead": over, "identical_results": same,
    }
    print(f"{n} images of 512 x 512 on {res['cpu']['model_name']} ({res['cpu']['cores']} cores)")
    print(f"  one process ({one['threads']} threads): {one['wall_s']:.1f} s, {res['single']['images_per_s']:.3f} images/s")
    print(f"  LocalCluster ({many['workers']} worker(s), {many['threads']} torch threads each): {many['wall_s']:.1f} s "
          f"(+{many['start_s']:.1f} s to start), {res['cluster']['images_per_s']:.3f} images/s")
    print(f"  ratio cluster/single: {res['throughput_ratio']:.3f}; identical results: {same}")
    print(f"  per task: dask's time on the worker around the call {100 * over['median_overhead_on_worker_share']:.3f} "
          f"% of its compute ({over['median_compute_s']:.2f} s, median); everything but compute (model loading, "
          f"reading, writing, scheduling, idle) {over['rest_per_task_s']:.3f} s = "
          f"{100 * over['rest_per_task_share']:.2f} %; workers' model busy {100 * over['workers_busy_share']:.1f} % "
          "of the wall time")
    print(f"  of which loading the model on the workers {over['model_loading_s']:.2f} s in all, and "
          f"{over['until_first_task_s']:.2f} s until the first task started (planning, the workers importing torch "
          f"and napari-segany); the rest per task (scheduling, reading, writing, idle between tasks) "
          f"{over['per_task_without_startup_s']:.3f} s = "
          f"{100 * over['per_task_without_startup_share']:.2f} % of its compute")
    target = Path(args.json) if args.json else RESULTS / f"batch_cpu_{res['date']}.json" if args.save else None
    if target is not None:
        target.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {target}")
    return 0 if same else 1


def _precision() -> str:
    import os

    return os.environ.get("SEGANY_PRECISION", "auto")


if __name__ == "__main__":
    sys.exit(main())

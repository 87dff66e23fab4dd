"""The environment our dask workers start with (set before a LocalCluster spawns them).

dask starts every worker with ``MALLOC_TRIM_THRESHOLD_`` set, and setting it turns off glibc's
growing mmap threshold: every tensor over 128 KiB was then mapped and unmapped again, and the page
faults doubled a worker's time per 512 px image (AMD EPYC, 2 cores: 6.6-7.8 s against 3.3-3.8 s
in one process). So glibc keeps freed blocks of up to :data:`MMAP_THRESHOLD` for reuse; workers
started elsewhere get the same from :func:`napari_segany.batch.worker.keep_large_blocks`. dask
also starts workers with OpenMP and MKL at 1 thread; ours get the torch threads they are given.
"""

from __future__ import annotations

#: The largest block glibc serves from its heap (and keeps for reuse) instead of mapping it anew.
MMAP_THRESHOLD = 32 * 1024 * 1024

#: Torch threads of each worker of our LocalCluster (elsewhere: the worker's threads).
TORCH_THREADS = "SEGANY_WORKER_TORCH_THREADS"


def worker_environ(torch_threads: int) -> dict[str, str]:
    """The variables a LocalCluster's workers start with, each given ``torch_threads`` threads."""
    threads = str(int(torch_threads))
    return {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), TORCH_THREADS: threads,
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}

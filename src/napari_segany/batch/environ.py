"""How the processes that run our models use memory: the environment our dask workers start with
(set before a LocalCluster spawns them), and the same allocator settings for our own command.

glibc's malloc serves large blocks with ``mmap`` and returns the free memory at the top of its
heap to the system once it exceeds a threshold. Both defaults cost a model run dearly: between one
image's arrays and the next, the heap's top (hundreds of MiB for one 512 px image) was given back
and then faulted in again page by page. On one AMD EPYC core pair the included model on a 512 px
image took 220 000 page faults an image in one process (1.7-1.9 s), 9 000 with the settings below
(1.6 s), at the same peak memory. dask makes it worse: it starts every worker with
``MALLOC_TRIM_THRESHOLD_`` at 64 KiB, which also turns off glibc's growing mmap threshold, so
every block over 128 KiB was mapped anew (twice the single process's faults, and before the
mmap threshold was set, twice its time per image).

So our processes keep freed blocks of up to :data:`MMAP_THRESHOLD` in the heap for reuse and give
memory back only when :data:`TRIM_THRESHOLD` of it is free at the top; their peak memory is the
same, and what the system sees between peaks stays closer to the peak. Workers started elsewhere
get the same from :func:`keep_freed_memory` when our model keeper starts on them, unless their
environment sets ``MALLOC_MMAP_THRESHOLD_`` itself. dask also starts workers with OpenMP and MKL
at 1 thread; ours get the torch threads they are given.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

#: The largest block glibc serves from its heap (and keeps for reuse) instead of mapping it anew.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: The free memory at the top of the heap above which glibc gives it back to the system.
TRIM_THRESHOLD = 256 * 1024 * 1024

#: Torch threads of each worker of our LocalCluster (elsewhere: the worker's threads).
TORCH_THREADS = "SEGANY_WORKER_TORCH_THREADS"

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


def worker_environ(torch_threads: int) -> dict[str, str]:
    """The variables a LocalCluster's workers start with, each given ``torch_threads`` threads; the
    allocator's only where this process's environment does not set an mmap threshold itself."""
    threads = str(int(torch_threads))
    environ = {TORCH_THREADS: threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if not _owner_chose():
        environ |= {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}
    return environ


@contextlib.contextmanager
def spawning_with(environ: dict[str, str]):
    """While it lasts, the worker processes that dask's nannies start (or restart) get ``environ``.

    A nanny takes a variable from this process's environment over its ``pre-spawn-environ``
    setting, and leaves what it set in this process's environment (its pre-spawn variables, and
    others such as ``PYTHONHASHSEED``): after one LocalCluster, the next one's workers got the first
    one's thread counts. So ``environ`` is put in this process's environment as well as in the
    setting, and the environment is put back as it was before, whole, when it ends."""
    import dask

    saved = dict(os.environ)
    os.environ.update(environ)
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in environ.items()}):
            yield
    finally:
        for k in set(os.environ) - set(saved):
            del os.environ[k]
        os.environ.update(saved)


def keep_freed_memory() -> bool:
    """Give this process the allocator settings of our workers (Linux with glibc; elsewhere nothing
    to put right). Left alone where the environment chose an mmap threshold: the process's owner
    decided. True when the settings were made."""
    if _owner_chose():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        # both at once: setting either one stops glibc from adjusting the other
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):  # not glibc
        return False


def _owner_chose() -> bool:
    """This process's environment sets glibc's mmap threshold: its owner's allocator settings stand
    (dask sets only the trim threshold, so that one says nothing)."""
    return "MALLOC_MMAP_THRESHOLD_" in os.environ

"""The allocator settings of the processes that run our models (napari_segany.batch.environ): freed
blocks are reused instead of being given back and faulted in again, in our command's process and
in our dask workers, unless the process's owner chose otherwise. Each case runs in a fresh
interpreter, as glibc reads its environment when a process starts."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from napari_segany.batch.environ import MMAP_THRESHOLD, TRIM_THRESHOLD, worker_environ

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc settings")

#: Fill 8 blocks of 16 MiB (malloc, as torch's CPU allocator does), free them, and count the page
#: faults of doing it a third time (what one image's arrays cost the next image).
ROUNDS = """
import ctypes, resource
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
{setup}
def round_():
    blocks = [libc.malloc(16 * 1024 * 1024) for _ in range(8)]
    for b in blocks:
        ctypes.memset(b, 1, 16 * 1024 * 1024)
    for b in blocks:
        libc.free(b)
round_()
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(setup: str = "", env: dict | None = None) -> int:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", ROUNDS.format(setup=setup)], capture_output=True, text=True,
                          env={**environ, **(env or {})}, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_our_command_reuses_freed_memory_and_glibc_alone_gives_it_back():
    pages = 8 * 16 * 1024 * 1024 // 4096
    assert _faults() > pages // 2  # glibc's defaults: the 128 MiB freed at the top are given back
    assert _faults("from napari_segany.cli import main; assert main(['models']) == 0") < pages // 20
    # what dask gives its workers, and then our model keeper's settings on top
    dask = {"MALLOC_TRIM_THRESHOLD_": "65536"}
    assert _faults(env=dask) > pages // 2
    assert _faults("from napari_segany.batch.environ import keep_freed_memory; assert keep_freed_memory()",
                   env=dask) < pages // 20


def test_our_local_workers_start_with_them_and_an_owners_choice_is_kept():
    environ = worker_environ(2)
    assert environ["MALLOC_MMAP_THRESHOLD_"] == str(MMAP_THRESHOLD)
    assert environ["MALLOC_TRIM_THRESHOLD_"] == str(TRIM_THRESHOLD)
    assert environ["OMP_NUM_THREADS"] == "2"
    pages = 8 * 16 * 1024 * 1024 // 4096
    assert _faults(env={k: v for k, v in environ.items() if k.startswith("MALLOC_")}) < pages // 20
    # an owner who set an mmap threshold keeps their settings (here: give everything back at once)
    owner = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": "65536"}
    assert _faults("from napari_segany.batch.environ import keep_freed_memory; assert not keep_freed_memory()",
                   env=owner) > pages // 2

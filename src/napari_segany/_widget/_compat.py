"""Work around a crash between PyTorch's optional Triton and Mesa's OpenGL.

Mesa's software and AMD OpenGL drivers load ``libLLVM`` into the process when
napari creates its canvas. Triton (pulled in lazily by ``torch._dynamo``, which
PyTorch imports for some meta-tensor operations, e.g. while building a model)
carries its own LLVM, and loading it after Mesa's segfaults the process.
When that is the situation (Linux, ``libLLVM`` mapped, Triton not yet
imported), Triton is marked unavailable for this process: PyTorch then runs
without it (napari-segany never compiles kernels), instead of crashing.
"""

from __future__ import annotations

import sys


def llvm_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return any("libLLVM" in line for line in maps)
    except OSError:
        return False


def guard_triton() -> bool:
    """Block ``import triton`` if it would crash; return True when blocked."""
    if "triton" in sys.modules:
        return sys.modules["triton"] is None
    if sys.platform.startswith("linux") and llvm_loaded():
        sys.modules["triton"] = None  # `import triton` now raises ImportError
        return True
    return False

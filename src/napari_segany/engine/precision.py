"""Arithmetic precision modes: which dtype the encoder and decoder run in."""

from __future__ import annotations

import contextlib
import functools
import platform

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX or AVX-512 bf16 instructions (Linux: /proc/cpuinfo)."""
    if platform.system() != "Linux":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"amx_bf16", "avx512_bf16"} & flags)
    except OSError:
        return False
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``"auto"`` into a concrete mode for ``device``; validate the others.

    auto: bf16 on CPUs with AMX/AVX-512-bf16 and on CUDA devices that support
    it (else fp16), fp16 on MPS, fp32 otherwise.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "mps":
        return "fp16"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def autocast_context(precision: str, device: torch.device):
    """A context manager running matrix work in ``precision`` (no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision])

"""Arithmetic precision modes: which dtype the encoder and decoder run in."""

from __future__ import annotations

import contextlib

import torch

from .identity import model_identity
from .precision_choice import choose

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device, model=None, model_id: str | None = None,
                      report=None) -> str:
    """Turn ``"auto"`` into a concrete mode for ``device``; validate the others.

    auto: on the CPU, what :mod:`napari_segany.engine.precision_choice` measured for ``model`` on this
    machine (bf16 only where it is faster than fp32 with logits within 2 %); on CUDA, bf16 where the
    device supports it, else fp16; fp16 on MPS. fp32 is the exact-parity mode.
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
    if model is None:
        raise ValueError("precision='auto' on the CPU needs the model, whose speed it measures: "
                         "pass model=, or name fp32 or bf16")
    return choose(model, model_id or model_identity(model), report=report)


def autocast_context(precision: str, device: torch.device):
    """A context manager running matrix work in ``precision`` (no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision])

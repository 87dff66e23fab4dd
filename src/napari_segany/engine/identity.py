"""What an embedding knows it encodes: the identity of an image's pixels and of a model."""

from __future__ import annotations

import numpy as np
import torch
import xxhash


def image_fingerprint(data: np.ndarray) -> str:
    """Identity of an image's pixels: a fast hash of its dtype, shape and bytes (one 2D image
    or crop, never a whole volume: 1024 x 1024 float32 takes about 1 ms)."""
    data = np.ascontiguousarray(data)
    h = xxhash.xxh3_128(f"{data.dtype.str}{data.shape}".encode())
    h.update(memoryview(data).cast("B"))
    return "px:" + h.hexdigest()


def model_identity(model) -> str:
    """``name:digest`` for a model loaded from a file; for a model built in memory (tests,
    fine-tuning) ``name@`` and a digest of its weights, so that two such models of one architecture
    never take each other's embeddings (no ':' in it: such ids never key a disk cache)."""
    info = model.info
    if info.sha256:
        return f"{info.name}:{info.sha256[:16]}"
    h = xxhash.xxh3_64()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            h.update(name.encode())
            h.update(memoryview(np.ascontiguousarray(tensor.detach().float().cpu().numpy())).cast("B"))
    return f"{info.name}@{h.hexdigest()}"

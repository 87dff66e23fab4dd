"""Reference models (segment-anything, MobileSAM) with deterministic random
weights, saved in the official checkpoint schema: the oracle for parity."""

from __future__ import annotations

from pathlib import Path

import torch

from napari_segany.cli.benchmark import randomise_weights
from napari_segany.cli.benchmark import reference_model as reference_sam  # noqa: F401 (used by the tests)


def reference_vit_encoder(arch: str, image_size: int, seed: int = 0) -> torch.nn.Module:
    """The reference ViT image encoder alone, at a chosen (small) input size."""
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT

    dims = {"vit_b": (768, 12, 12, (2, 5, 8, 11)), "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
            "vit_h": (1280, 32, 16, (7, 15, 23, 31))}
    dim, depth, heads, glob = dims[arch]
    torch.manual_seed(seed)
    enc = ImageEncoderViT(
        depth=depth, embed_dim=dim, img_size=image_size, mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=heads, patch_size=16,
        qkv_bias=True, use_rel_pos=True, global_attn_indexes=glob, window_size=14, out_chans=256,
    )
    randomise_weights(enc, seed)
    return enc.eval()


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Save a flat fp32 state dict, as the official .pth files are."""
    torch.save(model.state_dict(), path)
    return path


def save_fast_vit_t(path: Path, image_size: int = 256, seed: int = 1) -> Path:
    """A MobileSAM-architecture (vit_t) model with seeded random weights and a small input
    (256 px: about 1 s per embedding on 2 CPU cores), in napari-segany's own checkpoint format."""
    from napari_segany.model import build_sam

    torch.manual_seed(seed)
    model = build_sam("vit_t", image_size)
    randomise_weights(model, seed=seed)
    torch.save({"model": model.state_dict(), "config": {"arch": "vit_t", "image_size": image_size}}, path)
    return path

"""Reference models (segment-anything, MobileSAM) with deterministic random
weights, saved in the official checkpoint schema: the oracle for parity."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


def randomise_constants(model: torch.nn.Module, seed: int = 0) -> None:
    """Seeded random weights that make parity tests sensitive: matrices get
    std 1/sqrt(fan_in) (default inits are so small that attention is nearly
    uniform, which hides layout mistakes), and every tensor that default
    initialisation leaves constant (LayerNorm ones/zeros, relative-position
    tables, position embeddings, BN statistics) gets random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or t.numel() < 2:
                continue
            if t.ndim >= 2 and name.endswith("weight") and "gaussian" not in name:
                fan_in = t[0].numel() if t.ndim > 2 else t.shape[1]
                t.copy_(torch.randn(t.shape, generator=gen) / fan_in**0.5)
            elif float(t.std()) == 0.0:
                noise = torch.randn(t.shape, generator=gen) * 0.1
                if name.endswith("running_var"):
                    t.copy_(1.0 + noise.abs())
                else:
                    t.add_(noise)


def reference_sam(arch: str, seed: int = 0, image_size: int | None = None) -> torch.nn.Module:
    """The reference package's model for ``arch`` with seeded random weights."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if arch == "vit_t":
            from mobile_sam import sam_model_registry
        else:
            from segment_anything import sam_model_registry
    model = sam_model_registry[arch]()
    randomise_constants(model, seed)
    return model.eval()


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
    randomise_constants(enc, seed)
    return enc.eval()


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Save a flat fp32 state dict, as the official .pth files are."""
    torch.save(model.state_dict(), path)
    return path

"""Parity of our TinyViT (MobileSAM ``vit_t``) image encoder with the reference
``mobile_sam`` package (mobilesam-mirror), using identical random weights saved
in the official flat checkpoint schema, on the real ``nuclei2d`` sample image
(DSB 2018 nuclei, see sample_data/README.md).

The reference is a hard dependency of the test suite: if it cannot be
imported the test fails; it is never skipped.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segany.model import build_sam
from napari_segany.model.tiny_vit import TinyViT

# timm (imported by mobile_sam) warns about deprecated import paths and about
# mobile_sam re-registering timm's own TinyViT names; neither matters here.
pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore:Overwriting tiny_vit:UserWarning"),
]

PIXEL_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
PIXEL_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
SIZE = 1024
TOL = 1e-4


def _reference_model() -> torch.nn.Module:
    from mobile_sam.build_sam import build_sam_vit_t  # a failing import fails the test

    torch.manual_seed(0)
    return build_sam_vit_t()


def _randomise_encoder(model: torch.nn.Module, seed: int = 1) -> None:
    """Deterministically give every image-encoder tensor non-trivial values.

    Norm/BN affine parameters, BN running statistics and the attention biases
    all start as constants (0 or 1); they are perturbed so that a wrong eps,
    a skipped BN, a wrong bias index or a wrong qkv split would show. Weight
    matrices get std 1/sqrt(fan_in) so that attention logits are O(1).
    """
    gen = torch.Generator().manual_seed(seed)

    def randn(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=gen)

    with torch.no_grad():
        for name, t in model.image_encoder.state_dict().items():
            if not t.is_floating_point():
                continue  # num_batches_tracked
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("running_mean"):
                t.copy_(0.2 * randn(t))
            elif name.endswith("attention_biases"):
                t.copy_(randn(t))
            elif t.ndim == 1 and name.endswith("weight"):  # LayerNorm / BatchNorm scale
                t.copy_(1.0 + 0.2 * randn(t))
            elif t.ndim == 1:  # biases
                t.copy_(0.1 * randn(t))
            else:  # Linear / Conv weights
                t.copy_(randn(t) / (t[0].numel() ** 0.5))


def _input_image(gray: np.ndarray) -> torch.Tensor:
    """1 x 3 x SIZE x SIZE encoder input from a real 2D image, prepared as SAM does.

    A non-square crop (3/4 of the rows), 1-99 percentile window to 0-255,
    grey to RGB, longest side resized to SIZE (bilinear), mean/std
    normalisation, zero padding at the bottom: the padded band is part of
    what has to agree.
    """
    crop = gray[: gray.shape[0] * 3 // 4].astype(np.float64)
    lo, hi = np.percentile(crop, (1, 99))
    unit = np.clip((crop - lo) / (hi - lo), 0, 1)
    rgb = torch.from_numpy(unit * 255).float()[None, None].expand(1, 3, -1, -1)
    scale = SIZE / max(rgb.shape[-2:])
    h, w = (int(side * scale + 0.5) for side in rgb.shape[-2:])
    rgb = torch.nn.functional.interpolate(rgb, size=(h, w), mode="bilinear", align_corners=False)
    image = torch.zeros(1, 3, SIZE, SIZE)
    image[:, :, :h, :w] = (rgb - PIXEL_MEAN) / PIXEL_STD
    return image


def test_tinyvit_matches_reference(tmp_path, nuclei2d):
    ref = _reference_model()
    _randomise_encoder(ref)
    # The reference caches its gathered attention bias when switched to eval
    # (its build function calls eval() before any weights are loaded); eval()
    # again refreshes the cache from the new attention_biases.
    ref.eval()
    path = tmp_path / "mobile_sam_random.pt"
    torch.save(ref.state_dict(), path)

    state = torch.load(path, weights_only=True)
    assert {"image_encoder.head.weight", "image_encoder.norm_head.bias"} <= state.keys()
    assert any(k.startswith("image_encoder.") and k.endswith("running_var") for k in state)
    assert any(k.startswith("prompt_encoder.") for k in state)
    assert any(k.startswith("mask_decoder.") for k in state)
    ours = build_sam("vit_t")
    ours.load_state_dict(state, strict=True)
    ours.eval()

    image = _input_image(nuclei2d[0])
    with torch.inference_mode():
        expected = ref.image_encoder(image)
        got = ours.image_encoder(image)

    assert got.shape == expected.shape == (1, 256, SIZE // 16, SIZE // 16)
    assert torch.isfinite(expected).all()
    assert expected.std() > 0.1  # a meaningful, non-degenerate embedding
    diff = (got - expected).abs().max().item()
    assert diff <= TOL, f"max abs diff {diff:.3g} > {TOL}"


def test_tinyvit_512_input_and_weights_shared_across_sizes():
    torch.manual_seed(0)
    state = TinyViT(img_size=1024).state_dict()
    small = TinyViT(img_size=512)
    small.load_state_dict(state, strict=True)  # no size-dependent parameters
    small.eval()
    with torch.inference_mode():
        out = small(torch.randn(2, 3, 512, 512))
    assert out.shape == (2, 256, 32, 32)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="512"):
        small(torch.randn(1, 3, 1024, 1024))

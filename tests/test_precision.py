"""Precision modes: what "auto" picks, and every reduced-precision path against fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_segany as sg
from napari_segany.engine import precision as P
from napari_segany.cli.benchmark import randomise_weights
from napari_segany.model import build_sam


def test_auto_picks_per_device(monkeypatch):
    monkeypatch.setattr(P, "cpu_has_fast_bf16", lambda: True)
    assert P.resolve_precision("auto", torch.device("cpu")) == "bf16"
    monkeypatch.setattr(P, "cpu_has_fast_bf16", lambda: False)
    assert P.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert P.resolve_precision("auto", torch.device("mps")) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert P.resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert P.resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert P.resolve_precision("fp16", torch.device("cpu")) == "fp16"
    with pytest.raises(ValueError, match="precision must be one of"):
        P.resolve_precision("int4", torch.device("cpu"))


def test_cpu_detection_reads_real_flags():
    flags = open("/proc/cpuinfo").read()
    assert P.cpu_has_fast_bf16() == ("amx_bf16" in flags or "avx512_bf16" in flags)


@pytest.fixture(scope="module")
def small_model():
    """vit_t at a 256 input: every code path of the full model, small enough
    that emulated bf16/fp16 (CPUs without native support) stays quick."""
    torch.manual_seed(0)
    model = build_sam("vit_t", image_size=256)
    randomise_weights(model, seed=0)
    return model.eval()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_close_to_fp32(small_model, nuclei2d, precision):
    image = nuclei2d[0][:200, :240]
    ref = sg.Predictor(small_model, precision="fp32")
    low = sg.Predictor(small_model, precision=precision)
    e32, elow = ref.set_image(image), low.set_image(image)
    assert elow.features.dtype == np.float32
    emb_err = np.linalg.norm(elow.features - e32.features) / np.linalg.norm(e32.features)
    assert emb_err < 0.03, emb_err
    for pt in [(100, 120), (40, 60)]:
        a = ref.predict(points=[pt], multimask=False)
        b = low.predict(points=[pt], multimask=False)
        err = np.linalg.norm(b.logits - a.logits) / np.linalg.norm(a.logits)
        assert err <= 0.02, f"{precision} logits rel L2 {err:.4f}"
        inter = np.logical_and(a.masks, b.masks).sum()
        union = np.logical_or(a.masks, b.masks).sum()
        assert union == 0 or inter / union >= 0.97


def test_fp32_is_the_parity_path(small_model, nuclei2d):
    """fp32 never enters autocast: running twice gives bit-identical results."""
    p = sg.Predictor(small_model, precision="fp32")
    a = p.encode(nuclei2d[0][:128, :128]).features
    b = p.encode(nuclei2d[0][:128, :128]).features
    np.testing.assert_array_equal(a, b)

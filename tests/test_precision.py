"""Precision modes: what "auto" picks, and every reduced-precision path against fp32."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import napari_segany as sg
from napari_segany.engine import precision as P
from napari_segany.engine import precision_choice as C
from napari_segany.cli.benchmark import randomise_weights
from napari_segany.model import build_sam


def test_auto_on_accelerators_and_explicit_modes(monkeypatch):
    assert P.resolve_precision("auto", torch.device("mps")) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert P.resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert P.resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert P.resolve_precision("fp16", torch.device("cpu")) == "fp16"
    with pytest.raises(ValueError, match="precision must be one of"):
        P.resolve_precision("int4", torch.device("cpu"))
    with pytest.raises(ValueError, match="needs the model"):
        P.resolve_precision("auto", torch.device("cpu"))


def test_bf16_only_when_clearly_faster_and_close():
    assert C.decide(fp32_s=1.0, bf16_s=0.5, error=0.01) == "bf16"
    assert C.decide(fp32_s=1.0, bf16_s=0.95, error=0.01) == "fp32"  # within timing noise
    assert C.decide(fp32_s=1.0, bf16_s=2.0, error=0.001) == "fp32"  # slower here (e.g. AVX2 only)
    assert C.decide(fp32_s=1.0, bf16_s=0.5, error=0.03) == "fp32"  # too far from fp32


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


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """'auto' left to measure (the suite pins it to fp32), with the cache in a fresh folder."""
    monkeypatch.delenv(C.ENV_OVERRIDE, raising=False)
    monkeypatch.setenv("SEGANY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / C.CHOICES_FILE


def _forbid_measuring(monkeypatch):
    def fail(model):
        raise AssertionError("measured again")
    monkeypatch.setattr(C, "measure", fail)


def test_auto_is_the_default_measured_once_and_remembered(small_model, measuring, monkeypatch):
    p = sg.Predictor(small_model)
    assert p.precision in ("fp32", "bf16")
    records = json.loads(measuring.read_text())
    (record,) = records.values()
    assert record["precision"] == p.precision
    assert record["fp32_s"] > 0 and record["bf16_s"] > 0 and 0 <= record["error"] < 1
    assert C.decide(record["fp32_s"], record["bf16_s"], record["error"]) == p.precision
    _forbid_measuring(monkeypatch)
    assert sg.Predictor(small_model).precision == p.precision  # from the file
    assert sg.Predictor(small_model, precision="fp32").precision == "fp32"  # parity is one argument away


def test_the_record_belongs_to_this_machine_and_model(small_model):
    key = C.machine_key("vit_t@abc")
    assert C.machine_key("vit_t@abd") != key
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert C.machine_key("vit_t@abc") != key
    finally:
        torch.set_num_threads(threads)
    assert C.machine_key("vit_t@abc") == key


def test_a_damaged_record_is_measured_again(small_model, measuring, monkeypatch):
    measuring.parent.mkdir(parents=True)
    measuring.write_text('{"half a file')
    calls = []
    monkeypatch.setattr(C, "measure", lambda model: calls.append(1) or C.Choice("fp32", 1.0, 1.2, 0.01, "today"))
    assert sg.Predictor(small_model).precision == "fp32" and calls == [1]
    assert list(json.loads(measuring.read_text()).values())[0]["precision"] == "fp32"


def test_an_unwritable_cache_warns_and_still_answers(small_model, measuring, monkeypatch):
    measuring.parent.parent.mkdir(parents=True, exist_ok=True)
    measuring.parent.write_text("a file where the cache folder should be")
    monkeypatch.setattr(C, "measure", lambda model: C.Choice("bf16", 1.0, 0.4, 0.01, "today"))
    with pytest.warns(UserWarning, match="SEGANY_CACHE to a writable folder"):
        assert sg.Predictor(small_model).precision == "bf16"


def test_the_environment_can_fix_what_auto_means(small_model, measuring, monkeypatch):
    _forbid_measuring(monkeypatch)
    monkeypatch.setenv(C.ENV_OVERRIDE, "bf16")
    assert sg.Predictor(small_model).precision == "bf16"
    assert not measuring.exists()
    monkeypatch.setenv(C.ENV_OVERRIDE, "fast")
    with pytest.raises(ValueError, match="set it to fp32, bf16 or fp16"):
        sg.Predictor(small_model)

"""Large images: masks upscaled only in the window around the object are the masks the full-size
path gives, pixel for pixel (the memory it saves is measured by benchmarks/bench_memory.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import napari_segany as sg
from napari_segany.engine import regions
from napari_segany.engine.preprocess import Geometry, object_window


def _prompts(labels: np.ndarray, count: int):
    """A click, a box, and a click with a negative point for each of ``count`` real objects."""
    for i in [i for i in np.unique(labels) if i][:count]:
        rr, cc = np.nonzero(labels == i)
        pt = (int(np.median(rr)), int(np.median(cc)))
        yield dict(points=[pt], labels=[1])
        yield dict(box=(rr.min(), cc.min(), rr.max(), cc.max()))
        yield dict(points=[pt, (min(pt[0] + 40, labels.shape[0] - 1), pt[1])], labels=[1, 0])
    yield dict(points=[(5, 5)], labels=[1])  # the corner: usually background, a mask elsewhere or none


def _same_masks(predictor, image, labels, monkeypatch, count=8):
    if isinstance(predictor, sg.ZoomPredictor):
        predictor.set_image(image)
        ask = predictor.predict
    else:
        emb = predictor.encode(image)
        ask = lambda **kwargs: predictor.predict(embedding=emb, **kwargs)  # noqa: E731
    for kwargs in _prompts(labels, count):
        monkeypatch.setattr(regions, "LARGE_IMAGE_PIXELS", 10**12)
        full = ask(**kwargs)
        monkeypatch.setattr(regions, "LARGE_IMAGE_PIXELS", 1)
        windowed = ask(**kwargs)
        np.testing.assert_array_equal(windowed.mask(0), full.mask(0), err_msg=str(kwargs))
        np.testing.assert_array_equal(windowed.masks, full.masks, err_msg=str(kwargs))


def test_windowed_masks_equal_full_size_ones_with_the_refiner(shipped_model, nuclei2d, monkeypatch):
    image, labels = nuclei2d
    _same_masks(sg.Predictor(shipped_model, precision="fp32"), image, labels, monkeypatch, 5)


def test_zoomed_blended_masks_equal_full_size_ones(shipped_model, nuclei2d, monkeypatch):
    """ZoomPredictor blends a crop's answer with the whole image's: on a large image in a frame."""
    image, labels = nuclei2d
    zoom = sg.ZoomPredictor(sg.Predictor(shipped_model, precision="fp32"))
    _same_masks(zoom, image, labels, monkeypatch, 5)
    assert zoom.predict(points=[(346, 70)], labels=[1]).window is not None  # the crops were used


def test_windowed_masks_equal_full_size_ones_for_medsam_profile(tiny_model, nuclei2d, monkeypatch):
    image, labels = nuclei2d
    monkeypatch.setattr(tiny_model, "info", replace(tiny_model.info, preprocess="medsam"))
    _same_masks(sg.Predictor(tiny_model, regions="all"), image[:300, :450], labels[:300, :450], monkeypatch, 4)


@pytest.mark.parametrize("size", [(20000, 20000), (513, 20000), (300, 450)])
def test_the_window_holds_every_pixel_a_positive_cell_can_reach(size):
    geometry = Geometry.for_image(size, 1024)
    logits = np.full((1, 256, 256), -5.0, np.float32)
    logits[0, 100, 10] = 3.0
    rows, cols = object_window(logits, geometry, margin=0)
    from napari_segany.engine.preprocess import upscale_logits
    import torch

    if size[0] * size[1] <= 600 * 600:  # small enough to upscale whole and compare
        full = upscale_logits(torch.from_numpy(logits), geometry)[0].numpy() > 0
        rr, cc = np.nonzero(full)
        assert rows.start <= rr.min() and rr.max() < rows.stop and cols.start <= cc.min() and cc.max() < cols.stop
    assert rows.stop - rows.start < size[0] / 2 or size[0] < 1000
    assert object_window(np.full((2, 256, 256), -1.0, np.float32), geometry) is None


def test_large_images_mirror_after_resizing_with_the_same_embeddings(shipped_model, nuclei2d, monkeypatch):
    """Mirrored views of a large image are resized first and mirrored after (no full-size copy):
    the embeddings differ from mirroring first only by float rounding, and so do the masks."""
    from napari_segany.engine import views

    image, labels = nuclei2d
    predictor = sg.Predictor(shipped_model, precision="fp32", views=4)
    exact = predictor.encode(image)
    monkeypatch.setattr(views, "LARGE_IMAGE_PIXELS", 1)
    resized_first = predictor.encode(image)
    for (_, a), (_, b) in zip(exact.views, resized_first.views):
        assert np.linalg.norm(b.features - a.features) / np.linalg.norm(a.features) < 1e-4
    for kwargs in list(_prompts(labels, 5))[:10]:
        a = predictor.predict(embedding=exact, **kwargs).mask(0)
        b = predictor.predict(embedding=resized_first, **kwargs).mask(0)
        assert np.count_nonzero(a != b) <= max(2, 0.005 * max(1, a.sum())), kwargs

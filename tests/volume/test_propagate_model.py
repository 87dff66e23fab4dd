"""Propagation through the real model path (random-weight vit_t): shapes,
dtypes, axes, anisotropy, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest

import napari_segany as sg
from napari_segany.volume.prompting import allowed_area_factor, step_ratio

ACCEPT_ALL = {"iou_threshold": -np.inf, "area_change": np.inf}  # random weights: judge mechanics only


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return sg.Predictor(tiny_model)


@pytest.fixture(scope="module")
def crop(nuclei3d):
    """3 real slices with several nuclei, and their labels."""
    v, t = nuclei3d
    return np.ascontiguousarray(v[29:32, 64:160, 64:160]), np.ascontiguousarray(t[29:32, 64:160, 64:160])


@pytest.fixture(scope="module")
def store(predictor, crop, tmp_path_factory):
    return sg.EmbeddingStore(predictor, crop[0], cache_dir=tmp_path_factory.mktemp("emb"), prefetch=0)


def test_shapes_dtypes_and_batching(predictor, crop, store):
    volume, truth = crop
    seed = truth[1]
    ids = [int(i) for i in np.unique(seed) if i]
    assert len(ids) >= 2
    res = sg.propagate(volume, {1: seed}, store=store, **ACCEPT_ALL)
    assert res.labels.shape == volume.shape and res.labels.dtype == np.uint16
    assert sorted(res.objects) == ids
    assert res.slices_decoded == res.decoder_calls == 2  # slices 0 and 2, all objects batched
    assert np.array_equal(res.labels[1], seed.astype(np.uint16) * np.isin(seed, ids))
    for oid, rep in res.objects.items():
        assert rep.seeds == [1]
        assert set(rep.written) <= {0, 2}
        assert {s.reason for s in rep.stops} <= {"end_of_volume", "vanished", "occupied"}
    assert set(np.unique(res.labels)) <= {0, *ids}
    assert store.stats["encoded"] == 2


def test_anisotropy_sets_physical_sizes_and_tolerance(predictor, crop, store):
    volume, truth = crop
    seed = truth[1] == np.unique(truth[1])[-1]
    iso = sg.propagate(volume, {1: seed}, store=store, **ACCEPT_ALL)
    ani = sg.propagate(volume, {1: seed}, store=store, spacing=(2.0, 0.5, 0.5), **ACCEPT_ALL)
    assert np.array_equal(iso.labels, ani.labels)  # embeddings from the cache: same masks
    (a,), (b,) = iso.objects.values(), ani.objects.values()
    assert b.voxels == a.voxels and b.volume == pytest.approx(a.voxels * 0.5)
    assert b.extent == pytest.approx(len(b.slices) * 2.0)
    assert step_ratio((2.0, 0.5, 0.5), 0) == 4.0
    assert allowed_area_factor(1.5, 4.0) == pytest.approx(1.5 ** 4)
    assert allowed_area_factor(1.5, 0.5) == 1.5
    near = sg.propagate(volume, {1: seed}, store=store, spacing=(2.0, 0.5, 0.5), max_distance=1.5, **ACCEPT_ALL)
    up = next(s for s in near.objects[1].stops if s.direction > 0)
    assert up.reason in {"max_distance", "vanished"} and max(near.objects[1].slices) <= 2


def test_other_axes(predictor, nuclei3d):
    volume = nuclei3d[0][26:36, 100:140, 100:136]  # (10, 40, 36)
    for axis, sub in ((1, volume[:, 10:12, :]), (2, volume[:, :, 10:12])):  # 2 slices of 10 x 36 / 10 x 40
        plane = tuple(s for i, s in enumerate(sub.shape) if i != axis)
        seed = np.zeros(plane, bool)
        seed[1:3, 5:20] = True
        st = sg.EmbeddingStore(predictor, sub, axis=axis, prefetch=0)
        assert st.n_slices == sub.shape[axis] and st.slice_shape == plane
        res = sg.propagate(sub, {1: seed}, store=st, axis=axis, **ACCEPT_ALL)
        assert res.labels.shape == sub.shape and res.axis == axis
        assert np.array_equal(np.take(res.labels, 1, axis=axis) == 1, seed)
        for s in res.objects[1].stops:
            assert s.reason in {"end_of_volume", "vanished"}


@pytest.mark.parametrize("call, match", [
    (lambda v, p: sg.propagate(v[0], {0: np.ones((96, 96), bool)}, predictor=p), "2D image"),
    (lambda v, p: sg.propagate(v, {3: np.ones((96, 96), bool)}, predictor=p), "slice 3 is outside"),
    (lambda v, p: sg.propagate(v, {-1: np.ones((96, 96), bool)}, predictor=p), "outside the volume"),
    (lambda v, p: sg.propagate(v, {1: np.zeros((96, 96), bool)}, predictor=p), "empty"),
    (lambda v, p: sg.propagate(v, {1: np.ones((90, 96), bool)}, predictor=p), "shape"),
    (lambda v, p: sg.propagate(v, labels=np.zeros((3, 96, 95), np.uint16), predictor=p), "same shape"),
    (lambda v, p: sg.propagate(v, labels=np.zeros((3, 96, 96), np.uint16), predictor=p), "empty"),
    (lambda v, p: sg.propagate(v, {1: np.ones((96, 96), bool)}), "predictor="),
    (lambda v, p: sg.propagate(v, {1: np.ones((96, 96), bool)}, predictor=p, axis=3), "axis=3"),
    (lambda v, p: sg.propagate(v, {1: np.ones((96, 96), bool)}, predictor=p, spacing=(1, 1)), "spacing"),
    (lambda v, p: sg.propagate(v, {1: np.ones((96, 96), bool)}, predictor=p, prompt="lasso"), "prompt="),
    (lambda v, p: sg.propagate(v, {1: np.ones((96, 96), bool)}, predictor=p, approved=[9]), "approved slice 9"),
    (lambda v, p: sg.propagate(v[:, :, :3], {1: np.ones((96, 3), bool)}, predictor=p, axis=0), "too small"),
])
def test_bad_input_gives_clear_errors(predictor, crop, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(crop[0], predictor)


def test_stop_threshold_defaults_to_the_models_own(tiny_model, crop, tmp_path):
    import dataclasses

    from napari_segany import load_model

    assert load_model().info.stop_iou == 0.5  # the included model: calibrated, lower scores
    assert tiny_model.info.stop_iou == 0.8  # any other model: SAM's scale
    volume, truth = crop
    seed = truth[1]
    original = tiny_model.info
    stops = {}
    try:
        for level in (2.0, -np.inf):  # above any score: every walk stops; below: none stops for the score
            tiny_model.info = dataclasses.replace(original, stop_iou=level)
            res = sg.propagate(volume, {1: seed}, predictor=sg.Predictor(tiny_model), area_change=np.inf)
            stops[level] = {s.reason for rep in res.objects.values() for s in rep.stops}
    finally:
        tiny_model.info = original
    assert stops[2.0] <= {"low_iou", "vanished", "occupied"} and "low_iou" in stops[2.0]
    assert "low_iou" not in stops[-np.inf]

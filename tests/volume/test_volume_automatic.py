"""Segment everything in a volume (auto/volume.py) on a crop of the real 3D nuclei."""

from __future__ import annotations

import numpy as np
import pytest

import napari_segany as sg
from napari_segany.sample_data import load_sample


@pytest.fixture(scope="module")
def crop():
    return load_sample("nuclei3d")[26:32, 64:192, 64:192], load_sample("nuclei3d_labels")[26:32, 64:192, 64:192]


def _check_table(out, axis=0):
    assert out.new_ids == sorted(out.new_ids)
    for row in out.table:
        mine = out.labels == row["id"]
        where = np.nonzero(mine)
        assert row["voxels"] == where[0].size > 0
        assert row["bbox"] == tuple(int(w.min()) for w in where) + tuple(int(w.max()) for w in where)
        assert (row["first_slice"], row["last_slice"]) == (where[axis].min(), where[axis].max())
        assert row["first_slice"] <= row["found_on_slice"] <= row["last_slice"]


def test_objects_keep_one_id_through_the_slices(shipped_model, crop):
    volume, truth = crop
    predictor = sg.Predictor(shipped_model, precision="fp32")
    seen = []
    out = sg.segment_volume(predictor, volume, settings=sg.GridSettings(points_per_side=8),
                            progress=lambda d, t: seen.append((d, t)))
    assert out.labels.shape == volume.shape and out.labels.dtype == np.uint32
    assert seen[-1] == (6, 6)
    _check_table(out)
    long_lived = [r for r in out.table if r["last_slice"] - r["first_slice"] >= 3]
    assert len(long_lived) >= 2
    for row in long_lived:  # a nucleus, followed: each slice's part overlaps the same annotated nucleus
        mine = out.labels == row["id"]
        under = truth[mine]
        assert np.count_nonzero(under) > 0.7 * under.size
        assert np.bincount(under[under > 0]).argmax() == np.bincount(truth[row["first_slice"]][
            mine[row["first_slice"]]][truth[row["first_slice"]][mine[row["first_slice"]]] > 0]).argmax()
    # segment the rest: the objects drawn keep their voxels and ids, new ones count on above them
    existing = np.where(truth == np.unique(truth)[1], 900, 0).astype(np.uint16)
    again = sg.segment_volume(predictor, volume, settings=sg.GridSettings(points_per_side=8), existing=existing)
    np.testing.assert_array_equal(again.labels[existing > 0], 900)
    assert again.new_ids and min(again.new_ids) == 901
    _check_table(again)


def test_any_axis_and_a_store(shipped_model, crop):
    volume = np.ascontiguousarray(load_sample("nuclei3d")[20:36, 64:128, 100:106])
    predictor = sg.Predictor(shipped_model, precision="fp32")
    out = sg.segment_volume(predictor, volume, axis=2, settings=sg.GridSettings(points_per_side=4, min_iou=0.3))
    assert out.labels.shape == volume.shape and out.axis == 2
    _check_table(out, axis=2)
    small = crop[0][:2]
    with sg.EmbeddingStore(predictor, small) as store:
        from_store = sg.segment_volume(predictor, small, store=store, settings=sg.GridSettings(points_per_side=6))
        with pytest.raises(ValueError, match="another volume or axis"):
            sg.segment_volume(predictor, crop[0][:3], store=store)
    direct = sg.segment_volume(predictor, small, settings=sg.GridSettings(points_per_side=6))
    np.testing.assert_array_equal(from_store.labels, direct.labels)  # the same embeddings, the same objects


def test_cancel_returns_nothing(shipped_model, crop):
    predictor = sg.Predictor(shipped_model, precision="fp32")
    calls = []
    with pytest.raises(sg.Cancelled):
        sg.segment_volume(predictor, crop[0], settings=sg.GridSettings(points_per_side=6),
                          should_stop=lambda: calls.append(1) or len(calls) > 3)
    with pytest.raises(ValueError, match="shape"):
        sg.segment_volume(predictor, crop[0][0])

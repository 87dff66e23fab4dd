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


@pytest.mark.parametrize("settings", [sg.GridSettings(points_per_side=8), sg.GridSettings(mode="head")],
                         ids=["grid", "head"])
def test_objects_keep_one_id_through_the_slices(shipped_model, crop, settings):
    """Grid and head mode (the included model's default): nuclei followed through the slices keep
    one id, and segmenting the rest keeps what is drawn."""
    volume, truth = crop
    predictor = sg.Predictor(shipped_model, precision="fp32")
    seen = []
    out = sg.segment_volume(predictor, volume, settings=settings, progress=lambda d, t: seen.append((d, t)))
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
    again = sg.segment_volume(predictor, volume, settings=settings, existing=existing)
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


def test_an_object_found_again_after_propagation_stopped_keeps_its_id():
    """join_split_objects: a run's object that ends on the slice before another begins, with masks
    overlapping there (IoU > 0.5), is one object; one that merely follows elsewhere, or overlaps
    little, stays apart; the user's own objects are never touched; ids stay consecutive."""
    from napari_segany.auto.volume import join_split_objects

    labels = np.zeros((6, 24, 24), np.uint32)
    labels[:, 20:23, 20:23] = 2  # the user's, through every slice
    labels[0:3, 2:8, 2:8] = 5  # propagation stopped after slice 2 ...
    labels[3:6, 3:9, 2:8] = 6  # ... and the grid found it again on slice 3 (IoU 30/42)
    labels[3:6, 12:18, 12:18] = 7  # begins on slice 3 too, but elsewhere
    labels[3:5, 9:12, 2:8] = 8  # begins just beside object 5's end: no overlap with it
    found_on = {i: {"slice": s, "predicted_iou": 0.9, "stability": 0.9} for i, s in ((5, 0), (6, 3), (7, 3), (8, 3))}
    joined, rows = join_split_objects(labels, 0, found_on)
    assert sorted(rows) == [5, 6, 7] and rows[5]["slice"] == 0
    assert (joined[0:3] == 5).sum() == 3 * 36 and (joined[3:6] == 5).sum() == 3 * 36
    assert (joined[3:6, 12:18, 12:18] == 6).all() and (joined[3:5, 9:12, 2:8] == 7).all()
    assert (joined == 2).sum() == (labels == 2).sum()
    # along another axis the same
    again, _ = join_split_objects(np.moveaxis(labels, 0, 2), 2, found_on)
    np.testing.assert_array_equal(again, np.moveaxis(joined, 0, 2))


def test_slices_of_one_value_are_not_searched_and_the_others_find_the_same(shipped_model, crop):
    """Padding slices (zeros before, a saturated value after, as registered or clipped volumes have)
    hold nothing to find or follow: the model never runs on them (a nucleus was followed into the
    saturated slice before), and the slices with content find what they find without the padding."""
    volume = crop[0][2:4]
    padded = np.concatenate([np.zeros((4,) + volume.shape[1:], volume.dtype), volume,
                             np.full((4,) + volume.shape[1:], 65535, volume.dtype)])
    predictor = sg.Predictor(shipped_model, precision="fp32")
    settings = sg.GridSettings(points_per_side=8)
    alone = sg.segment_volume(predictor, volume, settings=settings)
    seen = []
    with sg.EmbeddingStore(predictor, padded, prefetch=0) as store:  # the padding is not in its window either
        assert store.window == sg.volume.volume_window(volume)
        out = sg.segment_volume(predictor, padded, settings=settings, store=store,
                                progress=lambda d, t: seen.append(d))
        statuses = [store.status(z) for z in range(len(padded))]
    assert seen == list(range(1, 11))
    assert alone.table and len(out.table) == len(alone.table)
    np.testing.assert_array_equal(out.labels[4:6], alone.labels)
    assert not out.labels[:4].any() and not out.labels[6:].any()
    assert statuses == ["missing"] * 4 + ["memory"] * 2 + ["missing"] * 4  # never encoded

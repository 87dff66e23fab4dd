"""Propagation mechanics on the real 3D nuclei stack, with a stand-in predictor
that answers each slice with the ground-truth object under the prompt."""

from __future__ import annotations

import numpy as np
import pytest

import napari_segany as sg
from standin import extent, iou3d

OBJECTS = (1, 4, 7, 12, 16)  # a spread of sizes and depths (ids of nuclei3d_labels)


def middle(mask3d) -> int:
    lo, hi = extent(mask3d)
    return (lo + hi) // 2


@pytest.mark.parametrize("oid", OBJECTS)
def test_from_the_middle_slice_recovers_the_whole_object(nuclei3d, standin, oid):
    volume, truth = nuclei3d
    obj = truth == oid
    z = middle(obj)
    res = sg.propagate(volume, {z: obj[z]}, predictor=standin(), label_id=oid)
    got = res.labels == oid
    assert iou3d(got, obj) >= 0.95
    # stops at the object's ends, because the object vanishes there
    rep = res.objects[oid]
    assert (rep.first, rep.last) == extent(obj)
    assert {s.reason for s in rep.stops} <= {"vanished", "end_of_volume"}
    for s in rep.stops:
        assert s.last == (rep.first if s.direction < 0 else rep.last)
    assert rep.voxels == int(got.sum())


def test_all_objects_of_a_slice_propagate_together_in_batches(nuclei3d, standin):
    volume, truth = nuclei3d
    z = 35
    seed = truth[z]
    pred = standin()
    res = sg.propagate(volume, {z: seed}, predictor=pred)
    ids = [int(i) for i in np.unique(seed) if i]
    assert sorted(res.objects) == ids and len(ids) > 10
    ious = [iou3d(res.labels == i, truth == i) for i in ids]
    assert np.mean(ious) >= 0.95 and min(ious) >= 0.85
    assert max(pred.batch_sizes) == len(ids)  # one decoder call per slice for all objects
    assert res.decoder_calls == res.slices_decoded == len(pred.batch_sizes)
    assert sorted(set(pred.encoded)) == sorted(pred.encoded)  # each slice embedded once


def test_two_seeds_meet_in_the_middle(nuclei3d, standin):
    volume, truth = nuclei3d
    obj = truth == 9
    lo, hi = extent(obj)
    a, b = lo + 4, hi - 5
    res = sg.propagate(volume, {a: obj[a], b: obj[b]}, predictor=standin(), label_id=9)
    assert iou3d(res.labels == 9, obj) >= 0.95
    stops = {(s.seed, s.direction): s for s in res.objects[9].stops}
    up, down = stops[(a, 1)], stops[(b, -1)]
    assert up.reason == down.reason == "met_seed"
    assert down.last - up.last == 1  # adjacent: every slice between the seeds written once
    assert abs((up.last - a) - (b - down.last)) <= 1  # in the middle
    assert sorted(res.objects[9].written) == sorted(set(res.objects[9].written))
    assert set(range(a + 1, b)) <= set(res.objects[9].written)


def test_never_writes_into_other_objects(nuclei3d, standin):
    volume, truth = nuclei3d
    oid = 13  # the nucleus with the most contact with its neighbours
    labels = truth.copy()
    z = middle(truth == oid)
    labels[(labels == oid)] = 0
    labels[z][truth[z] == oid] = oid  # the object only on its seed slice, every other object in full
    before = labels.copy()
    pred = standin(dilate=4)  # answers that spill over the neighbours
    res = sg.propagate(volume, labels=labels, ids=[oid], predictor=pred, area_change=10)
    others = (labels != 0) & (labels != oid)
    assert np.array_equal(res.labels[others], labels[others])
    assert res.objects[oid].voxels > (truth == oid).sum() * 0.9
    # the change list applies and undoes exactly
    again = labels.copy()
    again[res.changes.index] = res.changes.values
    assert np.array_equal(again, res.labels)
    again[res.changes.index] = res.changes.previous
    assert np.array_equal(again, labels)
    assert np.array_equal(labels, before)  # the input is never modified


def test_overwrite_true_may_replace_other_objects(nuclei3d, standin):
    volume, truth = nuclei3d
    oid = 13  # the nucleus with the most contact with its neighbours
    z = middle(truth == oid)
    labels = np.where(truth == oid, 0, truth).astype(truth.dtype)
    res = sg.propagate(volume, {z: truth[z] == oid}, labels=labels, label_id=oid, predictor=standin(dilate=4),
                       overwrite=True, area_change=10)
    assert np.any((res.labels == oid) & (labels != 0))


def test_repropagation_from_a_corrected_slice_keeps_approved_slices(nuclei3d, standin):
    volume, truth = nuclei3d
    oid = 4
    obj = truth == oid
    lo, hi = extent(obj)
    z = middle(obj)
    first = sg.propagate(volume, {z: obj[z]}, predictor=standin(), label_id=oid)
    labels = first.labels.copy()
    labels[z + 6] = 0  # a slice the user found wrong...
    labels[z + 6][obj[z + 6]] = oid  # ...and corrected
    labels[z + 3][:5, :5] = oid  # a user-approved slice with a deliberate extra
    approved = list(range(lo, z + 4))
    res = sg.propagate(volume, labels=labels, ids=[oid], seed_slices=[z + 6], approved=approved,
                       predictor=standin())
    assert np.array_equal(res.labels[approved], labels[approved])
    stops = {s.direction: s for s in res.objects[oid].stops}
    assert stops[-1].reason == "approved" and stops[-1].at == z + 3
    assert stops[1].last == hi


def test_low_predicted_iou_stops_the_walk(nuclei3d, standin):
    volume, truth = nuclei3d
    obj = truth == 1
    z = middle(obj)
    res = sg.propagate(volume, {z: obj[z]}, predictor=standin(scores={z + 3: 0.3}), label_id=1)
    up = next(s for s in res.objects[1].stops if s.direction > 0)
    assert (up.reason, up.at, up.last) == ("low_iou", z + 3, z + 2)
    assert up.score == pytest.approx(0.3)
    assert not (res.labels[z + 3:] == 1).any()


def test_area_change_stops_a_leak(nuclei3d, standin):
    volume, truth = nuclei3d
    obj = truth == 1
    z = middle(obj)
    leaky = truth.copy()
    leaky[z + 2][60:200, 60:200] = 1  # the 'object' suddenly floods the slice
    res = sg.propagate(volume, {z: obj[z]}, predictor=standin(truth=leaky), label_id=1)
    up = next(s for s in res.objects[1].stops if s.direction > 0)
    assert (up.reason, up.at) == ("area_change", z + 2)
    assert "area" in res.summary()


def test_any_axis_gives_the_same_result(nuclei3d, standin):
    volume, truth = nuclei3d
    v, t = np.ascontiguousarray(volume.transpose(1, 0, 2)), np.ascontiguousarray(truth.transpose(1, 0, 2))
    obj = truth == 12
    z = middle(obj)
    ref = sg.propagate(volume, {z: obj[z]}, predictor=standin(), label_id=12)
    res = sg.propagate(v, {z: obj[z]}, predictor=standin(volume=v, truth=t, axis=1), axis=1, label_id=12)
    assert res.labels.shape == v.shape
    assert np.array_equal(res.labels.transpose(1, 0, 2), ref.labels)


def test_cancel_returns_the_work_done_so_far(nuclei3d, standin):
    volume, truth = nuclei3d
    obj = truth == 1
    z = middle(obj)
    seen = []
    res = sg.propagate(volume, {z: obj[z]}, predictor=standin(), label_id=1,
                       progress=lambda done, total: seen.append((done, total)), should_stop=lambda: len(seen) >= 4)
    assert res.cancelled and "cancelled" in {s.reason for s in res.objects[1].stops}
    assert len(res.objects[1].written) == 4
    assert all(d <= t for d, t in seen)


def test_stop_rules_that_would_mean_something_else_are_refused(standin, nuclei3d):
    """A NaN threshold compared False and switched its stop off; 1.5, a shrinking 'change' factor,
    a negative area or distance were taken as given."""
    volume, truth = nuclei3d
    seed = {30: truth[30] == np.unique(truth[30][truth[30] > 0])[0]}
    for bad, says in (({"iou_threshold": float("nan")}, "iou_threshold"), ({"iou_threshold": 1.5}, "iou_threshold"),
                      ({"area_change": 0.0}, "area_change"), ({"area_change": float("nan")}, "area_change"),
                      ({"min_area": -5}, "min_area"), ({"max_distance": -1}, "max_distance")):
        with pytest.raises(ValueError, match=says):
            sg.propagate(volume, seed, predictor=standin(), **bad)


def test_a_walk_never_enters_a_slice_of_one_value(nuclei3d, standin):
    """A slice whose pixels all hold one value (padding, a dropped frame filled with zeros) has
    nothing to follow: the walk stops before it, says why, and the model never sees it."""
    volume, truth = nuclei3d
    oid = 4
    obj = truth == oid
    z = middle(obj)
    padded = volume.copy()
    padded[z + 2] = 0
    padded[z - 3] = padded.max()
    pred = standin()
    res = sg.propagate(padded, {z: obj[z]}, predictor=pred, label_id=oid)
    stops = {s.direction: s for s in res.objects[oid].stops}
    assert (stops[1].reason, stops[1].at, stops[1].last) == ("blank", z + 2, z + 1)
    assert (stops[-1].reason, stops[-1].at, stops[-1].last) == ("blank", z - 3, z - 2)
    assert not (res.labels[z + 2] == oid).any() and not (res.labels[z - 3] == oid).any()
    assert z + 2 not in pred.encoded and z - 3 not in pred.encoded
    assert "holds a single value" in stops[1].explanation

"""Segment everything in 2D (auto/grid.py, auto/everything.py): the grid, the filters, tiles and
their seams, segment the rest, progress and Cancel; on the real 2D nuclei with the included model."""

from __future__ import annotations

import numpy as np
import pytest

import napari_segany as sg
from napari_segany.auto.everything import _Piece, _paint, tile_layout
from napari_segany.auto.grid import Candidate, GridSettings, box_nms, grid_points


def test_the_grid_covers_the_image_evenly():
    pts = grid_points((512, 256), 1024, GridSettings(points_per_side=8))
    assert pts.shape == (8 * 4, 2)
    assert pts[:, 0].min() == 32 and pts[:, 0].max() == 512 - 32 and pts[:, 1].max() == 256 - 32
    assert len(grid_points((100, 100), 1024, GridSettings())) == 32 * 32  # SAM's density by default
    assert len(grid_points((100, 100), 512, GridSettings())) == 16 * 16  # the same spacing in a 512 px frame
    dense = grid_points((512, 300), 512, GridSettings(object_size=16))  # every 16 px disc holds a point
    step = np.diff(np.unique(dense[:, 0]))
    assert step.max() <= 0.75 * 16 + 1e-9 and len(grid_points((10**4, 10), 512, GridSettings(object_size=2))) <= 256


def test_overlapping_boxes_keep_the_best():
    cands = [Candidate(0.9, 0.97, np.array([0, 0, 10, 10.0]), None, 0),
             Candidate(0.95, 0.96, np.array([1, 1, 10, 10.0]), None, 0),
             Candidate(0.8, 0.99, np.array([20, 20, 30, 30.0]), None, 0)]
    assert [c.score for c in box_nms(cands, 0.7)] == [0.95, 0.8]
    assert [c.score for c in box_nms(cands, 0.99)] == [0.95, 0.9, 0.8]


@pytest.mark.parametrize("bad", [dict(points_per_side=0), dict(points_per_side=2.5), dict(nms_iou=1.5),
                                 dict(min_iou=-0.1), dict(batch=0), dict(min_area=True), dict(tile="always"),
                                 dict(tile_overlap=-1), dict(min_stability=float("nan")),
                                 dict(object_size=1), dict(object_size=float("inf"))])
def test_settings_are_checked(bad):
    with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
        GridSettings(**bad)


@pytest.mark.parametrize("shape", [(512, 512), (513, 900), (2000, 700), (300, 1300)])
def test_tiles_cover_the_image_and_overlap(shape):
    tiles = tile_layout(shape, 512, GridSettings())
    cover = np.zeros(shape, int)
    for rows, cols in tiles:
        assert rows.stop - rows.start <= 512 and cols.stop - cols.start <= 512
        cover[rows, cols] += 1
    assert cover.min() >= 1
    starts = sorted({r.start for r, _ in tiles}), sorted({c.start for _, c in tiles})
    for axis, begun in enumerate(starts):  # neighbours share at least a quarter of the frame
        assert all(b - a <= 512 - 128 for a, b in zip(begun, begun[1:]))
        assert begun[-1] + 512 >= shape[axis] or shape[axis] <= 512
    assert len(tile_layout((512, 512), 512, GridSettings())) == 1


def _piece(mask_box, score, tile, cut, shape=(40, 80)):
    r0, c0, r1, c1 = mask_box
    mask = np.ones((r1 - r0, c1 - c0), bool)
    return _Piece(score, 0.99, np.array(mask_box, float), (r0, c0), mask, cut, tile)


def test_pieces_of_one_object_cut_at_a_seam_become_one_object():
    labels = np.zeros((40, 80), np.uint32)
    left, right = _piece((5, 10, 30, 45), 0.9, 0, True), _piece((6, 35, 31, 70), 0.8, 1, True)
    whole_elsewhere = _piece((32, 0, 40, 8), 0.7, 0, False)
    ids, scores = _paint(labels, [left, right, whole_elsewhere], None, 1, GridSettings(min_area=5))
    assert ids == [1, 2] and set(np.unique(labels)) == {0, 1, 2}  # whole objects first, then pieces
    assert np.count_nonzero(labels == 1) == 64
    assert np.count_nonzero(labels == 2) == np.count_nonzero(np.maximum(
        np.pad(np.ones((25, 35)), ((5, 10), (10, 35))), np.pad(np.ones((25, 35)), ((6, 9), (35, 10)))))


def test_a_candidate_mostly_covered_by_a_better_one_is_dropped():
    labels = np.zeros((40, 80), np.uint32)
    best, shadow = _piece((0, 0, 20, 20), 0.9, 0, False), _piece((0, 5, 20, 28), 0.8, 0, False)
    ids, _ = _paint(labels, [shadow, best], None, 1, GridSettings(min_area=5))
    assert ids == [1] and np.count_nonzero(labels) == 400  # 160 free pixels of 460: not an object


@pytest.fixture(scope="module")
def nuclei_embedding(shipped_model, nuclei2d):
    predictor = sg.Predictor(shipped_model, precision="fp32")
    return predictor, predictor.encode(nuclei2d[0], views=1)


def _rows_match_labels(objects, new_only=None):
    labels, table = objects.labels, objects.table
    for row in table:
        mine = labels == row["id"]
        assert row["area"] == np.count_nonzero(mine)
        rr, cc = np.nonzero(mine)
        assert row["bbox"] == (rr.min(), cc.min(), rr.max(), cc.max())
        assert row["centroid"] == pytest.approx((rr.mean(), cc.mean()), abs=0.01)
    if new_only is not None:
        assert sorted(objects.new_ids) == sorted(set(np.unique(labels[new_only])) - {0})


def test_segment_the_rest_keeps_every_existing_object(nuclei_embedding, nuclei2d):
    predictor, emb = nuclei_embedding
    truth = nuclei2d[1]
    existing = np.where(np.isin(truth, np.unique(truth)[1::2]), truth, 0).astype(np.uint16)
    existing[existing > 0] += 40000  # high ids: new ones count on from the highest
    out = sg.segment_everything(predictor, embedding=emb, settings=GridSettings(points_per_side=12),
                                existing=existing)
    assert out.labels.dtype == np.uint32
    np.testing.assert_array_equal(out.labels[existing > 0], existing[existing > 0])
    assert len(out.table) >= 10 and out.new_ids == list(range(int(existing.max()) + 1,
                                                                 int(existing.max()) + 1 + len(out.table)))
    _rows_match_labels(out, new_only=existing == 0)
    alone = sg.segment_everything(predictor, embedding=emb, settings=GridSettings(points_per_side=12))
    assert len(alone.table) > len(out.table)  # the existing objects were not found again


def test_progress_reaches_the_end_and_cancel_stops(nuclei_embedding):
    predictor, emb = nuclei_embedding
    seen = []
    sg.segment_everything(predictor, embedding=emb, settings=GridSettings(points_per_side=5),
                          progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (25, 25) and all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    calls = []
    with pytest.raises(sg.Cancelled):
        sg.segment_everything(predictor, embedding=emb, settings=GridSettings(points_per_side=8, batch=8),
                              should_stop=lambda: calls.append(1) or len(calls) > 2)


def test_objects_in_the_overlap_of_two_tiles_come_out_once_and_whole(shipped_model):
    """A 512 x 880 image is cut into tiles starting at columns 0 and 368: each disc near the seam is
    cut by one tile's edge and whole in the other, which must win (no half, no duplicate)."""
    rng = np.random.default_rng(0)
    image = rng.normal(100, 8, (512, 880))
    rr, cc = np.ogrid[:512, :880]
    discs = [(150, 380, 40), (350, 500, 40), (400, 780, 30)]
    for r, c, radius in discs:
        image[(rr - r) ** 2 + (cc - c) ** 2 <= radius**2] += 120
    predictor = sg.Predictor(shipped_model, precision="fp32")
    out = sg.segment_everything(predictor, image, settings=GridSettings(points_per_side=8))
    assert [c.start for _, c in tile_layout(image.shape, 512, GridSettings())] == [0, 368]
    assert len(out.table) == 3
    for r, c, radius in discs:
        disc = (rr - r) ** 2 + (cc - c) ** 2 <= radius**2
        ids = set(np.unique(out.labels[disc])) - {0}
        assert len(ids) == 1  # one object, not two halves
        mine = out.labels == ids.pop()
        assert np.count_nonzero(mine & disc) / np.count_nonzero(mine | disc) > 0.95
    _rows_match_labels(out)


@pytest.mark.parametrize("call, message", [
    (dict(existing=np.zeros((10, 10), int)), "shape"),
    (dict(existing=np.zeros((512, 512), float)), "whole numbers"),
    (dict(existing=np.full((512, 512), -1)), "between 0"),
    (dict(image=np.zeros((512, 512))), "not both"),
])
def test_bad_calls_say_what_to_do(nuclei_embedding, call, message):
    predictor, emb = nuclei_embedding
    with pytest.raises((ValueError, TypeError), match=message):
        sg.segment_everything(predictor, embedding=emb, **call)
    with pytest.raises(ValueError, match="pass the image"):
        sg.segment_everything(predictor)


def _matched(labels, truth):
    """IoUs of the objects of ``labels`` matching one of ``truth`` at IoU >= 0.5."""
    ious = []
    for i in np.unique(labels)[1:]:
        mine = labels == i
        under = truth[mine]
        under = under[under > 0]
        if under.size:
            theirs = truth == np.bincount(under).argmax()
            iou = np.count_nonzero(mine & theirs) / np.count_nonzero(mine | theirs)
            if iou >= 0.5:
                ious.append(iou)
    return ious


@pytest.mark.slow
def test_everything_on_real_nuclei(nuclei_embedding, nuclei2d):
    predictor, emb = nuclei_embedding
    truth = nuclei2d[1]
    first = sg.segment_everything(predictor, embedding=emb, settings=GridSettings(points_per_side=32))
    labels, table = first.labels, first.table
    assert labels.shape == truth.shape and labels.dtype == np.uint32
    assert [row["id"] for row in table] == list(range(1, len(table) + 1)) == list(np.unique(labels)[1:])
    _rows_match_labels(first)
    assert all(row["area"] >= 20 and row["predicted_iou"] >= 0.58 and row["stability"] >= 0.5 for row in table)
    ious = _matched(labels, truth)
    precision, recall = len(ious) / len(table), len(ious) / (len(np.unique(truth)) - 1)
    assert precision > 0.8 and recall > 0.45 and np.mean(ious) > 0.75  # measured 0.90, 0.55, 0.82
    coarse = GridSettings(points_per_side=12)
    np.testing.assert_array_equal(sg.segment_everything(predictor, embedding=emb, settings=coarse).labels,
                                  sg.segment_everything(predictor, embedding=emb, settings=coarse).labels)


def test_new_ids_can_start_above_the_whole_volume(nuclei_embedding, nuclei2d):
    predictor, emb = nuclei_embedding
    existing = np.zeros((512, 512), np.uint16)
    existing[:20, :20] = 7
    out = sg.segment_everything(predictor, embedding=emb, settings=GridSettings(points_per_side=6),
                                existing=existing, first_id=500)
    assert out.new_ids and out.new_ids[0] == 500 and (out.labels[:20, :20] == 7).all()
    with pytest.raises(ValueError, match="reuse ids"):
        sg.segment_everything(predictor, embedding=emb, existing=existing, first_id=7)

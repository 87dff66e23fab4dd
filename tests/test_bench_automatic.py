"""The matching and metrics of the automatic-segmentation benchmark (benchmarks/automatic_metrics.py)
on tiny synthetic label images."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from automatic_metrics import best_overlap_iou, classical, match, paint_like_ours  # noqa: E402


def _three_squares() -> np.ndarray:
    labels = np.zeros((20, 30), np.uint16)
    labels[2:8, 2:8] = 1
    labels[2:8, 12:18] = 2
    labels[12:18, 20:28] = 3
    return labels


def test_identical_labels_match_perfectly_whatever_their_ids():
    truth = _three_squares()
    pred = np.where(truth > 0, truth + 40, 0)  # other ids, same objects
    m = match(truth, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (3, 0, 0)
    assert m["f1"] == m["ap"] == m["precision"] == m["recall"] == 1.0
    assert m["mean_iou_matched"] == 1.0


def test_a_missing_object_is_a_false_negative():
    truth = _three_squares()
    pred = np.where(truth == 3, 0, truth)
    m = match(truth, pred)
    assert (m["tp"], m["fp"], m["fn"], m["n_pred"], m["n_true"]) == (2, 0, 1, 2, 3)
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(0.8) and m["ap"] == pytest.approx(2 / 3)


def test_a_split_object_matches_its_larger_half_only_when_it_covers_half():
    truth = _three_squares()
    pred = truth.copy()
    pred[12:18, 20:23] = 9  # object 3 split 3 + 5 columns: the larger piece has IoU 5/8 >= 0.5
    m = match(truth, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (3, 1, 0)
    assert m["ap"] == pytest.approx(3 / 4) and m["f1"] == pytest.approx(6 / 7)
    assert m["mean_iou_matched"] == pytest.approx((1 + 1 + 5 / 8) / 3)
    pred[12:18, 23:25] = 10  # split 3 + 2 + 3: no piece reaches IoU 0.5
    m = match(truth, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 3, 1)


def test_matching_prefers_more_pairs_over_a_higher_iou_sum():
    # IoU truth x pred = [[2/7, 0], [1/2, 2/7]]: the largest IoU sum pairs 1-1 and 2-2 (4/7, no pair at
    # 0.5); one match (2-1) is what the one-to-one matching must find
    truth = np.array([[2, 1, 1, 2, 0, 0, 2, 2, 0, 2, 1, 2]])
    pred = np.array([[2, 1, 0, 1, 0, 2, 1, 2, 0, 1, 1, 1]])
    m = match(truth, pred)
    assert m["tp"] == 1 and m["mean_iou_matched"] == pytest.approx(0.5)


def test_empty_inputs_and_3d():
    empty = np.zeros((4, 5, 6), np.uint8)
    assert match(empty, empty)["f1"] == 1.0
    cube = empty.copy()
    cube[1:3, 1:4, 1:4] = 7
    assert match(cube, empty)["fn"] == 1 and match(empty, cube)["fp"] == 1
    assert match(cube, cube)["ap"] == 1.0


def test_best_overlap_and_painting_without_overlaps():
    labels = _three_squares().astype(np.uint32)
    a = labels == 1
    b = np.zeros_like(a)
    b[2:8, 2:5] = True  # inside object 1: IoU 0.5 with it
    assert best_overlap_iou([a, b, np.zeros_like(a)], labels).tolist() == [1.0, 0.5, 0.0]
    painted = paint_like_ours([a, b, labels == 2], [0, 1, 2], min_area=0, share=0.5)
    assert painted.max() == 2  # b is wholly covered by a: dropped
    assert np.array_equal(painted == 2, labels == 2)


def test_the_classical_baseline_separates_two_touching_discs():
    yy, xx = np.mgrid[:60, :80]
    image = (((yy - 30) ** 2 + (xx - 28) ** 2 < 12**2) | ((yy - 30) ** 2 + (xx - 50) ** 2 < 12**2)) * 100.0
    labels, params = classical(image)
    assert labels.max() == 2 and params["components"] == 1

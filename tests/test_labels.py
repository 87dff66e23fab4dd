"""Label-id and overlap policy of commits, on the real 2D nuclei labels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany.labels import commit_mask, next_label_id


def test_new_object_gets_max_plus_one_and_protects_others(nuclei2d):
    labels = nuclei2d[1].copy()
    before = labels.copy()
    mask = np.zeros(labels.shape, bool)
    mask[100:220, 100:220] = True  # overlaps several real nuclei
    c = commit_mask(labels, mask)
    assert c.label_id == before.max() + 1
    others = before > 0
    np.testing.assert_array_equal(labels[others], before[others])
    assert np.all(labels[mask & ~others] == c.label_id)
    np.testing.assert_array_equal(labels[~mask], before[~mask])
    c.undo(labels)
    np.testing.assert_array_equal(labels, before)


def test_overwrite_and_replace(nuclei2d):
    labels = nuclei2d[1].copy()
    before = labels.copy()
    target = int(np.unique(labels[labels > 0])[0])
    mask = np.zeros(labels.shape, bool)
    mask[0:300, 0:300] = True
    commit_mask(labels, mask, label_id=target, overwrite=True, replace=True)
    assert np.all(labels[mask] == target)
    assert not np.any((labels == target) & ~mask)
    np.testing.assert_array_equal(labels[~mask & (before != target)], before[~mask & (before != target)])


def test_works_on_a_non_contiguous_view():
    vol = np.zeros((4, 5, 6), np.uint16)
    view = vol[:, :, 2]
    c = commit_mask(view, np.ones((4, 5), bool))
    assert c.label_id == 1 and vol[:, :, 2].all() and vol.sum() == 20


def test_errors():
    labels = np.full((3, 3), 255, np.uint8)
    with pytest.raises(ValueError, match="full"):
        next_label_id(labels)
    with pytest.raises(ValueError, match="shape"):
        commit_mask(np.zeros((3, 3), np.uint8), np.ones((2, 2), bool))
    with pytest.raises(TypeError, match="integer"):
        commit_mask(np.zeros((3, 3), np.float32), np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="positive"):
        commit_mask(np.zeros((3, 3), np.uint8), np.ones((3, 3), bool), label_id=0)


def test_undo_out_of_order_is_refused_and_in_order_restores(nuclei2d):
    labels = np.zeros((40, 40), np.uint16)
    first = np.zeros_like(labels, bool)
    first[5:20, 5:20] = True
    second = np.zeros_like(labels, bool)
    second[10:30, 10:30] = True
    a = commit_mask(labels, first)
    b = commit_mask(labels, second, overwrite=True)  # takes part of the first object
    before = labels.copy()
    with pytest.raises(ValueError, match="undo the later commits first"):
        a.undo(labels)
    np.testing.assert_array_equal(labels, before)  # nothing changed
    b.undo(labels)
    a.undo(labels)
    assert not labels.any()

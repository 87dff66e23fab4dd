"""Only the prompted regions of a mask: the rule on real nuclei shapes, the Predictor and the command."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_segany import Predictor, load_model
from napari_segany.cli import main
from napari_segany.engine.regions import best_overlap, keep_prompted
from napari_segany.sample_data import load_sample, sample_path


@pytest.fixture(scope="module")
def three_nuclei():
    """Three separate real nuclei (annotated shapes of nuclei2d) in one mask, as a decoder might return."""
    labels = load_sample("nuclei2d_labels")
    ids = np.unique(labels[labels > 0])
    centres = np.array(ndi.center_of_mass(labels > 0, labels, ids))
    a = ids[0]
    b, c = ids[np.argsort(np.hypot(*(centres - centres[0]).T))[1:3]]
    parts = [labels == i for i in (a, b, c)]
    mask = parts[0] | parts[1] | parts[2]
    assert ndi.label(mask, structure=np.ones((3, 3)))[1] == 3  # three separate regions
    return mask, parts


def _inside(part):
    return tuple(int(v) for v in np.argwhere(part)[len(np.argwhere(part)) // 2])


def _box(part):
    rows, cols = np.nonzero(part)
    return rows.min(), cols.min(), rows.max(), cols.max()


def test_points_keep_the_regions_they_touch(three_nuclei):
    mask, (a, b, c) = three_nuclei
    np.testing.assert_array_equal(keep_prompted(mask, [_inside(a)]), a)
    np.testing.assert_array_equal(keep_prompted(mask, [_inside(a), _inside(b)], [1, 1]), a | b)
    # a negative point keeps nothing by itself; the positive one decides
    np.testing.assert_array_equal(keep_prompted(mask, [_inside(a), _inside(c)], [1, 0]), a)
    # a positive point just outside every region keeps the nearest one
    rows, cols = np.nonzero(a)
    outside = (rows.min() - 2, int(np.median(cols[rows == rows.min()])))
    assert not mask[outside]
    np.testing.assert_array_equal(keep_prompted(mask, [outside]), a)


def test_a_box_keeps_its_main_region_and_those_mostly_inside(three_nuclei):
    mask, (a, b, c) = three_nuclei
    np.testing.assert_array_equal(keep_prompted(mask, box=_box(a)), a)
    both = np.array([min(_box(a)[0], _box(b)[0]), min(_box(a)[1], _box(b)[1]),
                     max(_box(a)[2], _box(b)[2]), max(_box(a)[3], _box(b)[3])])
    kept = keep_prompted(mask, box=both)
    assert (kept & a).sum() == a.sum() and (kept & b).sum() == b.sum()  # both lie inside the box
    assert not (kept & c & ~_box_mask(both, mask.shape)).any()
    # a box smaller than the object still keeps the whole object (the box is only a hint)
    r0, c0, r1, c1 = _box(a)
    np.testing.assert_array_equal(keep_prompted(mask, box=(r0 + 3, c0 + 3, r1 - 3, c1 - 3)), a)


def _box_mask(box, shape):
    m = np.zeros(shape, bool)
    m[box[0] : box[2] + 1, box[1] : box[3] + 1] = True
    return m


def test_unprompted_or_single_region_masks_are_returned_as_they_are(three_nuclei):
    mask, (a, _, _) = three_nuclei
    assert keep_prompted(mask) is mask
    assert keep_prompted(mask, [_inside(a)], [0]) is mask  # negative points only
    assert keep_prompted(a, [_inside(a)]) is a
    empty = np.zeros_like(mask)
    assert not keep_prompted(empty, [(5, 5)], box=(0, 0, 10, 10)).any()


@pytest.fixture(scope="module")
def predictors():
    model = load_model(device="cpu")
    image = load_sample("nuclei2d")
    out = {mode: Predictor(model, regions=mode) for mode in ("prompted", "all")}
    emb = out["all"].set_image(image)
    out["prompted"].set_embedding(emb)
    return out


def test_predictor_drops_islands_and_keeps_the_rest_unchanged(predictors):
    labels = load_sample("nuclei2d_labels")
    dropped = 0
    for i in np.unique(labels[labels > 0])[::5]:
        part = labels == i
        point = _inside(part)
        kept = predictors["prompted"].predict(points=[point], multimask=True)
        raw = predictors["all"].predict(points=[point], multimask=True)
        np.testing.assert_array_equal(kept.logits, raw.logits)
        np.testing.assert_array_equal(kept.scores, raw.scores)
        for k in range(len(kept)):
            m, r = kept.mask(k), raw.mask(k)
            assert not (m & ~r).any()  # only ever removes pixels
            if r[point]:
                assert m[point]  # the clicked region stays
            assert ndi.label(m, structure=np.ones((3, 3)))[1] <= 1  # one point, one region
            dropped += int(r.sum() - m.sum())
        # the batch path applies the same rule per object
        box = _box(part)
        single = predictors["prompted"].predict(box=box, multimask=False)
        batch = predictors["prompted"].predict_batch(boxes=[box, (0, 0, 100, 100)])[0]
        np.testing.assert_array_equal(batch.masks, single.masks)
    assert dropped > 0  # the shipped model does leave islands on these nuclei


def test_command_takes_the_regions_choice(tmp_path):
    got = {}
    for mode in ("prompted", "all"):
        out = tmp_path / f"{mode}.tif"
        assert main(["segment", str(sample_path("nuclei2d")), "--box", "0,0,511,511", "-o", str(out),
                     "--device", "cpu", "--regions", mode]) == 0
        got[mode] = tifffile.imread(out) > 0
    assert not (got["prompted"] & ~got["all"]).any()
    with pytest.raises(SystemExit):
        main(["segment", str(sample_path("nuclei2d")), "--point", "346,70", "-o", str(tmp_path / "x.tif"),
              "--regions", "largest"])


def test_best_overlap_picks_the_mask_most_like_the_reference():
    ref = np.zeros((8, 8), bool)
    ref[2:6, 2:6] = True
    small, same, other = np.zeros_like(ref), ref.copy(), np.zeros_like(ref)
    small[3:5, 3:5] = True
    other[0:2, 6:8] = True
    assert best_overlap([small, same, other], ref) == 1
    assert best_overlap([other, same.copy(), same], ref) == 1  # the first of equals
    assert best_overlap([np.zeros_like(ref)] * 2, np.zeros_like(ref)) == 0  # empty unions count as 0

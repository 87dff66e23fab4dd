"""Mirrored views (napari_segany.engine.views) and their average in Predictor.predict, on the real 2D nuclei."""

import itertools

import numpy as np
import pytest
import torch

from napari_segany import Predictor
from napari_segany.engine.preprocess import Geometry
from napari_segany.engine.views import View, move_logits, views

ALL = [View(*t) for t in itertools.product((False, True), repeat=3)]


@pytest.mark.parametrize("view", ALL, ids=str)
def test_points_and_boxes_follow_the_pixels_they_name(view):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, (37, 23))
    seen = view.image(image)
    assert seen.shape == view.shape(image.shape)
    pts = np.stack([rng.integers(0, 37, 20), rng.integers(0, 23, 20)], 1)
    moved = view.points(pts, image.shape).astype(int)
    assert np.array_equal(seen[moved[:, 0], moved[:, 1]], image[pts[:, 0], pts[:, 1]])
    mask = np.zeros(image.shape, bool)
    mask[5:12, 3:20] = True
    r0, c0, r1, c1 = view.box((5, 3, 11, 19), image.shape).astype(int)
    rows, cols = np.nonzero(view.image(mask))
    assert (r0, c0, r1, c1) == (rows.min(), cols.min(), rows.max(), cols.max())
    a = torch.arange(6 * 4.0).reshape(6, 4)
    assert torch.equal(view.from_view(view.to_view(a)), a)


def test_view_counts_and_a_wrong_count():
    assert [len(views(n)) for n in (1, 2, 4, 8)] == [1, 2, 4, 8]
    assert views(1) == (View(),) and len(set(views(8))) == 8
    with pytest.raises(ValueError, match="views must be one of 1, 2, 4, 8"):
        views(3)


@pytest.mark.parametrize("shape", [(512, 512), (300, 200), (123, 456)])
def test_logits_travel_to_a_view_and_back(shape):
    low, size = 128, 512
    geometry = Geometry.for_image(shape, size)
    h, w = geometry.input_size
    logits = torch.full((low, low), -20.0)
    yy, xx = torch.meshgrid(torch.arange(low) * 4.0, torch.arange(low) * 4.0, indexing="ij")
    inside = ((yy - 0.4 * h) ** 2 / (0.2 * h) ** 2 + (xx - 0.3 * w) ** 2 / (0.2 * w) ** 2) < 1
    logits[inside] = 20.0
    for view in ALL:
        vgeom = Geometry.for_image(view.shape(shape), size)
        there = move_logits(logits, geometry, vgeom, low, view.to_view)
        back = move_logits(there, vgeom, geometry, low, view.from_view)
        valid = (slice(0, h // 4), slice(0, w // 4))
        agree = ((back[valid] > 0) == (logits[valid] > 0)).float().mean()
        if all(v % 4 == 0 for v in (h, w)):
            assert torch.equal(back[valid], logits[valid]), view  # whole cells: exact
        assert agree > 0.99, (view, float(agree))


@pytest.fixture(scope="module")
def default_model():
    from napari_segany import load_model

    return load_model(device="cpu")


def test_two_views_average_the_image_and_its_mirror(default_model, nuclei2d):
    image, labels = nuclei2d
    one, two = Predictor(default_model), Predictor(default_model, views=2)
    emb = two.set_image(image)
    assert len(emb.views) == 1 and emb.views[0][1].guide is None  # the refiner's guide: in the image's frame only
    assert emb.nbytes == 2 * emb.features.nbytes + emb.guide.nbytes
    point, box = (100, 200), (80, 170, 130, 240)
    got = two.predict(points=[point], box=box, multimask=False)
    one.set_image(image)
    a = one.predict(points=[point], box=box, multimask=False)
    one.set_image(image[:, ::-1])
    mirrored = one.predict(points=[(point[0], image.shape[1] - 1 - point[1])],
                           box=(box[0], image.shape[1] - 1 - box[3], box[2], image.shape[1] - 1 - box[1]),
                           multimask=False)
    expected = (a.logits[0] + mirrored.logits[0][:, ::-1]) / 2  # a square image: whole logit cells
    np.testing.assert_allclose(got.logits[0], expected, atol=1e-4)
    np.testing.assert_allclose(got.scores[0], (a.scores[0] + mirrored.scores[0]) / 2, atol=1e-5)


def test_more_views_give_better_masks_on_the_real_nuclei(default_model, nuclei2d):
    """Boxes on 40 real nuclei: the 4-view average is at least as good as one view, and a
    refinement click with the previous logits works in every view."""
    from geometry_helpers import bbox

    image, labels = nuclei2d
    ids = [i for i in np.unique(labels) if i][:40]
    scores = {}
    for n in (1, 4):
        pred = Predictor(default_model, views=n)
        pred.set_image(image)
        ious = []
        for i in ids:
            gt = labels == i
            mask = pred.predict(box=bbox(gt), multimask=False).mask(0)
            ious.append((mask & gt).sum() / (mask | gt).sum())
        scores[n] = float(np.mean(ious))
    assert scores[4] >= scores[1] - 0.005, scores
    gt = labels == ids[0]
    first = pred.predict(box=bbox(gt), multimask=False)
    again = pred.predict(points=[np.argwhere(gt).mean(0)], box=bbox(gt), mask_input=first.logits[0],
                         multimask=False)
    assert again.logits.shape == first.logits.shape and again.mask(0)[gt].mean() > 0.5


def test_eight_views_on_a_non_square_rgb_crop(default_model, nuclei2d):
    """Transposed views of a non-square image have their own geometry; an RGB copy of a crop of the
    real nuclei, boxes and a refinement with the previous logits go through all 8 views, and the
    boxes come out at least as good as with one view (a view brought back shifted or mirrored
    would pull them down)."""
    from geometry_helpers import bbox

    image, labels = nuclei2d
    crop, truth = image[40:340, 10:460], labels[40:340, 10:460]
    scaled = (255 * (crop - crop.min()) / (crop.max() - crop.min())).astype(np.uint8)
    rgb = np.stack([scaled] * 3, axis=-1)
    ids = [i for i in np.unique(truth) if i and (truth == i).sum() > 100][:10]
    box_iou = {}
    for views in (1, 8):
        pred = Predictor(default_model, views=views)
        emb = pred.set_image(rgb)
        ious = []
        for i in ids:
            gt = truth == i
            mask = pred.predict(box=bbox(gt), multimask=False).mask(0)
            ious.append((mask & gt).sum() / (mask | gt).sum())
        box_iou[views] = np.mean(ious)
    assert {e.geometry.input_size for _, e in emb.views} == {(341, 512), (512, 341)}
    assert box_iou[8] >= box_iou[1] - 0.01 and box_iou[1] > 0.6, box_iou
    gt = truth == ids[0]
    first = pred.predict(box=bbox(gt), multimask=False)
    again = pred.predict(points=[np.argwhere(gt).mean(0)], box=bbox(gt), mask_input=first.logits[0],
                         multimask=False)
    assert again.mask(0).shape == gt.shape and (again.mask(0) & gt).sum() / (again.mask(0) | gt).sum() > 0.5

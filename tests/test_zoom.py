"""ZoomPredictor: small objects segmented from an enlarged crop, with the included model on the real nuclei."""

from __future__ import annotations

import numpy as np
import pytest
from geometry_helpers import bbox, interior_point, iou, tiled

from napari_segany import Predictor
from napari_segany.sample_data import load_sample
from napari_segany.engine.zoom import BLEND, BLEND_GAIN, MAX_SCALE, MIN_GAIN, Window, ZoomPredictor, blend_weight, zoom_window


@pytest.fixture(scope="module")
def model(shipped_model):
    return shipped_model


@pytest.fixture(scope="module")
def nuclei():
    labels = load_sample("nuclei2d_labels")
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    return load_sample("nuclei2d"), labels, ids[np.argsort(areas)]  # smallest first


def test_window_enlarges_small_objects_within_the_limit():
    w = zoom_window((500, 200, 509, 211), (2048, 1024), 512, object_fraction=0.25, max_scale=1.5)
    side = 512 / 1.5  # 12 px object -> 48 px crop, raised to the smallest crop that max_scale allows
    assert w.height == w.width == np.ceil(side)
    assert w.contains(np.array([[500, 200], [509, 211]]))  # the object is inside, at the centre
    assert abs((w.top + w.height / 2) - 505) <= 1 and abs((w.left + w.width / 2) - 206) <= 1
    big = zoom_window((0, 0, 99, 99), (4000, 4000), 512, object_fraction=0.25, max_scale=1.5)
    assert big.height == 400  # the object fills a quarter of the crop


def test_window_stays_inside_the_image_and_gives_up_when_no_gain():
    w = zoom_window((0, 5, 6, 14), (600, 900), 512, object_fraction=0.25, max_scale=1.5)
    assert (w.top, w.left) == (0, 0) and w.height <= 600 and w.width <= 900
    edge = zoom_window((590, 890, 599, 899), (600, 900), 512, object_fraction=0.25, max_scale=1.5)
    assert edge.top + edge.height == 600 and edge.left + edge.width == 900
    assert zoom_window((10, 10, 20, 20), (400, 400), 512, max_scale=1.5) is None  # already enlarged more
    assert zoom_window((0, 0, 299, 299), (600, 600), 512) is None  # large object: the whole image


def test_box_on_small_nuclei_is_better_zoomed(model, nuclei):
    image, labels, smallest = nuclei
    plain, zoom = Predictor(model), ZoomPredictor(Predictor(model))
    plain.set_image(image)
    zoom.set_image(image)
    gains = []
    for i in smallest[:15]:
        gt = labels == i
        box = bbox(gt)
        z = zoom.predict(box=box, multimask=False)
        assert isinstance(z.window, Window) and z.window.contains(np.reshape(box, (2, 2)))
        assert z.masks.shape == (1, *image.shape) and z.mask(0).dtype == bool
        gains.append(iou(z.mask(0), gt) - iou(plain.predict(box=box, multimask=False).mask(0), gt))
    assert np.mean(gains) > 0.05, gains


def _three_ways(model, image):
    """The same image answered on the whole image, zoomed with the blend, and from the crop alone;
    all regions kept (the decoder's masks as they are), so the blend's relations are exact."""
    whole = Predictor(model, regions="all")
    blended, crop_only = ZoomPredictor(whole), ZoomPredictor(whole, blend=0)
    blended.set_image(image)
    crop_only.attach(blended.embedding, image)
    whole.set_embedding(blended.embedding)  # a ZoomPredictor never changes its predictor's state
    return whole, blended, crop_only


def test_the_answer_in_the_crop_blends_the_two_scales(model, nuclei):
    """Inside the crop the mask is where the average of the crop's and the whole image's refined
    logits is positive: it holds every pixel both scales agree on and none that neither gives;
    outside the crop it is the whole image's answer. ``blend=0`` answers from the crop alone."""
    image, labels, smallest = nuclei
    whole, blended, crop_only = _three_ways(model, image)
    assert blended.blend == BLEND > 0
    changed = 0
    for i in smallest[30:40]:
        box = bbox(labels == i)
        b, c = blended.predict(box=box, multimask=False), crop_only.predict(box=box, multimask=False)
        w = whole.predict(box=box, multimask=False).mask(0)
        assert b.window == c.window is not None
        np.testing.assert_array_equal(b.logits, c.logits)  # the logits (for mask_input) stay the crop's
        outside = np.ones(image.shape, bool)
        outside[c.window.slices] = False
        assert not c.mask(0)[outside].any()  # the crop alone writes nothing outside the crop
        np.testing.assert_array_equal(b.mask(0)[outside], w[outside])
        inside = ~outside
        assert not (c.mask(0) & w & ~b.mask(0))[inside].any()
        assert not (b.mask(0) & ~c.mask(0) & ~w)[inside].any()
        changed += not np.array_equal(b.mask(0), c.mask(0))
    assert changed >= 3  # the whole image's answer does move outlines


def test_click_candidates_blend_with_the_matching_whole_image_candidate(model, nuclei):
    """Each of a click's three crop candidates blends with the whole image's candidate whose mask
    overlaps it most (the decoder's tokens need not mean the same part of an object at two scales)."""
    image, labels, smallest = nuclei
    whole, blended, crop_only = _three_ways(model, image)
    for i in smallest[25:28]:
        gt = labels == i
        rr, cc = np.nonzero(gt)
        point = [(int(np.median(rr)), int(np.median(cc)))]
        b, c, w = blended.predict(points=point), crop_only.predict(points=point), whole.predict(points=point)
        assert len(b) == len(c) == len(w) == 3 and b.window == c.window is not None
        np.testing.assert_array_equal(b.scores, c.scores)
        outside = np.ones(image.shape, bool)
        outside[c.window.slices] = False
        for k in range(3):
            match = w.masks[int(np.argmax([iou(c.masks[k], m) for m in w.masks]))]
            np.testing.assert_array_equal(b.masks[k][outside], match[outside])
            assert not (c.masks[k] & match & ~b.masks[k]).any()
            assert not (b.masks[k] & ~c.masks[k] & ~match).any()


def test_on_a_large_image_the_coarse_whole_image_barely_counts(model, nuclei):
    """The real nuclei tiled 6 x 6 (3072 px): a nucleus spans a few pixels of the whole image's
    frame and nine times more of the crop's. The whole image's share falls with the square of that
    gain, so its blurred answer no longer spoils the crop's; on the 512 px image it is ``blend``."""
    image, labels, smallest = nuclei
    window = zoom_window((100, 100, 110, 110), image.shape, 512)
    assert blend_weight(BLEND, image.shape, window) == BLEND  # 512 px: crops enlarge <= BLEND_GAIN times more
    assert blend_weight(BLEND, (2048, 2048), Window(0, 0, 342, 342)) == pytest.approx(BLEND * (BLEND_GAIN * 342 / 2048) ** 2)
    big, big_labels = tiled(image, labels, 6)
    whole = Predictor(model)
    blended, crop_only = ZoomPredictor(whole), ZoomPredictor(whole, blend=0)
    blended.set_image(big)
    crop_only.attach(blended.embedding, big)
    whole.set_embedding(blended.embedding)
    scores = {"blended": [], "crop": [], "whole": []}
    for i in smallest[40:48]:
        gt = big_labels == i
        box = bbox(gt)
        scores["blended"].append(iou(blended.predict(box=box, multimask=False).mask(0), gt))
        scores["crop"].append(iou(crop_only.predict(box=box, multimask=False).mask(0), gt))
        scores["whole"].append(iou(whole.predict(box=box, multimask=False).mask(0), gt))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    # (with the whole image's share kept at 0.5 here, the blend fell to 0.69 against the crop's 0.735)
    assert mean["blended"] >= mean["crop"] - 0.01 and mean["blended"] > mean["whole"] + 0.2, mean


def test_a_click_the_whole_image_misses_is_answered_from_the_smallest_crop(model):
    """A 12 px spot in a 3000 px image is 2 px of the whole image's frame: the first pass finds
    nothing, so the clicks alone place the crop (512 / 1.5 px), where the spot is 18 px across."""
    rng = np.random.default_rng(0)
    rr, cc = np.mgrid[:3000, :3000]
    spot = (rr - 1500) ** 2 + (cc - 1500) ** 2 < 6**2
    image = (20 + 100 * spot + rng.normal(0, 5, spot.shape)).clip(0).astype(np.uint16)
    whole = Predictor(model)
    zoom = ZoomPredictor(whole)
    zoom.set_image(image)
    assert not whole.predict(points=[(1500, 1500)], embedding=zoom.embedding).mask(0).any()
    res = zoom.predict(points=[(1500, 1500)])
    assert res.window is not None and res.window.height == np.ceil(512 / MAX_SCALE)
    assert iou(res.mask(0), spot) > 0.6


def test_a_click_zooms_closer_when_the_first_crop_is_too_large(model, nuclei):
    """The real nuclei tiled 4 x 4 (2048 px): for a small nucleus the whole image's mask is often
    a blob of many nuclei, which sets a crop far too large; the crop's own mask then sets a crop
    at least MIN_GAIN times smaller, where the nucleus is answered."""
    image, labels, smallest = nuclei
    big, big_labels = tiled(image, labels, 4)
    whole = Predictor(model)
    zoom = ZoomPredictor(whole)
    zoom.set_image(big)
    closer, ious = 0, []
    for i in smallest[4:9]:
        gt = big_labels == i
        point = [interior_point(gt)]
        first = zoom.window_for(bbox(whole.predict(points=point, embedding=zoom.embedding).mask(0) | gt))  # where the blob would zoom
        res = zoom.predict(points=point)
        assert res.window is not None and res.window.contains(np.array(point))
        closer += res.window.side * MIN_GAIN <= first.side
        ious.append(iou(res.mask(0), gt))
    # (the crops the blobs set gave 0.52 on these five)
    assert closer >= 2 and np.mean(ious) > 0.62, (closer, ious)


def test_click_then_corrections_keep_the_crop_and_follow_points_outside(model, nuclei):
    image, labels, smallest = nuclei
    zoom = ZoomPredictor(Predictor(model))
    zoom.set_image(image)
    gt = labels == smallest[20]
    rr, cc = np.nonzero(gt)
    point = (int(np.median(rr)), int(np.median(cc)))
    first = zoom.predict(points=[point])
    assert first.window is not None and len(first) == 3
    inside = zoom.predict(points=[point, (point[0] + 1, point[1])], labels=[1, 1],
                          mask_input=first.logits[0], multimask=False)
    assert inside.window == first.window
    h, w = image.shape
    centre = (first.window.top + first.window.height / 2, first.window.left + first.window.width / 2)
    far = (0 if centre[0] > h / 2 else h - 1, 0 if centre[1] > w / 2 else w - 1)  # outside the crop
    assert not first.window.contains(np.array([far]))
    moved = zoom.predict(points=[point, far], labels=[1, 0], mask_input=inside.logits[0], multimask=False)
    assert moved.window != first.window
    assert moved.window is None or moved.window.contains(np.array([point, far]))
    assert moved.mask(0)[point]  # the object is still there, carried over from the previous crop

    # logits of an earlier prediction need their window: guessing the latest one's would misplace them
    with pytest.raises(ValueError, match="mask_window"):
        zoom.predict(points=[point], mask_input=first.logits[0], multimask=False)
    again = zoom.predict(points=[point], mask_input=first.logits[0], mask_window=first.window, multimask=False)
    assert again.window == first.window


def test_large_objects_and_crop_cache(model):
    plane = load_sample("nuclei3d")[30]  # 256 px: the whole slice is already enlarged 2x
    plain, zoom = Predictor(model), ZoomPredictor(Predictor(model))
    plain.set_image(plane)
    zoom.set_image(plane)
    a = plain.predict(points=[(128, 128)])
    b = zoom.predict(points=[(128, 128)])
    assert b.window is None
    np.testing.assert_array_equal(a.logits, b.logits)

    image = load_sample("nuclei2d")
    calls = []
    encode = zoom.predictor.encode
    zoom.predictor.encode = lambda *a, **k: calls.append(1) or encode(*a, **k)
    zoom.set_image(image)
    for _ in range(2):
        zoom.predict(box=(340, 60, 352, 80), multimask=False)
    assert len(calls) == 2  # the whole image once, the crop once


def test_rejects_bad_settings(model):
    with pytest.raises(TypeError, match="Predictor"):
        ZoomPredictor(model)
    with pytest.raises(ValueError, match="object_fraction"):
        ZoomPredictor(Predictor(model), object_fraction=2)
    with pytest.raises(ValueError, match="blend"):
        ZoomPredictor(Predictor(model), blend=1)
    with pytest.raises(RuntimeError, match="set_image"):
        ZoomPredictor(Predictor(model)).predict(points=[(1, 1)])
    assert MAX_SCALE > 1

"""ZoomPredictor's crops windowed to the object (``contrast="object"``, opt-in): on the real nuclei
and on generated scenes of dim nuclei beside condensed bright ones."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from geometry_helpers import bbox, iou
from scipy import ndimage as ndi

from napari_segany import Predictor
from napari_segany.sample_data import load_sample
from napari_segany.engine.zoom import ZoomPredictor


@pytest.fixture(scope="module")
def model(shipped_model):
    return shipped_model


@pytest.fixture(scope="module")
def nuclei():
    """The image, its labels and the ids of the nuclei that touch no other nor the image's edge,
    dimmest first."""
    image, labels = load_sample("nuclei2d"), load_sample("nuclei2d_labels")
    inner = np.pad(np.ones((labels.shape[0] - 2, labels.shape[1] - 2), bool), 1)
    apart = [i for i in np.unique(labels)[1:] if (labels == i)[~inner].sum() == 0
             and not (ndi.binary_dilation(labels == i, iterations=2) & (labels > 0) & (labels != i)).any()]
    return image, labels, sorted(apart, key=lambda i: np.median(image[labels == i]))


def test_a_dim_nucleus_gets_its_own_window_and_a_bright_one_the_image_s(model, nuclei):
    image, labels, dim_first = nuclei
    zoom = ZoomPredictor(Predictor(model), contrast="object")
    zoom.set_image(image)
    lo, hi = zoom.embedding.window
    dim = labels == dim_first[0]
    limits = zoom.object_limits(bbox(dim))
    assert limits[0] == lo and limits[1] < hi / 2  # the dimmest nucleus lies in the window's lower half
    assert limits[1] >= np.percentile(image[dim], 99)  # ... and its own pixels are not clipped
    brightest = labels == dim_first[-1]
    assert zoom.object_limits(bbox(brightest)) is None  # its surroundings reach the image's top

    res = zoom.predict(box=bbox(dim), multimask=False)
    assert res.window.limits == limits
    assert zoom._crops[res.window].window == limits  # the crop was encoded with them
    plain = ZoomPredictor(zoom.predictor)  # the default: the image's window
    plain.attach(zoom.embedding, image)
    same = plain.predict(box=bbox(dim), multimask=False)
    assert same.window.limits is None and plain._crops[same.window].window == (lo, hi)
    assert (same.window.top, same.window.left, same.window.side) == (res.window.top, res.window.left, res.window.side)


def test_dim_nuclei_beside_bright_ones_are_segmented_better_at_their_own_contrast(model):
    """A generated scene (a held-out seed of the check in training/HISTORY.md) where condensed nuclei many
    times brighter set the image's window about 20x above the others' contrast: their boxes, zoomed,
    one view. (Of that check's 12 scenes, this is where the object's window mattered most; where
    the dim nuclei keep a fair share of the window, it changes little.)"""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from training.synth import generate

    scene = generate(np.random.default_rng([1, 2_000_003]), (512, 512), "nuclei", bright_fraction=0.3)
    objects = [m for m in scene.masks if m.sum() >= 30][:20]
    mean = {}
    for contrast in ("object", "image"):
        zoom = ZoomPredictor(Predictor(model), contrast=contrast)
        zoom.set_image(scene.image)
        mean[contrast] = float(np.mean([iou(zoom.predict(box=bbox(gt), multimask=False).mask(0), gt)
                                        for gt in objects]))
    assert mean["object"] > mean["image"] + 0.08, mean


def test_rgb_crops_keep_the_image_window(model):
    rgb = np.repeat(load_sample("nuclei2d")[..., None], 3, axis=2).astype(np.uint8)
    zoom = ZoomPredictor(Predictor(model), contrast="object")
    zoom.set_image(rgb)
    assert zoom.object_limits((100, 100, 120, 120)) is None
    with pytest.raises(ValueError, match="contrast"):
        ZoomPredictor(Predictor(model), contrast="crop")

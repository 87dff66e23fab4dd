"""Images smaller than the model's frame: a model may cap how much it enlarges them
(``ModelInfo.max_upscale``) and pad the rest, because blowing a small image up several times gives
a model that never saw such blur far worse masks (benchmarks/bench_small_images.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_segany import EmbeddingStore, Predictor, load_model
from napari_segany.engine.preprocess import Geometry
from napari_segany.finetune.save import config_for


def test_geometry_enlarges_at_most_the_cap_and_pads_the_rest():
    assert Geometry.for_image((128, 96), 512).input_size == (512, 384)
    capped = Geometry.for_image((128, 96), 512, max_upscale=3)
    assert capped.input_size == (384, 288) and capped.max_upscale == 3
    assert Geometry.for_image((1024, 700), 512, max_upscale=3).input_size == (512, 350)  # shrinking: no cap
    assert Geometry.for_image((200, 200), 512, max_upscale=3).input_size == (512, 512)  # 2.56x < 3x
    masks = capped.box_to_model(np.array([0, 0, 127, 95]))
    np.testing.assert_allclose(masks, [0, 0, 95 * 3, 127 * 3])


def test_the_included_model_caps_and_sam_fills(shipped_model, tiny_model):
    assert shipped_model.info.max_upscale == 3.0
    assert tiny_model.info.max_upscale is None  # SAM's own geometry, as the reference


def _box_ious(predictor, image, labels, offset=(0, 0), shape=None):
    """Box IoU of every object of ``labels`` (a crop at ``offset`` of ``image`` when shape is given)
    not touching the crop's edge, answered on the embedding of ``image``."""
    emb = predictor.encode(image)
    shape = shape or labels.shape
    out = {}
    for i, found in enumerate(ndimage.find_objects(labels), 1):
        if found is None:
            continue
        r0, c0, r1, c1 = found[0].start, found[1].start, found[0].stop - 1, found[1].stop - 1
        if min(r0, c0) == 0 or r1 == shape[0] - 1 or c1 == shape[1] - 1:
            continue
        truth = labels == i
        mask = predictor.predict(box=[r0, c0, r1, c1], embedding=emb).masks[0]
        out[i] = float((mask & truth).sum() / (mask | truth).sum())
    return out


def test_a_small_crop_of_real_nuclei_is_segmented_nearly_as_well_as_the_whole_image(shipped_model, nuclei2d):
    """The same nuclei, on the whole 512 px image and on 128 px cut-outs of it: the cut-outs' boxes,
    enlarged 3x and padded, come within 0.1 of the whole image's and clearly above those of the
    cut-outs blown up 4x to fill the frame."""
    image, labels = nuclei2d
    torch.set_num_threads(min(2, torch.get_num_threads()))
    capped = Predictor(shipped_model, precision="fp32")
    small, filled, whole = [], [], []
    for y, x in ((0, 0), (200, 200), (256, 100)):
        crop, crop_labels = image[y:y + 128, x:x + 128], labels[y:y + 128, x:x + 128]
        assert capped.encode(crop).geometry.input_size == (384, 384)
        here = _box_ious(capped, crop, crop_labels)
        there = _box_ious(capped, image, np.where(np.isin(labels, list(here)), labels, 0))
        shipped_model.info, kept = dataclasses.replace(shipped_model.info, max_upscale=None), shipped_model.info
        try:
            blown = _box_ious(Predictor(shipped_model, precision="fp32"), crop, crop_labels)
        finally:
            shipped_model.info = kept
        common = [i for i in here if i in there]
        small += [here[i] for i in common]
        whole += [there[i] for i in common]
        filled += [blown[i] for i in common]
    assert len(small) >= 10
    assert np.mean(small) >= np.mean(whole) - 0.1, (np.mean(small), np.mean(whole))
    assert np.mean(small) >= np.mean(filled) + 0.05, (np.mean(small), np.mean(filled))


def test_masks_of_a_small_image_stay_inside_it(shipped_model, nuclei2d):
    image, _ = nuclei2d
    predictor = Predictor(shipped_model, precision="fp32")
    crop = image[:100, :70]
    pred = predictor.predict(box=[10, 10, 60, 60], embedding=predictor.encode(crop))
    assert pred.masks.shape[1:] == (100, 70)
    assert pred.masks[0].any()


def test_a_checkpoint_config_sets_the_cap_and_a_bad_one_is_refused(tiny_model, tmp_path):
    state = {"model": tiny_model.state_dict(), "config": {"max_upscale": 2.5}}
    path = tmp_path / "capped.pt"
    torch.save(state, path)
    assert load_model(path).info.max_upscale == 2.5
    for bad in (0.5, "3", True, float("nan")):
        torch.save({"model": tiny_model.state_dict(), "config": {"max_upscale": bad}}, path)
        with pytest.raises(ValueError, match="max_upscale"):
            load_model(path)


def test_a_fine_tuned_model_keeps_its_base_models_cap(shipped_model):
    config = config_for(shipped_model, shipped_model.info, {}, "mine")
    assert config["max_upscale"] == 3.0
    sam_like = dataclasses.replace(shipped_model.info, max_upscale=None)
    shipped_model.info, kept = sam_like, shipped_model.info
    try:
        assert "max_upscale" not in config_for(shipped_model, sam_like, {}, "mine")
    finally:
        shipped_model.info = kept


def test_volume_caches_of_a_capped_model_are_its_own(shipped_model, tmp_path):
    """A slice cache made while the model filled the frame is not reused once it caps (the settings
    that key the cache include the cap)."""
    volume = np.random.default_rng(0).integers(0, 255, (3, 100, 100), dtype=np.uint8)
    predictor = Predictor(shipped_model, precision="fp32")
    capped = EmbeddingStore(predictor, volume, cache_dir=tmp_path)
    assert capped.geometry.input_size == (300, 300)
    shipped_model.info, kept = dataclasses.replace(shipped_model.info, max_upscale=None), shipped_model.info
    try:
        filled = EmbeddingStore(Predictor(shipped_model, precision="fp32"), volume, cache_dir=tmp_path)
        assert filled.geometry.input_size == (512, 512)
        assert filled._disk.path != capped._disk.path
    finally:
        shipped_model.info = kept

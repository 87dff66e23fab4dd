"""The boundary refiner: where it may change masks, how it is stored and loaded, and that every
path that returns masks (Predictor, ZoomPredictor, the slice store of propagation) applies it."""

import numpy as np
import pytest
import torch

from napari_segany import EmbeddingStore, Predictor, load_model
from napari_segany.engine.preprocess import upscale_logits
from napari_segany.engine.refine import (MARGIN, TILE, MaskRefiner, _core_band, _edge_cores, _refine_at_once, band_radius,
                                  net_inputs, object_crop, refine_logits)
from napari_segany.engine.zoom import ZoomPredictor


def noisy_refiner(seed: int = 0, scale: float = 5.0) -> MaskRefiner:
    """A refiner whose every weight is random and large, i.e. one that changes logits a lot."""
    torch.manual_seed(seed)
    net = MaskRefiner()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * scale / max(1, p[0].numel()) ** 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def refined_model_path(tmp_path_factory, tiny_model_path):
    """The tiny random vit_t with a (random) refiner, in our checkpoint format, as training.refiner writes it."""
    state = torch.load(tiny_model_path, weights_only=True)
    net = noisy_refiner()
    state.update({"refiner." + k: v for k, v in net.state_dict().items()})
    path = tmp_path_factory.mktemp("refined") / "refined_vit_t.pt"
    torch.save({"model": state, "config": {"arch": "vit_t", "image_size": 1024, "refiner": net.config}}, path)
    return path


def nucleus_logits(image: np.ndarray, centre=(346, 70), radius=14.0) -> torch.Tensor:
    """A coarse disc of logits (a stand-in for upscaled decoder output) on the real image."""
    rr, cc = np.mgrid[: image.shape[0], : image.shape[1]]
    dist = np.hypot(rr - centre[0], cc - centre[1])
    return torch.from_numpy(((radius - dist) * 2.0).astype(np.float32))[None]


def test_an_untrained_refiner_changes_nothing(nuclei2d):
    image = nuclei2d[0].astype(np.float32) / nuclei2d[0].max()
    logits = nucleus_logits(image)
    assert torch.equal(refine_logits(MaskRefiner(), image, logits, cell=4.0), logits)


@pytest.mark.parametrize("cell", [1.0, 4.0, 20.0])
def test_changes_stay_in_a_band_around_the_boundary(nuclei2d, cell):
    """Whatever its weights, the refiner cannot touch pixels farther than the band from the
    mask's boundary: no erased interiors, no regions added elsewhere."""
    image = nuclei2d[0].astype(np.float32) / nuclei2d[0].max()
    logits = nucleus_logits(image)
    out = refine_logits(noisy_refiner(), image, logits, cell=cell)
    changed = (out != logits)[0].numpy()
    assert changed.any()
    dist = np.abs(logits[0].numpy() / 2.0)  # the disc's logits are twice the distance to its boundary
    assert dist[changed].max() <= band_radius(cell) + 1.0  # + a pixel of distance-transform rounding
    assert 3.0 <= band_radius(cell) <= MARGIN


@pytest.mark.parametrize("cell", [1.0, 9.0])
def test_a_large_object_is_refined_tile_by_tile_with_the_same_result(nuclei2d, cell):
    """A large object's outline is a small part of its crop: only the tiles around it are computed,
    and the logits are those of the whole crop at once (up to float rounding), masks identical."""
    tile = np.tile(nuclei2d[0].astype(np.float32) / nuclei2d[0].max(), (4, 4))[:1600, :1500]
    rr, cc = np.mgrid[: tile.shape[0], : tile.shape[1]]
    wobble = 25 * np.sin(np.arctan2(rr - 800, cc - 750) * 5)
    logits = torch.from_numpy(((650 + wobble - np.hypot(rr - 800, cc - 750)) * 0.7).astype(np.float32))[None]
    net = noisy_refiner(seed=1)
    crop = object_crop(logits[0].numpy() > 0)
    tiled = refine_logits(net, tile, logits, cell)[0].numpy()[crop]
    lg = logits[0].numpy()[crop]
    assert len(_edge_cores(lg > 0, band_radius(cell))) * (TILE + 2 * net.reach) ** 2 < 0.75 * lg.size  # tiled
    whole = _refine_at_once(net, tile[crop], lg, cell)
    band = net_inputs(tile[crop], lg, cell)[1]
    # float rounding (summation order), amplified by the big weights: relative to the largest logit
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5 * np.abs(whole).max())
    assert np.array_equal(tiled > 0, whole > 0)
    assert (tiled != lg).any() and not (tiled != lg)[~band].any()


@pytest.mark.parametrize("offset", [0, 1, 4, 7, 13, 14])
def test_the_tiles_bands_are_exactly_the_crops_band(offset):
    """Tile by tile, the band is the one measured on the whole crop, also where the boundary lies just
    outside a tile's search window (one side only in it)."""
    mask = np.zeros((300, 260), bool)
    mask[:, TILE + offset:] = True
    mask[150 + offset:, :40] = True
    for cell in (2.0, 4.0, 8.0):
        _, band = net_inputs(np.zeros(mask.shape, np.float32), np.where(mask, 1.0, -1.0).astype(np.float32), cell)
        rebuilt = np.zeros_like(band)
        for core in _edge_cores(mask, band_radius(cell)):
            rebuilt[core] = _core_band(mask, core, band_radius(cell))
        assert np.array_equal(rebuilt, band)


def test_a_mask_filling_a_large_image_is_refined_like_the_whole_crop(nuclei2d):
    """A mask with no edge in its crop (it covers the whole image) has no tiles: it goes the way of
    the whole crop at once instead of failing."""
    image = np.tile(nuclei2d[0].astype(np.float32) / nuclei2d[0].max(), (2, 2))[:900, :800]
    logits = torch.full((1, *image.shape), 3.0)
    whole = _refine_at_once(noisy_refiner(), image, logits[0].numpy(), 4.0)
    np.testing.assert_array_equal(refine_logits(noisy_refiner(), image, logits, 4.0)[0].numpy(), whole)


def test_empty_masks_are_left_alone():
    logits = -torch.ones(2, 40, 50)
    assert torch.equal(refine_logits(noisy_refiner(), np.zeros((40, 50), np.float32), logits, 4.0), logits)


def test_checkpoint_round_trip_and_damaged_settings(refined_model_path, tiny_model, tmp_path):
    model = load_model(refined_model_path, device="cpu")
    assert isinstance(model.refiner, MaskRefiner) and tiny_model.refiner is None
    for k, v in noisy_refiner().state_dict().items():
        torch.testing.assert_close(model.refiner.state_dict()[k], v)
    ckpt = torch.load(refined_model_path, weights_only=True)
    del ckpt["config"]["refiner"]
    torch.save(ckpt, tmp_path / "no_settings.pt")
    with pytest.raises(ValueError, match="refiner weights but no refiner settings"):
        load_model(tmp_path / "no_settings.pt")


def test_predictor_and_zoom_return_refined_masks(refined_model_path, nuclei2d):
    image = nuclei2d[0]
    model = load_model(refined_model_path, device="cpu")
    refined, plain = Predictor(model, regions="all"), Predictor(load_model(refined_model_path), regions="all")
    plain.model.refiner = None
    emb = refined.set_image(image)
    plain.set_image(image)
    assert emb.guide is not None and emb.guide.shape == image.shape and emb.nbytes > emb.features.nbytes
    box = (335, 60, 357, 80)
    pred, unrefined = refined.predict(box=box, multimask=False), plain.predict(box=box, multimask=False)
    np.testing.assert_array_equal(pred.logits, unrefined.logits)  # the decoder's answer is the same ...
    up = upscale_logits(torch.from_numpy(pred.logits), emb.geometry)
    expected = refine_logits(model.refiner, emb.guide, up, cell=max(image.shape) / model.low_res_size) > 0
    np.testing.assert_array_equal(pred.masks, expected.numpy())  # ... its masks are refined
    assert not np.array_equal(pred.masks, unrefined.masks)
    zoom = ZoomPredictor(refined)
    zoom.set_image(np.tile(image, (4, 4)))  # large enough for this 1024 px model to zoom in
    zoomed = zoom.predict(box=box, multimask=False)
    assert zoomed.window is not None and zoom._crops[zoomed.window].guide is not None


def test_slice_store_gives_the_refiner_its_guide_also_from_disk(refined_model_path, tmp_path):
    """Propagation's embeddings carry the guide whether they were computed or read back from the
    disk cache, so a slice gets the same refined masks either way."""
    model = load_model(refined_model_path, device="cpu")
    rng = np.random.default_rng(0)
    volume = (rng.random((3, 64, 80)) * 1000).astype(np.uint16)
    predictor = Predictor(model)
    with EmbeddingStore(predictor, volume, cache_dir=tmp_path, prefetch=0) as store:
        fresh = store.get(1)
    with EmbeddingStore(predictor, volume, cache_dir=tmp_path, prefetch=0) as store:
        cached = store.get(1)
        assert store.stats["disk_hits"] == 1
    direct = predictor.encode(volume[1], contrast_limits=fresh.window, views=1)
    for emb in (fresh, cached):
        np.testing.assert_array_equal(emb.guide, direct.guide)


def test_masks_made_one_at_a_time_are_not_made_again(refined_model_path, nuclei2d):
    """The widget shows mask(0) and then all candidates: with a refiner each costs, so each is made once."""
    predictor = Predictor(load_model(refined_model_path, device="cpu"))
    predictor.set_image(nuclei2d[0])
    res = predictor.predict(points=[(346, 70)])
    calls, upscale = [], res._upscale
    res._upscale = lambda logits: calls.append(len(logits)) or upscale(logits)
    first = res.mask(0)
    assert res.mask(0) is first
    np.testing.assert_array_equal(res.masks, upscale(res.logits))
    assert calls == [1, 1, 1]  # candidate 0 once, then the two others

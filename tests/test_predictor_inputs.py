"""Bad input gets a clear error; good input of every kind gets masks."""

from __future__ import annotations

import numpy as np
import pytest

import napari_segany as sg


@pytest.fixture(scope="module")
def pred(tiny_model, nuclei2d):
    p = sg.Predictor(tiny_model)
    p.set_image(nuclei2d[0])
    return p


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros(100, np.uint8), "1 dimension"),
        (np.zeros((2, 3, 64, 64), np.uint8), "4 dimension"),
        (np.zeros((0, 64), np.uint8), "empty"),
        (np.full((64, 64), np.nan, np.float32), "no finite values"),
        (np.zeros((5, 64), np.uint8), "at least 8"),
        (np.zeros((64, 64, 7), np.uint16), "channel=i"),
        (np.zeros((64, 64), bool), "dtype bool"),
        ([[1, 2], [3, 4]], "numpy array"),
    ],
)
def test_bad_images_raise_clear_errors(tiny_model, image, match):
    with pytest.raises((ValueError, TypeError), match=match):
        sg.Predictor(tiny_model).encode(image)


def test_constant_image_warns(tiny_model):
    with pytest.warns(UserWarning, match="constant"):
        sg.Predictor(tiny_model).encode(np.full((32, 32), 7, np.uint16))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"points": [(-3, 10)]}, "outside"),
        ({"points": [(10, 600)]}, "outside"),
        ({"box": (100, 100, 50, 200)}, "inverted or has zero area"),
        ({"box": (100, 100, 100, 200)}, "inverted or has zero area"),
        ({"box": (600, 600, 700, 700)}, "entirely outside"),
        ({}, "no prompt given"),
        ({"points": [(10, 10)], "mask_input": np.zeros((64, 64))}, "mask_input must be"),
        ({"points": [(10, 10)], "labels": [2]}, "1 \\(foreground\\) or 0"),
        ({"points": [(10, 10)], "labels": [1, 0]}, "one entry per point"),
        ({"points": [(1, 2, 3)]}, "shape \\(N, 2\\)"),
    ],
)
def test_bad_prompts_raise_clear_errors(pred, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pred.predict(**kwargs)


def test_predict_before_image_is_set(tiny_model):
    with pytest.raises(RuntimeError, match="set_image"):
        sg.Predictor(tiny_model).predict(points=[(1, 1)])


def test_outputs_shapes_order_and_refinement(pred):
    res = pred.predict(points=[(256, 256)], labels=[1])
    assert res.masks.shape == (3, 512, 512) and res.masks.dtype == bool
    assert res.logits.shape == (3, 256, 256) and res.logits.dtype == np.float32
    assert np.all(np.diff(res.scores) <= 0), "candidates are sorted best first"
    np.testing.assert_array_equal(res.mask(1), res.masks[1])
    single = pred.predict(points=[(256, 256), (10, 10)], labels=[1, 0], mask_input=res.logits[0], multimask=False)
    assert single.masks.shape == (1, 512, 512)


def test_embedding_round_trip(pred, tiny_model, nuclei2d):
    emb = pred.embedding
    assert emb.features.shape == (256, 64, 64) and emb.features.dtype == np.float32
    other = sg.Predictor(tiny_model)
    other.set_embedding(emb)
    a = pred.predict(points=[(100, 120)])
    b = other.predict(points=[(100, 120)])
    np.testing.assert_array_equal(a.logits, b.logits)


def test_embedding_of_another_model_is_refused(pred, tiny_model):
    emb = pred.embedding
    stranger = sg.ImageEmbedding(emb.features, emb.geometry, "some-other-model")
    with pytest.raises(ValueError, match="different|recompute"):
        sg.Predictor(tiny_model).set_embedding(stranger)


def test_sixteen_bit_is_windowed_not_wrapped(tiny_model):
    """A 16-bit image far above 255 gives the same embedding as its 8-bit
    rescaled copy: intensities are windowed, never wrapped or clipped at 255."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 200, (64, 96)).astype(np.float64)
    p = sg.Predictor(tiny_model)
    e16 = p.encode((base * 300 + 1000).astype(np.uint16))
    ef = p.encode(base.astype(np.float32))
    np.testing.assert_allclose(e16.features, ef.features, atol=1e-4)


def test_rgb_channel_and_contrast_limits(tiny_model):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (48, 64, 3)).astype(np.uint8)
    p = sg.Predictor(tiny_model)
    assert p.encode(rgb).window == (0.0, 255.0)
    multi = rng.random((48, 64, 5)).astype(np.float32)
    emb = p.encode(multi, channel=2, contrast_limits=(0.1, 0.9))
    assert emb.window == (0.1, 0.9) and emb.original_size == (48, 64)
    with pytest.raises(ValueError, match="low < high"):
        p.encode(multi, channel=2, contrast_limits=(0.9, 0.1))


def test_batch_matches_single_calls(pred):
    boxes = [(200, 200, 300, 320), (20, 30, 90, 110)]
    batch = pred.predict_batch(boxes=boxes)
    for box, res in zip(boxes, batch):
        single = pred.predict(box=box, multimask=False)
        np.testing.assert_allclose(res.logits, single.logits, atol=1e-4)


def test_cancel_stops_the_encoder(tiny_model):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(sg.Cancelled):
        sg.Predictor(tiny_model).encode(np.zeros((64, 64), np.float32) + np.arange(64), should_stop=stop)


def test_cancelling_one_encode_leaves_a_concurrent_one_alone(tiny_model):
    """Stop checks are per call: a cancelled encode in one thread does not stop
    another thread's encode on the same model."""
    import threading

    image = np.zeros((64, 64), np.float32) + np.arange(64)
    started, results = threading.Event(), {}

    def other():
        def slow_check():
            started.set()
            return False
        results["other"] = sg.Predictor(tiny_model).encode(image, should_stop=slow_check)

    t = threading.Thread(target=other)
    t.start()
    started.wait(30)
    with pytest.raises(sg.Cancelled):
        sg.Predictor(tiny_model).encode(image, should_stop=lambda: True)
    t.join(60)
    assert results["other"].features.shape == (256, 64, 64)


def test_fractional_labels_and_empty_objects_are_refused_not_truncated(pred):
    """A label of 0.5 or 0.9 was truncated to a background click (an empty mask, no error)."""
    for bad in ([0.5], [0.9], [float("nan")]):
        with pytest.raises(ValueError, match="whole numbers"):
            pred.predict(points=[(100, 120)], labels=bad)
    np.testing.assert_array_equal(pred.predict(points=[(100, 120)], labels=[1.0]).logits,
                                  pred.predict(points=[(100, 120)], labels=[1]).logits)
    with pytest.raises(ValueError, match="whole numbers"):
        pred.predict_batch(points=[[(100, 120)]], labels=[[0.9]])
    with pytest.raises(ValueError, match="only padding points"):
        pred.predict_batch(points=[[(100, 120)], [(50, 50)]], labels=[[1], [-1]])
    with pytest.raises(ValueError, match="B >= 1"):
        pred.predict_batch(boxes=np.zeros((0, 4)))


def test_nan_logits_and_masks_are_refused(pred):
    """A NaN mask_input gave a NaN score and an empty mask; a NaN mask wrote every pixel on commit;
    label_id=2.7 wrote id 2."""
    from napari_segany.labels import commit_mask

    low = pred.predict(points=[(100, 120)]).logits[0]
    for bad in (np.full_like(low, np.nan), np.where(low > 0, np.inf, low)):
        with pytest.raises(ValueError, match="NaN or infinite"):
            pred.predict(points=[(100, 120)], mask_input=bad)
        with pytest.raises(ValueError, match="NaN or infinite"):
            pred.predict_batch(points=[[(100, 120)]], mask_input=bad[None])
    labels = np.zeros((8, 8), np.uint16)
    with pytest.raises(ValueError, match="only 0/1"):
        commit_mask(labels, np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="whole number"):
        commit_mask(labels, np.ones((8, 8), bool), label_id=2.7)
    assert not labels.any()
    assert commit_mask(labels, np.eye(8), label_id=2.0).label_id == 2 and labels.sum() == 16


def test_an_image_too_thin_for_the_frame_is_refused_with_a_sentence(pred):
    """An 8 x 20000 image passed the size check and failed inside torch ("output (H: 0, W: 512)")."""
    with pytest.raises(ValueError, match="short side would be under one pixel"):
        pred.encode(np.random.default_rng(0).random((8, 20000)))


def test_the_unit_range_is_one_new_array_and_never_writes_the_input():
    """to_unit_range makes one float32 array, computed in place (a 20000 px image is 1.6 GB per copy):
    the caller's float32 image is left as it was, +/-inf and NaN become 0, the rest is clipped."""
    from napari_segany.engine.preprocess import to_unit_range
    from napari_segany.engine.refine import guide_from_unit

    image = np.array([[0.0, 5.0, 10.0], [20.0, np.inf, -np.inf], [np.nan, -3.0, 7.5]], np.float32)
    before = image.copy()
    out = to_unit_range(image, (0.0, 10.0))
    np.testing.assert_array_equal(image, before)  # NaN positions compare equal here
    assert out.dtype == np.float32 and not np.shares_memory(out, image)
    np.testing.assert_array_equal(out, [[0, 0.5, 1], [1, 0, 0], [0, 0, 0.75]])
    ints = to_unit_range(np.array([[0, 128, 255]], np.uint8), (0.0, 255.0))
    np.testing.assert_allclose(ints, [[0, 128 / 255, 1]], rtol=1e-7)
    unit = out[..., None]
    assert np.shares_memory(guide_from_unit(unit), unit)  # one channel: no second full-size copy
    np.testing.assert_array_equal(guide_from_unit(np.stack([out, out * 0], -1)), out / 2)

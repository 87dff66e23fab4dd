"""An answer is a function of (embedding, prompts): explicit embeddings, no side effects on a
predictor someone else holds, safe from several threads, and embeddings that refuse to answer for
another model or other pixels."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

import napari_segany as sg
from napari_segany.sample_data import load_sample
from napari_segany.engine.zoom import ZoomPredictor


@pytest.fixture(scope="module")
def two_slices(shipped_model):
    """Two real 3D-nuclei slices, their embeddings, and a click on a nucleus of the first."""
    volume, labels = load_sample("nuclei3d"), load_sample("nuclei3d_labels")
    z = 30
    ids, counts = np.unique(labels[z][labels[z] > 0], return_counts=True)
    rr, cc = np.nonzero(labels[z] == ids[np.argmax(counts)])
    click = [(int(np.median(rr)), int(np.median(cc)))]
    pred = sg.Predictor(shipped_model)
    return pred, volume, (z, pred.encode(volume[z])), (z + 6, pred.encode(volume[z + 6])), click


def test_an_answer_names_its_embedding_and_touches_no_state(two_slices):
    pred, _, (_, a), (_, b), click = two_slices
    pred.reset()
    res = pred.predict(points=click, embedding=a)
    assert res.embedding is a and pred.embedding is None  # nothing became current
    pred.set_embedding(b)
    np.testing.assert_array_equal(pred.predict(points=click, embedding=a).logits, res.logits)
    assert pred.embedding is b
    assert not np.array_equal(pred.predict(points=click).logits, res.logits)  # the current one is b
    batch = pred.predict_batch(boxes=[(40, 40, 80, 80)], embedding=a)
    assert batch[0].embedding is a
    with pytest.raises(ValueError, match="shape"):
        pred.mask_prompt(np.zeros((3, 3), bool), embedding=a)
    pred.reset()
    with pytest.raises(RuntimeError, match="embedding="):
        pred.predict(points=click)


def test_embeddings_are_immutable_and_know_what_they_encode(two_slices):
    pred, volume, (z, a), (_, b), _ = two_slices
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.window = (0.0, 1.0)
    assert a.image_id == sg.Predictor(pred.model).encode(volume[z]).image_id  # the pixels' identity
    assert a.image_id != b.image_id and a.image_id.startswith("px:")
    assert pred.encode(volume[z], image_id="layer 3, slice 30").image_id == "layer 3, slice 30"


def test_threads_never_mix_two_images(two_slices):
    """Answers on the current embedding while another thread keeps switching it, and answers
    naming their embedding, from three threads at once: each equals one image's own answer."""
    pred, _, (_, a), (_, b), click = two_slices
    want = {id(e): pred.predict(points=click, embedding=e).logits for e in (a, b)}
    pred.set_embedding(a)
    stop = threading.Event()
    bad, done = [], []

    def switch():
        while not stop.is_set():
            for e in (a, b):
                pred.set_embedding(e)
                time.sleep(0.001)  # often, without starving the other threads of the GIL

    def ask(explicit):
        for k in range(20):
            e = (a, b)[k % 2]
            res = pred.predict(points=click, embedding=e if explicit else None)
            if not any(np.array_equal(res.logits, w) for w in want.values()):
                bad.append(k)
            elif explicit and not np.array_equal(res.logits, want[id(e)]):
                bad.append(("wrong image", k))
            elif not explicit and not np.array_equal(res.logits, want[id(res.embedding)]):
                bad.append(("answer not from its own embedding", k))
            done.append(k)

    threads = [threading.Thread(target=switch), threading.Thread(target=ask, args=(True,)),
               threading.Thread(target=ask, args=(False,))]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    stop.set()
    threads[0].join()
    assert len(done) == 40 and not bad, bad


def test_propagation_leaves_the_callers_predictor_as_it_was(two_slices):
    pred, volume, (z, a), _, click = two_slices
    pred.set_embedding(a)
    before = pred.predict(points=click)
    seed = before.mask(0)
    assert seed.any()
    store = sg.EmbeddingStore(pred, volume, prefetch=0)
    result = sg.propagate(volume, {z: seed}, store=store)
    assert result.slices_decoded > 0
    assert pred.embedding is a
    after = pred.predict(points=click)
    np.testing.assert_array_equal(after.logits, before.logits)
    np.testing.assert_array_equal(after.mask(0), seed)


def test_zoom_predictor_answers_only_for_the_image_it_was_given(two_slices):
    pred, volume, (z, a), (zb, b), click = two_slices
    pred.set_embedding(b)
    zoom = ZoomPredictor(pred)
    with pytest.raises(ValueError, match="other pixels"):
        zoom.attach(a, volume[zb])  # a slice's embedding offered for another slice
    zoom.attach(a, volume[z])
    res = zoom.predict(points=click)
    assert pred.embedding is b  # the caller's predictor is untouched
    fresh = ZoomPredictor(sg.Predictor(pred.model))
    fresh.set_image(volume[z], contrast_limits=a.window)
    np.testing.assert_array_equal(fresh.predict(points=click).mask(0), res.mask(0))


def test_two_models_built_in_memory_refuse_each_others_embeddings(tiny_model):
    from napari_segany.cli.benchmark import randomise_weights
    from napari_segany.model import build_sam

    one, two = build_sam("vit_t", 256), build_sam("vit_t", 256)
    randomise_weights(one, seed=1)
    randomise_weights(two, seed=2)
    p1, p2 = sg.Predictor(one), sg.Predictor(two)
    assert p1.model_id != p2.model_id and ":" not in p1.model_id  # never keys a disk cache
    assert sg.Predictor(one).model_id == p1.model_id  # the same weights: the same model
    emb = p1.encode(np.random.default_rng(0).random((64, 64)))
    with pytest.raises(ValueError, match="recompute"):
        p2.predict(points=[(10, 10)], embedding=emb)


def test_more_views_reuse_the_first_views_encoding(two_slices):
    """The widget answers from one view first and adds the mirrored views after: adding them
    reuses the first encoding and gives exactly what encoding all views at once gives."""
    pred, volume, (z, a), (_, b), click = two_slices
    calls = []
    real = pred._run_encoder
    pred._run_encoder = lambda *args: calls.append(1) or real(*args)
    try:
        more = pred.encode(volume[z], views=4, reuse=a)
    finally:
        del pred._run_encoder
    assert len(calls) == 3 and more.image_id == a.image_id and len(more.views) == 3
    at_once = pred.encode(volume[z], views=4)
    for x, y in zip([more.features] + [e.features for _, e in more.views],
                    [at_once.features] + [e.features for _, e in at_once.views]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(pred.predict(points=click, embedding=more).logits,
                                  pred.predict(points=click, embedding=at_once).logits)
    with pytest.raises(ValueError, match="same image"):
        pred.encode(volume[z], views=4, reuse=b)

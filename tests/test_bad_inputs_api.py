"""The bad-input corpus, Python API (issue 27 item 6): each case is one careless or unlucky call of
the public functions. Each must raise the documented error type with a sentence that names the
offending argument or value, change no file (inputs, outputs, the model file) and leave the
caller's arrays and the predictor's current image as they were.

The command line's corpus is in tests/test_bad_inputs_cli.py; the helpers in
tests/bad_input_helpers.py. Everything runs on the random-weight vit_t model, with files made by
the real writers in a temporary folder."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

import napari_segany as sg
from napari_segany import files, labels as lab
from napari_segany.engine.zoom import ZoomPredictor
from bad_input_helpers import assert_sentence, assert_unchanged, blob_image, case, make_inputs, snapshot


class _RunsCode:
    def __reduce__(self):
        return os.system, ("touch ran-code.txt",)


def _checkpoint(path, model_path, change):
    state = torch.load(model_path, weights_only=True)
    change(state)
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def env(tiny_model, tiny_model_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-api-inputs")
    paths = make_inputs(folder, tiny_model_path)
    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    paths["int64_pth"] = _checkpoint(folder / "int64.pth", tiny_model_path,
                                     lambda s: s.__setitem__(key, s[key].round().to(torch.int64)))
    paths["nan_pth"] = _checkpoint(folder / "nan.pth", tiny_model_path, lambda s: s[key].fill_(float("nan")))
    paths["missing_key_pth"] = _checkpoint(folder / "missing.pth", tiny_model_path, lambda s: s.pop(key))
    paths["pickle_pth"] = folder / "payload.pth"
    paths["pickle_pth"].write_bytes(pickle.dumps({"model": _RunsCode()}, protocol=2))
    pred = sg.Predictor(tiny_model)
    image = blob_image()
    pred.set_image(image)
    zoom = ZoomPredictor(sg.Predictor(tiny_model))
    zoom.attach(pred.embedding, image)
    volume = np.stack([image] * 4)
    return type("Env", (), dict(model=tiny_model, pred=pred, zoom=zoom, image=image, volume=volume,
                                paths=paths, folder=folder, model_path=tiny_model_path))


class Ctx:
    """What a case may use: the environment, a folder for outputs, and ``keep(array)``, which
    records a copy of an array the call must not change."""

    def __init__(self, env, out):
        self.__dict__.update({k: v for k, v in vars(env).items() if not k.startswith("_")})
        self.out = out
        self.kept = []

    def keep(self, array):
        self.kept.append((array, array.copy()))
        return array

    def seed(self, z=1):
        return {z: blob_image() > 1000}

    def store(self, **kwargs):
        return sg.EmbeddingStore(self.pred, self.volume, prefetch=0, **kwargs)


NAN, INF = float("nan"), float("inf")
V, T = ValueError, TypeError
P = lambda c: c.pred  # noqa: E731
API = [
    # the model and the predictor
    case("predictor-of-a-string", lambda c: sg.Predictor("vit_b"), T, ("model", "load_model")),
    case("predictor-precision-fp64", lambda c: sg.Predictor(c.model, precision="fp64"), V, ("fp64",)),
    case("predictor-regions-unknown", lambda c: sg.Predictor(c.model, regions="some"), V, ("regions",)),
    case("predictor-views-3", lambda c: sg.Predictor(c.model, views=3), V, ("views",)),
    case("predict-before-set-image", lambda c: sg.Predictor(c.model).predict(points=[(3, 3)]), RuntimeError,
         ("set_image",)),
    # images
    case("encode-1d", lambda c: P(c).encode(np.zeros(100, np.uint8)), V, ("1 dimension",)),
    case("encode-5d", lambda c: P(c).encode(np.zeros((2, 2, 2, 16, 16), np.uint8)), V, ("5 dimension",)),
    case("encode-0-rows", lambda c: P(c).encode(np.zeros((0, 64), np.uint8)), V, ("empty",)),
    case("encode-0-pixels", lambda c: P(c).encode(np.zeros((0, 0), np.float32)), V, ("empty",)),
    case("encode-complex", lambda c: P(c).encode(np.ones((32, 32), np.complex64)), T, ("complex",)),
    case("encode-bool", lambda c: P(c).encode(np.ones((32, 32), bool)), T, ("bool",)),
    case("encode-object", lambda c: P(c).encode(np.full((32, 32), None, object)), T, ("object",)),
    case("encode-strings", lambda c: P(c).encode(np.full((32, 32), "a")), T, ("dtype",)),
    case("encode-all-nan", lambda c: P(c).encode(np.full((32, 32), NAN, np.float32)), V, ("finite",)),
    case("encode-all-inf", lambda c: P(c).encode(np.full((32, 32), INF)), V, ("finite",)),
    case("encode-a-path", lambda c: P(c).encode(str(c.paths["img"])), T, ("numpy array",)),
    case("encode-thin", lambda c: P(c).encode(np.zeros((5, 64), np.uint8)), V, ("at least 8",)),
    case("encode-8x20000", lambda c: P(c).encode(np.tile(np.arange(20000) % 251, (8, 1)).astype(np.uint8)), V,
         ("8 x 20000",)),
    case("encode-7-channels", lambda c: P(c).encode(np.zeros((32, 32, 7), np.uint16)), V, ("channel=",)),
    case("encode-channel-out-of-range", lambda c: P(c).encode(np.zeros((32, 32, 3), np.uint8), channel=5), V,
         ("channel=5",)),
    case("encode-channel-on-2d", lambda c: P(c).encode(c.image, channel=1), V, ("channel",)),
    case("encode-channel-fraction", lambda c: P(c).encode(np.zeros((32, 32, 3), np.uint8), channel=1.5), T,
         ("channel", "1.5")),
    case("contrast-limits-nan", lambda c: P(c).encode(c.image, contrast_limits=(NAN, 1)), V, ("contrast_limits",)),
    case("contrast-limits-inf", lambda c: P(c).encode(c.image, contrast_limits=(0, INF)), V, ("contrast_limits",)),
    case("contrast-limits-reversed", lambda c: P(c).encode(c.image, contrast_limits=(500, 100)), V,
         ("contrast_limits",)),
    case("contrast-limits-text", lambda c: P(c).encode(c.image, contrast_limits=("a", "b")), V,
         ("contrast_limits",)),
    case("percentiles-reversed", lambda c: P(c).encode(c.image, percentiles=(99, 1)), V, ("percentiles",)),
    case("percentiles-beyond-100", lambda c: P(c).encode(c.image, percentiles=(-5, 200)), V, ("percentiles",)),
    case("encode-views-3", lambda c: P(c).encode(c.image, views=3), V, ("views",)),
    # points and labels
    case("points-nan", lambda c: P(c).predict(points=[(NAN, 5)]), V, ("points", "NaN")),
    case("points-inf", lambda c: P(c).predict(points=[(5, INF)]), V, ("points",)),
    case("point-above-the-image", lambda c: P(c).predict(points=[(-5, 10)]), V, ("(-5, 10)", "outside")),
    case("point-right-of-the-image", lambda c: P(c).predict(points=[(10, 600)]), V, ("outside",)),
    case("points-three-numbers", lambda c: P(c).predict(points=[(1, 2, 3)]), V, ("points", "(N, 2)")),
    case("points-empty", lambda c: P(c).predict(points=[]), V, ("points",)),
    case("points-text", lambda c: P(c).predict(points=[("a", "b")]), V, ("points",)),
    case("labels-half", lambda c: P(c).predict(points=[(30, 30)], labels=[0.5]), V, ("labels", "0.5")),
    case("labels-0.9", lambda c: P(c).predict(points=[(30, 30)], labels=[0.9]), V, ("labels", "0.9")),
    case("labels-text", lambda c: P(c).predict(points=[(30, 30)], labels=["a"]), T, ("labels",)),
    case("labels-2", lambda c: P(c).predict(points=[(30, 30)], labels=[2]), V, ("labels",)),
    case("labels-nan", lambda c: P(c).predict(points=[(30, 30)], labels=[NAN]), V, ("labels",)),
    case("labels-count", lambda c: P(c).predict(points=[(30, 30)], labels=[1, 0]), V, ("labels", "per point")),
    case("labels-without-points", lambda c: P(c).predict(box=(5, 5, 40, 40), labels=[1]), V, ("labels", "points")),
    case("no-prompt", lambda c: P(c).predict(), V, ("points=", "box=")),
    # boxes
    case("box-inverted-columns", lambda c: P(c).predict(box=(10, 50, 40, 20)), V, ("box", "inverted")),
    case("box-inverted-rows", lambda c: P(c).predict(box=(40, 10, 10, 50)), V, ("box", "inverted")),
    case("box-zero-area", lambda c: P(c).predict(box=(10, 10, 10, 50)), V, ("box",)),
    case("box-nan", lambda c: P(c).predict(box=(10, NAN, 40, 40)), V, ("box",)),
    case("box-inf", lambda c: P(c).predict(box=(10, 10, INF, 40)), V, ("box",)),
    case("box-outside", lambda c: P(c).predict(box=(100, 100, 120, 120)), V, ("box", "outside")),
    case("box-three-numbers", lambda c: P(c).predict(box=(1, 2, 3)), V, ("box",)),
    # mask_input and mask_prompt
    case("mask-input-nan", lambda c: P(c).predict(points=[(30, 30)], mask_input=np.full((256, 256), NAN)), V,
         ("mask_input", "NaN")),
    case("mask-input-inf", lambda c: P(c).predict(mask_input=np.full((256, 256), INF)), V, ("mask_input",)),
    case("mask-input-full-size", lambda c: P(c).predict(points=[(3, 3)], mask_input=np.zeros((64, 64))), V,
         ("mask_input", "mask_prompt")),
    case("mask-prompt-shape", lambda c: P(c).mask_prompt(np.ones((10, 10), bool)), V, ("mask", "(10, 10)")),
    case("mask-prompt-nan", lambda c: P(c).mask_prompt(c.keep(np.full((64, 64), NAN))), V, ("mask", "0/1")),
    case("mask-prompt-probabilities", lambda c: P(c).mask_prompt(c.keep(np.full((64, 64), 0.3))), V, ("mask",)),
    case("embedding-not-an-embedding", lambda c: P(c).predict(points=[(3, 3)], embedding="emb"), T,
         ("ImageEmbedding",)),
    # several objects at once
    case("batch-no-boxes", lambda c: P(c).predict_batch(boxes=np.zeros((0, 4))), V, ("boxes", "B >= 1")),
    case("batch-only-padding", lambda c: P(c).predict_batch(points=[[(3, 3)]], labels=[[-1]]), V,
         ("padding", "object 0")),
    case("batch-box-nan", lambda c: P(c).predict_batch(boxes=[(1, 1, NAN, 9)]), V, ("box",)),
    case("batch-box-inverted", lambda c: P(c).predict_batch(boxes=[(1, 9, 9, 1)]), V, ("box", "inverted")),
    case("batch-points-three-numbers", lambda c: P(c).predict_batch(points=[[(1, 2, 3)]]), V, ("points",)),
    case("batch-labels-shape", lambda c: P(c).predict_batch(points=[[(3, 3)]], labels=[[1, 1]]), V, ("labels",)),
    case("batch-labels-half", lambda c: P(c).predict_batch(points=[[(3, 3)]], labels=[[0.5]]), V, ("labels",)),
    case("batch-mask-input-nan", lambda c: P(c).predict_batch(mask_input=np.full((1, 256, 256), NAN)), V,
         ("mask_input",)),
    case("batch-counts-differ", lambda c: P(c).predict_batch(boxes=[(1, 1, 9, 9)] * 2, points=[[(3, 3)]]), V,
         ("same number of objects",)),
    case("batch-no-prompt", lambda c: P(c).predict_batch(), V, ("boxes", "points")),
    # the zoom
    case("zoom-of-a-string", lambda c: ZoomPredictor("pred"), T, ("predictor",)),
    case("zoom-object-fraction-0", lambda c: ZoomPredictor(c.pred, object_fraction=0), V, ("object_fraction",)),
    case("zoom-contrast-unknown", lambda c: ZoomPredictor(c.pred, contrast="loud"), V, ("contrast",)),
    case("zoom-before-set-image", lambda c: ZoomPredictor(sg.Predictor(c.model)).predict(points=[(3, 3)]),
         RuntimeError, ("set_image",)),
    case("zoom-points-nan", lambda c: c.zoom.predict(points=[(NAN, 5)]), V, ("points",)),
    case("zoom-point-outside", lambda c: c.zoom.predict(points=[(-5, 10)]), V, ("outside",)),
    case("zoom-box-inverted", lambda c: c.zoom.predict(box=(10, 50, 40, 20)), V, ("box", "inverted")),
    case("zoom-labels-half", lambda c: c.zoom.predict(points=[(30, 30)], labels=[0.5]), V, ("labels",)),
    case("zoom-mask-input-nan", lambda c: c.zoom.predict(points=[(30, 30)], mask_input=np.full((256, 256), NAN)),
         V, ("mask_input",)),
    # loading models
    case("load-empty-string", lambda c: sg.load_model("", device="cpu"), V, ("empty", "registry name")),
    case("load-a-number", lambda c: sg.load_model(123, device="cpu"), T, ("123",)),
    case("load-unknown-name", lambda c: sg.load_model("vit_q", device="cpu"), V, ("'vit_q'", "vit_b")),
    case("load-missing-file", lambda c: sg.load_model(c.folder / "absent.pth", device="cpu"), V, ("absent.pth",)),
    case("load-a-folder", lambda c: sg.load_model(c.paths["folder_pth"], device="cpu"), V, ("a_folder.pth", "folder")),
    case("load-truncated", lambda c: sg.load_model(c.paths["trunc_pth"], device="cpu"), V, ("truncated.pth",)),
    case("load-random-bytes", lambda c: sg.load_model(c.paths["garbage_pth"], device="cpu"), V, ("garbage.pth",)),
    case("load-empty-file", lambda c: sg.load_model(c.paths["empty_pth"], device="cpu"), V, ("empty.pth",)),
    case("load-a-text-file", lambda c: sg.load_model(c.paths["text_png"], device="cpu"), V, ("notes.png",)),
    case("load-int64-weight", lambda c: sg.load_model(c.paths["int64_pth"], device="cpu"), V,
         ("iou_prediction_head.layers.0.weight", "int64")),
    case("load-nan-weight", lambda c: sg.load_model(c.paths["nan_pth"], device="cpu"), V,
         ("iou_prediction_head.layers.0.weight", "NaN")),
    case("load-missing-key", lambda c: sg.load_model(c.paths["missing_key_pth"], device="cpu"), V,
         ("iou_prediction_head.layers.0.weight", "missing")),
    case("load-pickle-running-code", lambda c: sg.load_model(c.paths["pickle_pth"], device="cpu"), V,
         ("payload.pth",)),
    case("load-device-tpu", lambda c: sg.load_model(c.model_path, device="tpu"), V, ("tpu",)),
    case("load-preprocess-unknown", lambda c: sg.load_model(c.model_path, device="cpu", preprocess="xx"), V,
         ("preprocess", "xx")),
    # the embedding store
    case("store-2d", lambda c: sg.EmbeddingStore(c.pred, c.image), V, ("volume", "3D")),
    case("store-5d", lambda c: sg.EmbeddingStore(c.pred, np.zeros((2, 2, 2, 16, 16))), V, ("volume",)),
    case("store-a-path", lambda c: sg.EmbeddingStore(c.pred, str(c.paths["vol"])), T, ("volume", "str")),
    case("store-axis-3", lambda c: c.store(axis=3), V, ("axis=3",)),
    case("store-contrast-nan", lambda c: c.store(contrast_limits=(NAN, 1)), V, ("contrast_limits",)),
    case("store-channel-of-3d", lambda c: c.store(channel=2), V, ("channel",)),
    case("store-get-2.0", lambda c: c.store().get(2.0), T, ("2.0", "whole number")),
    case("store-get-99", lambda c: c.store().get(99), IndexError, ("99", "4 slices")),
    # propagation
    case("propagate-2d", lambda c: sg.propagate(c.image, c.seed(), predictor=c.pred), V, ("2D image",)),
    case("propagate-iou-nan", lambda c: sg.propagate(c.volume, c.seed(), predictor=c.pred, iou_threshold=NAN), V,
         ("iou_threshold",)),
    case("propagate-iou-1.5", lambda c: sg.propagate(c.volume, c.seed(), predictor=c.pred, iou_threshold=1.5), V,
         ("iou_threshold",)),
    case("propagate-area-change-0.5", lambda c: sg.propagate(c.volume, c.seed(), predictor=c.pred,
                                                             area_change=0.5), V, ("area_change",)),
    case("propagate-area-change-nan", lambda c: sg.propagate(c.volume, c.seed(), predictor=c.pred,
                                                             area_change=NAN), V, ("area_change",)),
    case("propagate-min-area-negative", lambda c: sg.propagate(c.volume, c.seed(), predictor=c.pred, min_area=-5),
         V, ("min_area",)),
    case("propagate-max-distance-negative", lambda c: sg.propagate(c.volume, c.seed(), predictor=c.pred,
                                                                   max_distance=-1), V, ("max_distance",)),
    case("propagate-spacing-zero", lambda c: sg.propagate(c.volume, c.seed(), predictor=c.pred, spacing=(0, 1, 1)),
         V, ("spacing",)),
    case("propagate-spacing-two", lambda c: sg.propagate(c.volume, c.seed(), predictor=c.pred, spacing=(1, 1)), V,
         ("spacing",)),
    case("propagate-axis-3", lambda c: sg.propagate(c.volume, c.seed(), predictor=c.pred, axis=3), V, ("axis=3",)),
    case("propagate-seed-slice-9", lambda c: sg.propagate(c.volume, c.seed(9), predictor=c.pred), V, ("9",)),
    case("propagate-seed-empty", lambda c: sg.propagate(c.volume, {1: np.zeros((64, 64), bool)}, predictor=c.pred),
         V, ("empty",)),
    case("propagate-seed-shape", lambda c: sg.propagate(c.volume, {1: np.ones((8, 8), bool)}, predictor=c.pred), V,
         ("(8, 8)",)),
    case("propagate-prompt-unknown", lambda c: sg.propagate(c.volume, c.seed(), predictor=c.pred, prompt="lasso"),
         V, ("lasso",)),
    case("propagate-label-id-fraction", lambda c: sg.propagate(c.volume, c.seed(), predictor=c.pred, label_id=2.7),
         V, ("label_id", "2.7")),
    case("propagate-no-predictor", lambda c: sg.propagate(c.volume, c.seed()), V, ("predictor=",)),
    case("propagate-float-labels", lambda c: sg.propagate(c.volume, predictor=c.pred, labels=np.ones((4, 64, 64))),
         T, ("labels",)),
    case("propagate-seeds-a-list", lambda c: sg.propagate(c.volume, [np.ones((64, 64), bool)], predictor=c.pred),
         T, ("seed_masks",)),
    # files
    case("read-missing", lambda c: files.read_image(c.folder / "missing.tif"), FileNotFoundError, ("missing.tif",)),
    case("read-text-as-tif", lambda c: files.read_image(c.paths["text_tif"]), V, ("notes.tif",)),
    case("read-text-as-png", lambda c: files.read_image(c.paths["text_png"]), V, ("notes.png",)),
    case("read-a-folder", lambda c: files.read_image(c.folder), FileNotFoundError, ("bad-api-inputs",)),
    case("read-empty-file", lambda c: files.read_image(c.paths["empty_tif"]), V, ("empty.tif",)),
    case("write-parent-is-a-file", lambda c: files.write_labels(c.paths["a_file"] / "out.tif", c.image), OSError,
         ("a_file", "not a folder")),
    case("write-onto-a-folder", lambda c: files.write_labels(c.paths["folder_tif"], c.image), OSError,
         ("a_folder.tif", "folder")),
    case("write-png-name", lambda c: files.write_labels(c.out / "labels.png", c.image), V, (".png", ".tif")),
    case("write-a-list", lambda c: files.write_labels(c.out / "labels.tif", [[1, 2]]), T, ("labels", "list")),
    case("write-float-labels", lambda c: files.write_labels(c.out / "labels.tif", np.ones((4, 4))), T,
         ("labels", "float64")),
    # committing masks into labels
    case("commit-int8-all-minus-1", lambda c: lab.commit_mask(c.keep(np.full((8, 8), -1, np.int8)),
                                                              np.ones((8, 8), bool)), V, ("labels", "negative")),
    case("commit-label-id-fraction", lambda c: lab.commit_mask(c.keep(np.zeros((8, 8), np.uint16)),
                                                               np.ones((8, 8), bool), 2.7), V, ("label_id", "2.7")),
    case("commit-label-id-0", lambda c: lab.commit_mask(c.keep(np.zeros((8, 8), np.uint16)), np.ones((8, 8), bool),
                                                        0), V, ("label_id", "background")),
    case("commit-label-id-negative", lambda c: lab.commit_mask(c.keep(np.zeros((8, 8), np.int16)),
                                                               np.ones((8, 8), bool), -3), V, ("label_id",)),
    case("commit-label-id-too-big", lambda c: lab.commit_mask(c.keep(np.zeros((8, 8), np.uint8)),
                                                              np.ones((8, 8), bool), 300), V, ("300", "uint8")),
    case("commit-label-id-true", lambda c: lab.commit_mask(c.keep(np.zeros((8, 8), np.uint8)),
                                                           np.ones((8, 8), bool), True), V, ("label_id",)),
    case("commit-mask-nan", lambda c: lab.commit_mask(c.keep(np.zeros((8, 8), np.uint8)), np.full((8, 8), NAN)), V,
         ("mask", "0/1")),
    case("commit-mask-shape", lambda c: lab.commit_mask(c.keep(np.zeros((8, 8), np.uint8)), np.ones((4, 4), bool)),
         V, ("(4, 4)", "(8, 8)")),
    case("commit-mask-text", lambda c: lab.commit_mask(c.keep(np.zeros((2, 2), np.uint8)), np.full((2, 2), "x")), T,
         ("mask",)),
    case("commit-float-labels", lambda c: lab.commit_mask(c.keep(np.zeros((8, 8))), np.ones((8, 8), bool)), T,
         ("labels", "float64")),
    case("commit-labels-a-list", lambda c: lab.commit_mask([[0, 0]], np.ones((1, 2), bool)), T, ("labels", "list")),
    case("commit-full-uint8", lambda c: lab.commit_mask(c.keep(np.full((2, 2), 255, np.uint8)), np.ones((2, 2), bool)),
         V, ("uint8", "full")),
]


@pytest.mark.parametrize("call, error, names", API)
def test_bad_api_input_is_refused(env, tmp_path, call, error, names):
    ctx = Ctx(env, tmp_path)
    current = env.pred.embedding
    before = snapshot(env.folder, tmp_path, env.model_path)
    with pytest.raises(error) as info:
        call(ctx)
    assert_sentence(str(info.value), *names)
    assert_unchanged(before, snapshot(env.folder, tmp_path, env.model_path))
    assert not (env.folder / "ran-code.txt").exists() and not os.path.exists("ran-code.txt")
    for array, copy in ctx.kept:
        np.testing.assert_array_equal(array, copy)
    assert env.pred.embedding is current


def test_a_cache_folder_that_is_a_file_falls_back_to_memory_with_a_warning(env):
    """Not an error (issue 27 item 4): one warning naming the path, the embeddings kept in memory,
    and the file untouched."""
    before = snapshot(env.folder)
    with pytest.warns(RuntimeWarning, match="a_file"):
        store = sg.EmbeddingStore(env.pred, env.volume, cache_dir=env.paths["a_file"], prefetch=0)
    assert store.cache_path is None
    assert_unchanged(before, snapshot(env.folder))


def test_write_labels_through_a_symlink_keeps_the_link(env, tmp_path):
    """A labels file reached through a link is written where the link points; the link stays."""
    target = tmp_path / "labels.tif"
    target.write_bytes(b"old")
    link = tmp_path / "link.tif"
    link.symlink_to(target)
    files.write_labels(link, np.ones((4, 4), np.uint8))
    assert link.is_symlink() and files.read_image(target).sum() == 16

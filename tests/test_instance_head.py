"""Head mode of automatic segmentation: a model's instance head says where objects are, each is
asked of the decoder once. Checked on the real nuclei: the maps' targets and seeds, the file
format, the pipeline with a head whose maps are the truth's, and the included model's own head."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import napari_segany as sg
from napari_segany.auto.grid import GridSettings
from napari_segany.auto.head import head_prompts
from napari_segany.engine.instance_head import (HEAD_PREFIX, InstanceHead, build_instance_head, head_seeds,
                                                head_targets, seed_matches)
from napari_segany.engine.low_res import LowResFrame, label_grid
from napari_segany.engine.preprocess import Geometry
from napari_segany.sample_data import load_sample

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from automatic_metrics import match  # noqa: E402


def _grid(labels: np.ndarray) -> np.ndarray:
    """The labels on the included model's 128 x 128 grid, as it sees an image of their size."""
    return label_grid(labels, LowResFrame(Geometry.for_image(labels.shape, 512, max_upscale=3.0), 128))


def test_targets_and_seeds_of_the_real_nuclei_find_each_nucleus():
    """The depth targets of the 125 annotated nuclei, sampled on the included model's 128 x 128
    grid, have one core per nucleus (a few lobed ones two) and no core shared by two nuclei,
    touching ones included; depth is 1 at a core, 0 on the background and in the frame's padding."""
    labels = load_sample("nuclei2d_labels")
    grid = _grid(labels)
    fg, depth, valid = head_targets(grid)
    assert valid.all() and set(np.unique(fg)) == {0.0, 1.0}
    assert depth[fg == 0].max() == 0 and depth.max() == 1.0
    seeds = head_seeds(fg, depth, valid > 0)
    ids = [int(i) for i in np.unique(grid) if i > 0]
    assert len(ids) == 125
    seeds_per = [len(np.unique(seeds[(grid == i) & (seeds > 0)])) for i in ids]
    assert min(seeds_per) == 1 and sum(s == 1 for s in seeds_per) >= 120
    assert all(len(np.unique(grid[seeds == k])) == 1 for k in range(1, seeds.max() + 1))
    found, objects, n_seeds = seed_matches(seeds, grid)
    assert objects == 125 and n_seeds == seeds.max() and found == sum(s == 1 for s in seeds_per)

    padded = _grid(labels[:, :256])  # the image fills half the frame
    assert (padded[:, 64:] == -1).all() and (head_targets(padded)[2][:, 64:] == 0).all()


class _TruthHead(nn.Module):
    """A stand-in head that answers the truth's maps whatever the embedding (for the pipeline test)."""

    def __init__(self, fg: np.ndarray, depth: np.ndarray):
        super().__init__()
        prob = np.stack([fg, depth]).clip(1e-4, 1 - 1e-4)
        self.register_buffer("logits", torch.from_numpy(np.log(prob / (1 - prob))).float())

    def forward(self, features):
        return self.logits[None].expand(len(features), -1, -1, -1)


def test_head_mode_with_the_truths_maps_finds_the_real_nuclei_with_few_decoder_calls(shipped_model, nuclei2d):
    """The pipeline after the head (seeds, watershed, a box per object, the decoder's
    judgement, painting) on the real 512 x 512 nuclei, fed the truth's maps: most nuclei
    found, asking the decoder once per seed instead of once per grid point."""
    image, truth = nuclei2d
    pred = sg.Predictor(shipped_model, precision="fp32")
    emb = pred.encode(image, views=1)
    fg, depth, _ = head_targets(_grid(truth))
    calls = []
    original = pred.predict_batch

    def counting(*args, **kwargs):
        calls.append(len(kwargs["boxes"]))
        return original(*args, **kwargs)

    pred.predict_batch = counting
    own = shipped_model.instance_head
    try:
        shipped_model.instance_head = _TruthHead(fg, depth)
        points, boxes, _ = head_prompts(pred, emb)
        assert 125 <= len(points) <= 130
        assert (boxes[:, 2:] >= points).all() and (boxes[:, :2] <= points).all()
        found = sg.segment_everything(pred, embedding=emb, settings=GridSettings(mode="head"))
    finally:
        shipped_model.instance_head = own
        del pred.predict_batch
    assert sum(calls) == len(points)
    m = match(truth, found.labels)
    # measured: 100 of 125 at IoU >= 0.5, 1 false; the misses are touching nuclei whose boxes the
    # decoder answers with both or with a part (its ceiling at the whole image's scale)
    assert m["recall"] >= 0.75 and m["precision"] >= 0.9 and m["f1"] >= 0.83, m
    assert m["mean_iou_matched"] >= 0.75, m


def test_the_included_models_head_beats_its_default_grid_on_the_real_nuclei(shipped_model, nuclei2d):
    """The included model's own head, trained on generated scenes only: on the real nuclei, the
    default mode is head mode, finds more nuclei than the default grid with as few false ones, and
    asks the decoder fewer times."""
    image, truth = nuclei2d
    pred = sg.Predictor(shipped_model, precision="fp32")
    emb = pred.encode(image, views=1)
    assert GridSettings().uses_head(shipped_model) and GridSettings(mode="head").uses_head(shipped_model)
    # a grid density asked for means the grid, unless head mode is asked for by name
    assert not GridSettings(points_per_side=16).uses_head(shipped_model)
    assert not GridSettings(object_size=10).uses_head(shipped_model)
    assert not GridSettings(mode="grid").uses_head(shipped_model)
    head = sg.segment_everything(pred, embedding=emb)
    grid = sg.segment_everything(pred, embedding=emb, settings=GridSettings(mode="grid"))
    mh, mg = match(truth, head.labels), match(truth, grid.labels)
    # measured (bf16, 2026-12-07): head F1 0.78 (86 of 125), default grid 0.61 (62)
    assert mh["f1"] >= mg["f1"] + 0.1 and mh["precision"] >= 0.85 and mh["tp"] >= 80, (mh, mg)
    assert len(head_prompts(pred, emb)[0]) < 16 * 16 / 2


def test_a_head_travels_in_our_checkpoint_and_is_checked(tmp_path, tiny_model):
    """A head's weights and settings saved in our format load with the model and give the same
    maps; settings that do not fit are refused with a sentence."""
    from napari_segany.weights.load import load_model

    torch.manual_seed(0)
    head = InstanceHead(in_channels=256, width=32).eval()
    state = {k: v for k, v in tiny_model.state_dict().items()}
    state.update({HEAD_PREFIX + k: v.half() for k, v in head.state_dict().items()})
    path = tmp_path / "with_head.pt"
    torch.save({"model": state, "config": {"arch": "vit_t", "image_size": 1024, "name": "headed",
                                           "instance_head": head.config}}, path)
    loaded = load_model(path, device="cpu")
    assert isinstance(loaded.instance_head, InstanceHead) and loaded.instance_head.width == 32
    x = torch.randn(1, 256, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.instance_head(x), head.half().float()(x), atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="instance head settings"):
        build_instance_head({"in_channels": 256, "width": 30, "maps": ["foreground", "depth"]})
    with pytest.raises(ValueError, match="instance head settings"):
        build_instance_head({"in_channels": 256, "width": 32, "maps": ["foreground"]})
    torch.save({"model": state, "config": {"arch": "vit_t", "image_size": 1024, "name": "headed"}}, path)
    with pytest.raises(ValueError, match="no instance_head settings"):
        load_model(path, device="cpu")


def test_head_mode_needs_a_head_and_auto_falls_back_to_the_grid(tiny_model, nuclei2d):
    """``mode="head"`` on a model without a head is refused with what to do; ``"auto"`` uses the
    grid then (same objects as ``"grid"``); an unknown mode is refused."""
    image = nuclei2d[0][:128, :128]
    pred = sg.Predictor(tiny_model, precision="fp32")
    emb = pred.encode(image, views=1)
    with pytest.raises(ValueError, match="no instance head.*mode='grid'"):
        sg.segment_everything(pred, embedding=emb, settings=GridSettings(mode="head"))
    with pytest.raises(ValueError, match="mode must be"):
        GridSettings(mode="heads")
    auto = sg.segment_everything(pred, embedding=emb, settings=GridSettings(points_per_side=4))
    grid = sg.segment_everything(pred, embedding=emb, settings=GridSettings(points_per_side=4, mode="grid"))
    np.testing.assert_array_equal(auto.labels, grid.labels)


def test_frame_of_a_padded_image():
    """The low-res frame of an image smaller than the model's frame covers only the image's cells."""
    frame = LowResFrame(Geometry.for_image((100, 50), 512, max_upscale=3.0), 128)
    assert (frame.rows, frame.cols) == (75, 38)
    assert frame.to_image == pytest.approx((100 / 75, 50 / 37.5), rel=0.02)

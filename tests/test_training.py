"""Fast checks of the training groundwork (generator, prompts, losses, smoke training, evaluation rules)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training import baseline  # noqa: E402
from training.losses import bce_loss, dice_loss, focal_loss, sam_loss  # noqa: E402
from training.prompts import (  # noqa: E402
    centre_correction, farthest_interior_point, jittered_box, random_point, tight_box,
)
from training.synth import KINDS, NUCLEUS_DIAMETER, generate  # noqa: E402
from scipy.ndimage import binary_dilation  # noqa: E402
from scipy.ndimage import label as ndi_label  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def few_calibration_images(monkeypatch):
    """BatchNorm's statistics measured on 4 rendered images, not 32: the runs here test what the
    commands write, and the 32 encoder passes were most of each run's time."""
    import training.train

    monkeypatch.setattr(training.train, "CALIBRATION_IMAGES", 4)


@pytest.mark.parametrize("kind", KINDS)
def test_generator_is_deterministic_and_masks_are_exact(kind):
    a, b = generate(7, (128, 160), kind), generate(7, (128, 160), kind)
    assert a.image.dtype == b.image.dtype and np.array_equal(a.image, b.image)
    assert np.array_equal(a.masks, b.masks) and len(a.masks) > 0
    assert a.masks.shape[1:] == a.image.shape == (128, 160)
    clean = generate(7, (128, 160), kind, noise=False)
    assert np.array_equal(clean.masks, a.masks)  # noise changes the image only
    fg = clean.clean
    union = a.masks.any(0)
    if kind == "nuclei":  # the signal is exactly the union of the objects' supports
        assert np.array_equal(fg > 0, union)
    elif kind == "cells":  # membranes are drawn inside their cell's mask
        assert not (fg[~union] > 0).any()
    for i, p in enumerate(a.parents):  # nested objects lie inside their parent
        if p >= 0:
            assert not (a.masks[i] & ~a.masks[p]).any()
    lab = a.labels()
    assert lab.max() <= len(a.masks) and set(np.unique(lab)) - {0} <= set(range(1, len(a.masks) + 1))


def test_nucleus_diameter_range_sets_the_size_of_generated_nuclei():
    def median_diameter(seed, diameter):
        s = generate(seed, (256, 256), "nuclei", nucleus_diameter=diameter)
        return float(np.median(2 * np.sqrt(s.masks.sum((1, 2)) / np.pi)))

    # per scene the size is scaled by e^(+-0.3), per object by e^N(0, 0.25); wobble and edges add a little
    small = [median_diameter(i, (4.0, 4.0)) for i in range(3)]
    large = [median_diameter(i, (40.0, 40.0)) for i in range(3)]
    assert all(2.5 < d < 7 for d in small), small
    assert all(25 < d < 60 for d in large), large


def test_brightness_options_widen_the_spread_and_leave_default_scenes_unchanged():
    def log_brightness(s):  # per nucleus: median of the clean signal where it lies alone
        alone = s.masks.sum(0) == 1
        return np.array([np.log(np.median(s.clean[m & alone])) for m in s.masks if (m & alone).sum() > 4])

    # equal ends draw nothing: the scenes the shipped model was trained on are drawn exactly as before
    for seed in range(3):
        a = generate(seed, (256, 256), "nuclei")
        b = generate(seed, (256, 256), "nuclei", brightness_sigma=(0.35, 0.35), bright_fraction=0.0)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    # texture is shared by a scene's nuclei, so the spread of their log brightness follows sigma
    narrow = [log_brightness(generate(i, (256, 256), "nuclei", nucleus_diameter=(20, 20),
                                      brightness_sigma=(0.05, 0.05))).std() for i in range(4)]
    wide = [log_brightness(generate(i, (256, 256), "nuclei", nucleus_diameter=(20, 20),
                                    brightness_sigma=(0.8, 0.8))).std() for i in range(4)]
    assert max(narrow) < 0.3 < min(wide), (narrow, wide)
    # condensed nuclei: a scene with them has outliers far above its median nucleus
    tops = [np.ptp(log_brightness(generate(i, (256, 256), "nuclei", nucleus_diameter=(20, 20),
                                           brightness_sigma=(0.05, 0.05), bright_fraction=0.5))) for i in range(4)]
    assert max(tops) > np.log(2.5), tops


def test_packed_nuclei_share_boundaries_instead_of_overlapping():
    # packed=0 draws nothing: the scenes the shipped model was trained on are drawn exactly as before
    for seed in range(3):
        a, b = generate(seed, (256, 256), "nuclei"), generate(seed, (256, 256), "nuclei", packed=0.0)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    shared = overlapped = 0
    for seed in range(4):
        loose = generate(seed, (256, 256), "nuclei", nucleus_diameter=(30, 30))
        packed = generate(seed, (256, 256), "nuclei", nucleus_diameter=(30, 30), packed=1.0)
        overlapped += int((loose.masks.sum(0) > 1).sum())
        # a packed nucleus keeps only free pixels, in one piece, at least as large as the smallest drawn
        cover = packed.masks.sum(0)
        assert (cover > 1).sum() < 0.05 * (cover > 0).sum()
        for m in packed.masks:
            assert m.sum() >= 6 and ndi_label(m)[1] == 1
        # neighbours touch: a mask grown by one pixel meets another mask
        for i, m in enumerate(packed.masks):
            others = cover - m
            shared += int((binary_dilation(m) & ~m & (others > 0)).any())
        # the signal lies on the masks only (no nucleus spills past the mask it keeps)
        assert not packed.clean[cover == 0].any()
    assert overlapped > 500 and shared > 20, (overlapped, shared)


def test_sweep_plans_equal_cpu_cost_and_one_scale_for_all():
    from training.sweep import plan_steps

    spec = {"reference_steps": 6000, "variants": [{"name": "a", "cpu_cost": 1.0}, {"name": "b", "cpu_cost": 1.2}]}
    steps, scale = plan_steps(spec, {"a": 0.1, "b": 0.1}, budget_s=10_000)
    assert scale == 1.0 and steps == {"a": 6000, "b": 5000}
    steps, scale = plan_steps(spec, {"a": 0.1, "b": 0.2}, budget_s=500)  # b: 5000 x 0.2 s = 1000 s
    assert scale == 0.5 and steps == {"a": 3000, "b": 2500}


def test_score_calibration_summary():
    from training.evaluate import calibration

    pairs = np.array([[0.3, 0.2], [0.55, 0.5], [0.65, 0.7], [0.75, 0.8], [0.9, 0.95], [0.95, 0.9]])
    c = calibration(pairs)
    assert c["n"] == 6 and abs(c["predicted_mean"] - 4.1 / 6) < 1e-9 and c["correlation"] > 0.9
    assert c["by_predicted"]["0.8-1.0"] == {"n": 2, "true_iou": pytest.approx(0.925)}
    assert sum(b["n"] for b in c["by_predicted"].values()) == 6


def test_results_table_lists_real_and_synthetic_results_without_empty_rows():
    from training.evaluate import table

    syn = {"nuclei": {"n": 3, "click": 0.5, "box": 0.75}}
    only_syn = table({"model (m)": {"synthetic": syn}})
    assert "nan" not in only_syn and "| model (m) | nuclei | 3 | 0.500 | 0.750 |" in only_syn
    both = table({"model (m)": {"2d": {"click": 0.1, "box": 0.2, "after_clicks": [0.1, 0.3, 0.4, 0.5, 0.6]},
                                "3d": {"propagate": 0.7}, "synthetic": syn}})
    assert "| model (m) | 0.100 | 0.200 | 0.300 | 0.400 | 0.500 | 0.600 | 0.700 |" in both
    assert "| model (m) | nuclei |" in both


def test_prompts_points_and_boxes():
    rng = np.random.default_rng(0)
    mask = np.zeros((100, 120), bool)
    mask[20:50, 30:90] = True
    for _ in range(50):
        r, c = random_point(mask, rng)
        assert mask[r, c]
        b = jittered_box(mask, rng)
        assert b[2] > b[0] and b[3] > b[1]
        assert max(abs(v - t) for v, t in zip(b, tight_box(mask))) <= 20.0 + 1e-9
        assert 0 <= b[0] and b[2] <= 99 and 0 <= b[1] and b[3] <= 119
    assert tight_box(mask) == (20, 30, 49, 89)


def test_losses_small_for_perfect_prediction_and_gradients_flow():
    target = torch.zeros(2, 32, 32)
    target[:, 8:20, 8:20] = 1
    perfect = (target * 2 - 1)[:, None].repeat(1, 3, 1, 1) * 20
    assert float(focal_loss(perfect, target[:, None]).max()) < 1e-6
    assert float(dice_loss(perfect, target[:, None]).max()) < 1e-3
    logits = torch.zeros(2, 3, 32, 32, requires_grad=True)
    iou = torch.zeros(2, 3, requires_grad=True)
    loss, stats = sam_loss(logits, iou, target)
    loss.backward()
    assert logits.grad.abs().sum() > 0 and iou.grad is not None
    good, _ = sam_loss(perfect, torch.ones(2, 3), target)
    assert float(good) < 1e-3 < float(loss.detach())


def test_bce_on_soft_targets_is_lowest_at_the_covered_fraction():
    # a logit pixel that an object covers by a quarter is best predicted as probability 0.25, so the
    # boundary of the bilinearly upsampled, thresholded logits falls between the coarse pixels
    target = torch.full((1, 1, 4, 4), 0.25)
    grid = torch.linspace(-4, 4, 161)
    losses = torch.stack([bce_loss(torch.full((1, 1, 4, 4), float(v)), target)[0, 0] for v in grid])
    best = float(torch.sigmoid(grid[losses.argmin()]))
    assert abs(best - 0.25) < 0.02


def test_low_resolution_loss_uses_soft_targets_and_the_given_iou():
    target = torch.zeros(2, 32, 32)
    target[:, 8:21, 8:21] = 1
    soft = torch.nn.functional.avg_pool2d(target[:, None], 4)[:, 0]
    assert 0 < float(soft[0, 5, 3]) < 1  # a partly covered logit pixel
    logits = torch.zeros(2, 3, 8, 8, requires_grad=True)
    iou = torch.zeros(2, 3, requires_grad=True)
    given = torch.full((2, 3), 0.5)
    loss, stats = sam_loss(logits, iou, soft, focal_weight=0.0, bce_weight=1.0, actual_iou=given)
    loss.backward()
    assert torch.equal(stats["iou"], given) and logits.grad.abs().sum() > 0
    exact = torch.logit(soft.clamp(1e-4, 1 - 1e-4))[:, None].repeat(1, 3, 1, 1)
    good, _ = sam_loss(exact, given, soft, focal_weight=0.0, bce_weight=1.0, actual_iou=given)
    assert float(good) < float(loss.detach())


def test_smoke_training_saves_a_checkpoint_the_predictor_serves(tmp_path):
    from napari_segany import Predictor
    from napari_segany.weights.load import load_model
    from training.train import main

    out = tmp_path / "smoke.pt"
    assert main(["--out", str(out), "--steps", "3", "--threads", "1", "--objects", "4", "--iters", "2",
                 "--log-every", "1", "--loss-res", "low", "--bce-weight", "1", "--focal-weight", "0"]) == 0
    recipe = torch.load(out, map_location="cpu", weights_only=True)["config"]["training"]
    assert recipe["steps"] == 3 and recipe["nucleus_diameter"] == list(NUCLEUS_DIAMETER)
    assert recipe["loss_res"] == "low" and recipe["bce_weight"] == 1.0 and recipe["focal_weight"] == 0.0
    model = load_model(out, device="cpu")
    assert model.image_size == 512 and model.info.arch == "vit_t" and model.info.preprocess == "sam"
    pred = Predictor(model)
    pred.set_image(np.random.default_rng(0).integers(0, 4000, (96, 80)).astype(np.uint16))
    result = pred.predict(points=[(40, 30)])
    assert result.masks.shape == (3, 96, 80) and result.logits.shape == (3, 128, 128)


def test_bf16_training_keeps_fp32_weights_and_records_its_precision(tmp_path):
    from training.train import main

    out = tmp_path / "bf16.pt"
    assert main(["--out", str(out), "--steps", "2", "--threads", "1", "--objects", "4", "--iters", "2",
                 "--precision", "bf16"]) == 0
    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert saved["config"]["training"]["precision"] == "bf16"
    weights = [v for v in saved["model"].values() if v.is_floating_point()]
    assert {v.dtype for v in weights} == {torch.float32} and all(torch.isfinite(v).all() for v in weights)


def test_training_can_start_from_a_checkpoint_and_records_it(tmp_path):
    """--init (fine-tuning trials): the run starts from the file's model weights, its refiner is
    left out, and the recipe records where it started and the packed fraction."""
    from training.train import initial_weights, main

    common = ["--steps", "1", "--threads", "1", "--objects", "2", "--iters", "1", "--lr", "0"]
    first = tmp_path / "first.pt"
    assert main(["--out", str(first), *common]) == 0
    saved = torch.load(first, map_location="cpu", weights_only=True)
    saved["model"]["refiner.extra"] = torch.zeros(1)  # a part the SAM model does not have
    torch.save(saved, tmp_path / "with_part.pt")
    assert "refiner.extra" not in initial_weights(tmp_path / "with_part.pt")
    second = tmp_path / "second.pt"
    assert main(["--out", str(second), *common, "--init", str(tmp_path / "with_part.pt"), "--packed", "0.5"]) == 0
    again = torch.load(second, map_location="cpu", weights_only=True)
    assert again["config"]["training"]["init"].endswith("with_part.pt")
    assert again["config"]["training"]["packed"] == 0.5
    # lr 0: the weights are the starting ones (BatchNorm statistics are measured anew)
    weights = [k for k in saved["model"] if k.endswith(".weight") and k in again["model"]]
    assert weights and all(torch.equal(saved["model"][k], again["model"][k]) for k in weights)


def test_later_stages_draw_scenes_like_the_models_training(tmp_path):
    import argparse

    from training.stages import stage_scenes

    path = tmp_path / "m.pt"
    torch.save({"model": {}, "config": {"training": {"seed": 3, "packed": 0.3, "nucleus_diameter": [4.0, 90.0]}}}, path)
    assert stage_scenes(argparse.Namespace(model=path, packed=None)) == {"packed": 0.3, "nucleus_diameter": (4.0, 90.0)}
    assert stage_scenes(argparse.Namespace(model=path, packed=0.0))["packed"] == 0.0
    torch.save({"model": {}, "config": {}}, path)  # a file that records no training: the generator's defaults
    assert stage_scenes(argparse.Namespace(model=path, packed=None)) == {}


def test_weight_average_follows_its_formula():
    from training.ema import WeightAverage

    net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    average = WeightAverage(net, decay=0.5)
    expected = 0.0
    for n, value in enumerate((1.0, 2.0, 4.0)):
        with torch.no_grad():
            net.weight.fill_(value)
        average.update()
        d = min(0.5, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * value
    copy = average.averaged_model(net)
    assert torch.allclose(copy.weight, torch.full((1, 2), expected)) and float(net.weight[0, 0]) == 4.0


def test_training_with_a_weight_average_trains_the_same_weights(tmp_path):
    """--ema only adds a file: the trained weights are bit for bit those of a run without it
    (which also checks that a run is reproducible), and the average gets its own BatchNorm statistics."""
    from napari_segany.weights.load import load_model
    from training.train import main

    common = ["--steps", "3", "--threads", "1", "--objects", "4", "--iters", "2"]
    assert main(["--out", str(tmp_path / "plain.pt"), *common]) == 0
    assert main(["--out", str(tmp_path / "avg.pt"), *common, "--ema", "0.9"]) == 0
    plain, trained, averaged = (torch.load(tmp_path / f, map_location="cpu", weights_only=True)
                                for f in ("plain.pt", "avg.pt", "avg.ema.pt"))
    for k, v in plain["model"].items():
        assert torch.equal(v, trained["model"][k]), k
    assert averaged["config"]["training"]["ema"] == 0.9 and averaged["config"]["training"]["steps"] == 3
    moved = [k for k, v in trained["model"].items() if k.endswith("weight") and not torch.equal(v, averaged["model"][k])]
    assert len(moved) > 50  # the average is not the last weights
    stats = [k for k in trained["model"] if k.endswith("running_mean")]
    assert stats and any(not torch.equal(trained["model"][k], averaged["model"][k]) for k in stats)
    assert load_model(tmp_path / "avg.ema.pt", device="cpu").info.arch == "vit_t"


def test_crop_encoder_matches_full_forward():
    from napari_segany.model import build_sam
    from training.train import encode

    model = build_sam("vit_t", 128).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(encode(model.image_encoder, x), model.image_encoder(x))


def test_encoder_windows_line_up_with_tinyvit_attention_windows():
    from napari_segany.model import build_sam
    from napari_segany.model.tiny_vit import TinyViTBlock
    from napari_segany.engine.preprocess import Geometry
    from training.train import WINDOW_ALIGN, pick_window, window_segments

    model = build_sam("vit_t", 512).eval()
    strides = {}
    hooks = [b.register_forward_pre_hook(lambda m, a: strides.__setitem__(m, 512 // a[0].shape[1]))
             for b in model.image_encoder.modules() if isinstance(b, TinyViTBlock)]
    with torch.no_grad():
        model.image_encoder(torch.zeros(1, 3, 512, 512))
    for h in hooks:
        h.remove()
    assert len(strides) == 10  # every attention block of TinyViT-5M
    # every stage's attention windows tile the frame at multiples of WINDOW_ALIGN pixels
    assert all(WINDOW_ALIGN % (b.window_size * s) == 0 for b, s in strides.items())
    assert window_segments(512) == [(0, 224), (224, 512)]
    assert window_segments(1024)[-1] == (672, 1024) and window_segments(200) == [(0, 200)]
    rng = np.random.default_rng(0)
    tall = Geometry.for_image((512, 200), 512)  # image on the left 200 columns of the frame
    for _ in range(20):
        top, left, h, w = pick_window(rng, tall)
        assert (top, top + h) in window_segments(512) and (left, left + w) == (0, 224)


def test_evaluation_geometry_on_real_labels(nuclei2d):
    image, labels = nuclei2d
    ids = [i for i in np.unique(labels) if i][:25]
    for i in ids:
        gt = labels == i
        r, c = farthest_interior_point(gt)
        assert gt[r, c]
        pred = np.roll(gt, 3, axis=1)  # a shifted prediction: misses on the left, extra on the right
        rr, cc, lab = centre_correction(pred, gt)
        assert (gt[rr, cc] and not pred[rr, cc] and lab == 1) or (pred[rr, cc] and not gt[rr, cc] and lab == 0)
    assert centre_correction(gt, gt) is None


def test_baseline_answers_prompts_on_real_data(nuclei2d):
    image, labels = nuclei2d
    smooth = baseline.prepare(image)
    i = [i for i in np.unique(labels) if i][0]
    gt = labels == i
    point = farthest_interior_point(gt)
    for mask in (baseline.segment_click(smooth, point), baseline.segment_box(smooth, tight_box(gt)),
                 baseline.segment_clicks(smooth, [point], [1])):
        assert mask.shape == gt.shape and mask.dtype == bool and mask[point]


def test_two_stage_training_exports_a_model_with_its_refiner(tmp_path, capsys):
    """``training.train --export F --refiner``: the model, then its boundary refiner trained on the
    exported model's own answers and added to F; the refiner's loss falls below the unrefined one
    (their means over the 20 steps on the 24 objects of 2 scenes; measured 1.35 against 1.68)."""
    from napari_segany.engine.refine import MaskRefiner
    from napari_segany.weights.load import load_model
    from training.train import main

    out, shipped = tmp_path / "smoke.pt", tmp_path / "shipped.pt"
    assert main(["--out", str(out), "--steps", "2", "--threads", "1", "--objects", "4", "--iters", "2",
                 "--export", str(shipped), "--refiner", "--refiner-scenes", "2", "--refiner-steps", "20"]) == 0
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"step": 20,')]
    assert logs and logs[-1]["loss"] < logs[-1]["unrefined"]
    config = torch.load(shipped, map_location="cpu", weights_only=True)["config"]
    assert config["refiner"]["training"]["scenes"] == 2 and config["refiner"]["training"]["steps"] == 20
    model = load_model(shipped, device="cpu")
    assert isinstance(model.refiner, MaskRefiner) and model.refiner.dilations == (2, 4, 8)


def test_refiner_windows_are_batched_without_the_padding_counting():
    """The refiner's training batch: crops smaller than a window are zero-padded, and a padded
    window's loss is the loss of the crop itself; larger crops give a full window of their own."""
    import torch

    from training.refiner import WINDOW, refiner_loss, window_batch

    rng = np.random.default_rng(0)
    small = tuple(rng.random((40, 70)).astype(np.float32) for _ in range(4))
    small = (small[0], small[1] > 0.5, rng.standard_normal((40, 70)).astype(np.float32), small[3] > 0.3)
    large = tuple(a.repeat(3, 0).repeat(2, 1) for a in small)  # 120 x 140
    scaled, band, logits, mask, valid = window_batch([small, large], np.random.default_rng(1), 8)
    assert scaled.shape == (8, 1, WINDOW, WINDOW)
    for b in range(8):
        if valid[b].sum() == 40 * 70:  # the small crop, whole, in the top-left corner
            assert torch.equal(logits[b, 0, :40, :70], torch.from_numpy(small[2]))
            assert not logits[b, 0, 40:].any() and not mask[b, 0, :, 70:].any()
            alone = refiner_loss(torch.from_numpy(small[2])[None, None],
                                 torch.from_numpy(small[3].astype(np.float32))[None, None], torch.ones(1, 1, 40, 70))
            torch.testing.assert_close(refiner_loss(logits[b:b + 1], mask[b:b + 1], valid[b:b + 1]), alone)
        else:
            assert valid[b].all()  # a window inside the large crop
    assert {int(v.sum()) for v in valid} == {40 * 70, WINDOW * WINDOW}


def _random_model_file(folder):
    """(a vit_t model at 512 px with seeded random weights, its file in our format, named "smoke")."""
    from napari_segany.cli.benchmark import randomise_weights
    from napari_segany.model import build_sam

    model = build_sam("vit_t", 512)
    randomise_weights(model, seed=0)
    path = folder / "model.pt"
    torch.save({"model": model.state_dict(), "config": {"arch": "vit_t", "image_size": 512, "name": "smoke"}}, path)
    return model, path


def test_third_stage_exports_the_model_with_its_candidate_scorer(tmp_path, capsys):
    """``training.scorer``: clicks on generated scenes answered by the model as served, the
    scorer trained on their candidates and added to a copy of the model's file, which loads."""
    from napari_segany.engine.scoring import CandidateScorer
    from napari_segany.weights.load import load_model
    from training.scorer import main

    _, source = _random_model_file(tmp_path)
    scored = tmp_path / "scored.pt"
    assert main(["--model", str(source), "--export", str(scored), "--scenes", "1", "--steps", "2",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert '"step": 2' in out and "clicks from 1 scenes" in out
    config = torch.load(scored, map_location="cpu", weights_only=True)["config"]
    assert config["name"] == "smoke" and config["scorer"]["training"]["steps"] == 2
    loaded = load_model(scored, device="cpu")
    assert isinstance(loaded.scorer, CandidateScorer) and loaded.refiner is None


def test_instance_head_stage_exports_the_model_with_its_head(tmp_path, capsys):
    """``training.instance_head``: embeddings of generated scenes made by the frozen model, the
    head trained on their outermost objects and added to a copy of the model's file, which loads
    with the head and with the rest of the file unchanged."""
    from napari_segany.engine.instance_head import InstanceHead
    from napari_segany.weights.load import load_model
    from training.instance_head import main

    model, source = _random_model_file(tmp_path)
    headed = tmp_path / "headed.pt"
    assert main(["--model", str(source), "--export", str(headed), "--scenes", "4", "--steps", "2",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert '"step": 2' in out and "4 scenes encoded" in out and '"held_out"' in out
    config = torch.load(headed, map_location="cpu", weights_only=True)["config"]
    assert config["instance_head"]["training"]["steps"] == 2 and "recall" in config["instance_head"]["training"]["held_out"]
    loaded = load_model(headed, device="cpu")
    assert isinstance(loaded.instance_head, InstanceHead) and loaded.refiner is None
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_validation_numbers_are_means_over_generated_scenes(tmp_path):
    """``training.validate`` on one scene of each kind: every number is a mean IoU in [0, 1] and
    the summaries are the means they say they are. The model is a random vit_t with a 256 px frame:
    cheap to answer with, and small objects of the 512 px scenes are served on zoomed crops (with
    SAM's 1024 px frame no crop was ever made, and the run took more than twice as long)."""
    from reference_models import save_fast_vit_t

    from napari_segany import Predictor
    from napari_segany.weights.load import load_model
    from training.evaluate import ModelMethod
    from training.validate import validate

    model = load_model(save_fast_vit_t(tmp_path / "fast.pt"), device="cpu")
    out = validate(ModelMethod(Predictor(model), zoom=True), scenes=3)
    numbers = [out[k][p] for k in KINDS for p in ("click", "box", "corrections")]
    assert all(0.0 <= v <= 1.0 for v in numbers)
    assert out["mean6"] == pytest.approx(np.mean([out[k][p] for k in KINDS for p in ("click", "box")]))
    assert out["corrections"] == pytest.approx(np.mean([out[k]["corrections"] for k in KINDS]))


def test_validate_command_serves_the_views_it_is_given(tiny_model_path, capsys):
    """``python -m training.validate --views 2`` encodes every scene and crop in 2 mirrored views,
    and prints the numbers as one JSON line."""
    import json

    from napari_segany import Predictor
    from training import validate as command

    seen = []
    encode = Predictor.encode

    def counting(self, image, **kwargs):
        embedding = encode(self, image, **kwargs)
        seen.append(1 + len(embedding.views))
        return embedding

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Predictor, "encode", counting)
        assert command.main(["--model", str(tiny_model_path), "--kind", "nuclei", "--scenes", "1", "--views", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"nuclei", "mean", "corrections"} and 0.0 <= out["mean"] <= 1.0
    assert seen and set(seen) == {2}
    with pytest.raises(SystemExit):
        command.main(["--model", str(tiny_model_path), "--views", "3"])

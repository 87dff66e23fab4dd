"""Train a model's boundary refiner (:mod:`napari_segany.engine.refine`) after the model itself.

    python -m training.refiner --model src/napari_segany/_models/segany_vit_t_512.pt --seed 0 --threads 2 \\
        --export src/napari_segany/_models/segany_vit_t_512.pt

The model's own weights are frozen and used exactly as they are served: the
file is loaded by ``load_model`` (a refiner already in it is set aside) and
prompted through :class:`napari_segany.Predictor` (whole image, one view).

1. Data: ``--scenes`` generated scenes (:mod:`training.synth`; seeds
   ``[seed, 3_000_000 + i]``, which neither the model's training nor the
   held-out evaluation draws), at 512 x 512, 256 x 256 or another size like
   the model's training. For up to 12 objects per scene, one prompt (half a
   random point with the best-scored of the multimask candidates, half a
   jittered box), in 30 % of the cases followed by one correction click with
   the previous logits; the final logits are upscaled to the image and cut
   to the object's crop, with the refiner's inputs (:func:`napari_segany.engine.refine.net_inputs`)
   and the exact mask.
2. Training: ``--steps`` steps of AdamW (lr 2e-3, weight decay 1e-4, cosine to
   0), each on one batch of 16 random 96 x 96 windows of random crops (smaller
   crops whole, zero-padded, their padding left out of the loss); loss:
   cross-entropy + dice of the refined logits against the mask, per window.
3. The refiner's weights (float16) and settings are added to the model's file
   (``refiner.*`` keys, ``config["refiner"]``), written atomically to ``--export``.

Scenes, windows and initial weights depend only on ``--seed``, so the file is
reproducible with the same torch build and thread count.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from napari_segany import Predictor
from napari_segany.engine.preprocess import to_unit_range, upscale_logits
from napari_segany.engine.refine import (REFINER_PREFIX, MaskRefiner, guide_from_unit, logit_cell, net_inputs,
                                  object_crop)

from .prompts import jittered_box, random_point, sampled_correction
from .synth import generate, scene_shape
from .stages import finish_stage, stage_parser, stage_scenes, start_stage

SEED_OFFSET = 3_000_000
OBJECTS_PER_SCENE = 12
WINDOW = 96


def prompt_once(predictor: Predictor, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Low-res logits (h x w) of the final prompt round for one object."""
    if rng.random() < 0.5:
        pred = predictor.predict(box=jittered_box(target, rng), multimask=False)
    else:
        pred = predictor.predict(points=[random_point(target, rng)], multimask=True)
    if rng.random() < 0.3:
        click = sampled_correction(pred.mask(0), target, rng)
        if click is not None:
            pts, labs = [random_point(target, rng), click[:2]], [1, click[2]]
            pred = predictor.predict(points=pts, labels=labs, mask_input=pred.logits[0], multimask=False)
    return pred.logits[0]


def make_examples(predictor: Predictor, n_scenes: int, seed: int, scene: dict | None = None) -> list[tuple[np.ndarray, ...]]:
    """(scaled image, band, logits, mask) crops, one per prompted object; ``scene``: the
    generator's options (:func:`training.stages.stage_scenes`)."""
    examples = []
    t0 = time.perf_counter()
    for i in range(n_scenes):
        rng = np.random.default_rng([seed, SEED_OFFSET + i])
        sample = generate(rng, scene_shape(rng), **(scene or {}))
        emb = predictor.set_image(sample.image)
        guide = guide_from_unit(to_unit_range(sample.image[..., None], emb.window))
        cell = logit_cell(sample.image.shape, predictor.model.low_res_size)
        big = [k for k in rng.permutation(len(sample.masks)) if np.count_nonzero(sample.masks[k]) >= 12]
        for k in big[:OBJECTS_PER_SCENE]:
            target = sample.masks[k]
            low = prompt_once(predictor, target, rng)
            logits = upscale_logits(torch.from_numpy(low[None]), emb.geometry)[0].numpy()
            crop = object_crop(logits > 0)
            if crop is None:
                continue
            scaled, band = net_inputs(guide[crop], logits[crop], cell)
            examples.append((scaled, band, np.ascontiguousarray(logits[crop]), target[crop]))
        if (i + 1) % 100 == 0:
            print(f"scenes {i + 1}/{n_scenes}: {len(examples)} objects, {time.perf_counter() - t0:.0f} s", flush=True)
    return examples


def refiner_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + dice of each window (B x 1 x h x w), counted only where ``valid`` is 1; one
    value per window."""
    area = valid.sum((1, 2, 3))
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * valid).sum((1, 2, 3)) / area
    prob = torch.sigmoid(logits) * valid
    dice = 1 - (2 * (prob * target).sum((1, 2, 3)) + 1) / (prob.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return bce + dice


def window_batch(examples, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, ...]:
    """One random :data:`WINDOW`-square window of each of ``size`` random examples, as one batch
    (scaled image, band, logits, mask, valid; each size x 1 x WINDOW x WINDOW).

    Crops smaller than a window come whole, padded with zeros (as the net's own zero padding
    sees a crop's edge); ``valid`` marks their real pixels.
    """
    out = np.zeros((5, size, 1, WINDOW, WINDOW), np.float32)
    for b, j in enumerate(rng.integers(len(examples), size=size)):
        scaled, band, logits, mask = examples[j]
        h, w = logits.shape
        r0, c0 = int(rng.integers(0, max(h - WINDOW, 0) + 1)), int(rng.integers(0, max(w - WINDOW, 0) + 1))
        win = (slice(r0, r0 + WINDOW), slice(c0, c0 + WINDOW))
        for a, arr in enumerate((scaled, band, logits, mask)):
            part = arr[win]
            out[a, b, 0, :part.shape[0], :part.shape[1]] = part
        out[4, b, 0, :min(h, WINDOW), :min(w, WINDOW)] = 1
    return tuple(torch.from_numpy(a) for a in out)


def train_refiner(examples, steps: int, seed: int, lr: float = 2e-3, batch: int = 16, log=print) -> MaskRefiner:
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 1])
    net = MaskRefiner()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    recent = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        scaled, band, logits, mask, valid = window_batch(examples, rng, batch)
        loss = refiner_loss(net(scaled, band, logits), mask, valid).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        recent.append((float(loss.detach()), float(refiner_loss(logits, mask, valid).mean())))
        if (step + 1) % 100 == 0 or step + 1 == steps:
            after, unrefined = np.mean(recent, axis=0)
            log(json.dumps({"step": step + 1, "loss": round(float(after), 4), "unrefined": round(float(unrefined), 4)}))
            recent = []
    return net.eval()


def parse_args(argv=None) -> argparse.Namespace:
    return stage_parser("python -m training.refiner", __doc__.split("\n\n")[0], "refiner", 600, 2400).parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    model, started = start_stage(args, "refiner")  # the masks to refine are the model's own
    scene = stage_scenes(args)
    examples = make_examples(Predictor(model), args.scenes, args.seed, scene)
    print(f"{len(examples)} objects from {args.scenes} scenes in {time.perf_counter() - started:.0f} s", flush=True)
    net = train_refiner(examples, args.steps, args.seed, log=lambda line: print(line, flush=True))
    return finish_stage(args, net, REFINER_PREFIX, "refiner", started, {"objects": len(examples), "scene": scene})


if __name__ == "__main__":
    sys.exit(main())

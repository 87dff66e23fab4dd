"""Train a model's candidate scorer (:mod:`napari_segany.engine.scoring`) after the model and its refiner.

    python -m training.scorer --model src/napari_segany/_models/segany_vit_t_512.pt --seed 0 --threads 2 \\
        --export src/napari_segany/_models/segany_vit_t_512.pt

The model (with its boundary refiner) is frozen and served exactly as users
get a click answered by default: the file is loaded by ``load_model`` (a
scorer already in it is set aside) and prompted through
:class:`napari_segany.engine.zoom.ZoomPredictor` (one view).

1. Data: ``--scenes`` generated scenes (:mod:`training.synth`; seeds
   ``[seed, 4_000_000 + i]``, which neither the model's nor the refiner's
   training nor the held-out evaluation draws), sized like the model's
   training. Up to 12 objects of at least 12 px per scene, one click each
   (half at the interior point farthest from the boundary, half uniform in
   the mask), answered with the three candidates; each candidate's inputs
   (:func:`napari_segany.engine.scoring.scorer_inputs`) and its true IoU.
2. Training: ``--steps`` steps of AdamW (lr 2e-3, weight decay 1e-4, cosine
   to 0), each on the candidates of 32 random clicks, mirrored and
   transposed at random; loss: squared error of the predicted IoU plus 0.1 x
   the cross-entropy between the softmax of the three predictions and that of
   the true IoUs / 0.05 (which candidate is best matters more than the value).
3. The scorer's weights (float16) and settings are added to the model's file
   (``scorer.*`` keys, ``config["scorer"]``), written atomically to ``--export``.

Scenes, clicks, batches and initial weights depend only on ``--seed``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from napari_segany import Predictor
from napari_segany.engine.preprocess import to_unit_range
from napari_segany.engine.refine import guide_from_unit
from napari_segany.engine.scoring import SCORER_PREFIX, CandidateScorer, scorer_inputs
from napari_segany.engine.zoom import ZoomPredictor

from .evaluate import iou
from .prompts import farthest_interior_point, random_point
from .synth import generate, scene_shape
from .stages import cosine_steps, finish_stage, stage_parser, stage_scenes, start_stage

SEED_OFFSET = 4_000_000
OBJECTS_PER_SCENE = 12
CLICKS_PER_STEP = 32
LISTWISE_WEIGHT, LISTWISE_TEMPERATURE = 0.1, 0.05


def make_examples(zoom: ZoomPredictor, n_scenes: int, seed: int, log=print, scene: dict | None = None):
    """(images K x 5 x S x S float16, scalars K x 4, true IoUs K) per click, K = 3 candidates;
    ``scene``: the generator's options (:func:`training.stages.stage_scenes`)."""
    images, scalars, ious = [], [], []
    t0 = time.perf_counter()
    for i in range(n_scenes):
        rng = np.random.default_rng([seed, SEED_OFFSET + i])
        sample = generate(rng, scene_shape(rng), **(scene or {}))
        big = [k for k in rng.permutation(len(sample.masks)) if np.count_nonzero(sample.masks[k]) >= 12]
        embedding = zoom.set_image(sample.image)
        guide = guide_from_unit(to_unit_range(sample.image[..., None], embedding.window))  # what serving reads
        for k in big[:OBJECTS_PER_SCENE]:
            target = sample.masks[k]
            point = farthest_interior_point(target) if rng.random() < 0.5 else random_point(target, rng)
            pred = zoom.predict(points=[point], multimask=True)
            inputs = scorer_inputs(guide, pred.masks, pred.scores, point)
            if inputs is None or len(pred) < 3:
                continue
            images.append(inputs[0].half())
            scalars.append(inputs[1])
            ious.append(torch.tensor([iou(m, target) for m in pred.masks], dtype=torch.float32))
        if (i + 1) % 20 == 0:
            log(f"scenes {i + 1}/{n_scenes}: {len(ious)} clicks, {time.perf_counter() - t0:.0f} s")
    return torch.stack(images), torch.stack(scalars), torch.stack(ious)


def scorer_loss(predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """``predicted`` logits and ``true`` IoUs, both clicks x K: squared error of the IoU plus the
    listwise term (which candidate is best)."""
    mse = F.mse_loss(torch.sigmoid(predicted), true)
    listwise = -(torch.softmax(true / LISTWISE_TEMPERATURE, 1) * torch.log_softmax(predicted, 1)).sum(1).mean()
    return mse + LISTWISE_WEIGHT * listwise


def train_scorer(examples, steps: int, seed: int, lr: float = 2e-3, log=print) -> CandidateScorer:
    images, scalars, ious = examples
    n, k = ious.shape
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = CandidateScorer()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)

    def step_loss():
        idx = torch.randint(n, (CLICKS_PER_STEP,), generator=gen)
        x = images[idx].float().reshape(-1, *images.shape[2:])
        flips = torch.rand(3, generator=gen) < 0.5  # the scorer should not care about orientation
        x = x.flip(-1) if flips[0] else x
        x = x.flip(-2) if flips[1] else x
        x = x.transpose(-1, -2) if flips[2] else x
        predicted = net(x, scalars[idx].reshape(-1, scalars.shape[-1])).view(-1, k)
        return scorer_loss(predicted, ious[idx])

    return cosine_steps(net, opt, steps, lr, step_loss, log, every=250)


def parse_args(argv=None) -> argparse.Namespace:
    return stage_parser("python -m training.scorer", __doc__.split("\n\n")[0], "scorer", 240, 2000).parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    model, started = start_stage(args, "scorer")  # the candidates to score are in the decoder's order
    log = lambda line: print(line, flush=True)  # noqa: E731
    scene = stage_scenes(args)
    examples = make_examples(ZoomPredictor(Predictor(model)), args.scenes, args.seed, log=log, scene=scene)
    log(f"{len(examples[2])} clicks from {args.scenes} scenes in {time.perf_counter() - started:.0f} s")
    net = train_scorer(examples, args.steps, args.seed, log=log)
    return finish_stage(args, net, SCORER_PREFIX, "scorer", started, {"clicks": len(examples[2]), "scene": scene})


if __name__ == "__main__":
    sys.exit(main())

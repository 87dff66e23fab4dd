"""Train a model's instance head (:mod:`napari_segany.engine.instance_head`) after the model, its
refiner and its scorer.

    python -m training.instance_head --model src/napari_segany/_models/segany_vit_t_512.pt --seed 0 \\
        --threads 2 --export src/napari_segany/_models/segany_vit_t_512.pt

(1000 scenes and 1500 steps by default: 13 minutes on 2 CPU cores, 5 of them making the embeddings.)

The model is frozen; its image embeddings are made as users get them (``load_model``, a
:class:`napari_segany.Predictor` at its default precision, one view), once per scene.

1. Data: ``--scenes`` generated scenes (:mod:`training.synth`; seeds ``[seed, 5_000_000 + i]``,
   which no other stage nor the held-out evaluation draws), sized like the model's training,
   nuclei and cells (the kinds whose objects one would count; MRI-like scenes are left out). The
   targets are the outermost objects (a cell, not the nucleus inside it), painted in the
   generator's order, sampled at the centres of the decoder's low-res grid
   (:func:`~napari_segany.engine.low_res.label_grid`); the last tenth of the scenes is held
   out.
2. Training: ``--steps`` steps of AdamW (lr 2e-3, weight decay 1e-4, cosine to 0), 16 embeddings
   per step; loss: binary cross-entropy of the foreground plus that of the depth (soft targets),
   on the cells inside the image.
3. Reported on the held-out scenes: the maps' errors, and how many objects the seeds
   (:func:`napari_segany.engine.instance_head.head_seeds`) find one to one (recall, precision at one seed
   per object).
4. The head's weights (float16) and settings are added to the model's file (``instance_head.*``
   keys, ``config["instance_head"]``), written atomically to ``--export``.

Scenes, batches and initial weights depend only on ``--seed``.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from napari_segany import Predictor
from napari_segany.engine.instance_head import HEAD_PREFIX, InstanceHead, head_seeds, head_targets, seed_matches
from napari_segany.engine.low_res import LowResFrame, label_grid

from .stages import cosine_steps, finish_stage, stage_parser, stage_scenes, start_stage
from .synth import generate, scene_shape

SEED_OFFSET = 5_000_000
KINDS, KIND_SHARES = ("nuclei", "cells"), (0.7, 0.3)
PER_STEP = 16
HELD_OUT = 0.1


def outermost_labels(sample) -> np.ndarray:
    """The scene's objects that no other object contains, as labels (later objects on top)."""
    out = np.zeros(sample.masks.shape[1:], np.int32)
    for i in np.flatnonzero(sample.parents < 0):
        out[sample.masks[i]] = i + 1
    return out


def make_examples(predictor: Predictor, n_scenes: int, seed: int, scene: dict | None = None, log=print):
    """(features N x C x g x g float16, label grids N x n x n int32) of ``n_scenes`` scenes."""
    n = predictor.model.low_res_size
    features, grids = [], []
    t0 = time.perf_counter()
    for i in range(n_scenes):
        rng = np.random.default_rng([seed, SEED_OFFSET + i])
        kind = str(rng.choice(KINDS, p=KIND_SHARES))
        sample = generate(rng, scene_shape(rng), kind=kind, **(scene or {}))
        emb = predictor.encode(sample.image, views=1)
        features.append(torch.from_numpy(emb.features).half())
        grids.append(torch.from_numpy(label_grid(outermost_labels(sample), LowResFrame(emb.geometry, n))
                                      .astype(np.int32)))
        if (i + 1) % 50 == 0:
            log(f"scenes {i + 1}/{n_scenes}: {time.perf_counter() - t0:.0f} s")
    return torch.stack(features), torch.stack(grids)


def targets(grids: torch.Tensor) -> torch.Tensor:
    """B x 3 x n x n (foreground, depth, valid) from label grids."""
    return torch.stack([torch.from_numpy(np.stack(head_targets(g.numpy()))) for g in grids])


def head_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    valid = target[:, 2]
    bce = F.binary_cross_entropy_with_logits(logits, target[:, :2], reduction="none")
    return (bce * valid[:, None]).sum() / valid.sum().clamp(min=1) / 2


def train_head(features, all_targets, steps: int, seed: int, lr: float = 2e-3, log=print) -> InstanceHead:
    n = len(features)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = InstanceHead(in_channels=features.shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)

    def step_loss():
        idx = torch.randint(n, (PER_STEP,), generator=gen)
        return head_loss(net(features[idx].float()), all_targets[idx])

    return cosine_steps(net, opt, steps, lr, step_loss, log, every=100)


def held_out_report(net: InstanceHead, features, grids, all_targets) -> dict:
    """The maps' errors on held-out scenes, and how well their seeds match the objects."""
    with torch.inference_mode():
        probs = torch.sigmoid(net(features.float()))
    valid = all_targets[:, 2] > 0
    fg_error = ((probs[:, 0] > 0.5) != (all_targets[:, 0] > 0.5))[valid].float().mean()
    inside = valid & (all_targets[:, 0] > 0.5)
    depth_error = (probs[:, 1] - all_targets[:, 1]).abs()[inside].mean()
    counts = [seed_matches(head_seeds(p[0], p[1], g >= 0), g) for p, g in zip(probs.numpy(), grids.numpy())]
    hits, objects, seeds_total = (int(sum(c[i] for c in counts)) for i in range(3))
    return {"foreground_error": round(float(fg_error), 4), "depth_mae": round(float(depth_error), 4),
            "objects": objects, "seeds": seeds_total, "recall": round(hits / max(objects, 1), 4),
            "precision": round(hits / max(seeds_total, 1), 4)}


def parse_args(argv=None):
    return stage_parser("python -m training.instance_head", __doc__.split("\n\n")[0], "instance head",
                        1000, 1500).parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    model, started = start_stage(args, "instance_head")
    log = lambda line: print(line, flush=True)  # noqa: E731
    scene = stage_scenes(args)
    features, grids = make_examples(Predictor(model), args.scenes, args.seed, scene, log=log)
    all_targets = targets(grids)
    split = max(1, min(len(features) - 1, int(round(len(features) * (1 - HELD_OUT)))))  # at least one held out
    log(f"{args.scenes} scenes encoded in {time.perf_counter() - started:.0f} s")
    net = train_head(features[:split], all_targets[:split], args.steps, args.seed, log=log)
    report = held_out_report(net, features[split:], grids[split:], all_targets[split:])
    log(json.dumps({"held_out": report}))
    return finish_stage(args, net, HEAD_PREFIX, "instance_head", started, {"held_out": report, "scene": scene})


if __name__ == "__main__":
    sys.exit(main())

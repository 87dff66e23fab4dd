"""Fine-tuning a model's instance head on the user's labels, kept only when it finds the held-out
objects better.

The head (:mod:`napari_segany.engine.instance_head`) reads the same kept embeddings as the decoder's
training, so it costs no extra encoding: its targets are the training pictures' labels sampled on
the decoder's low-resolution grid, its loss the one it was trained with (binary cross-entropy of
foreground and depth). It is judged on the held-out pictures by what automatic segmentation makes
of it: the share of the held-out objects that its seeds find one to one, and the share of its
seeds that find one object (their F1). The tuned head replaces the model's only when that F1 went
up; otherwise the head stays as it was, and the report says so.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.instance_head import head_maps, head_seeds, head_targets, seed_matches
from ..engine.low_res import LowResFrame, label_grid

#: Steps and learning rate of the head's fine-tuning (a few seconds on 2 CPU cores).
STEPS, LR = 150, 3e-4


def _grid(model, ex) -> np.ndarray:
    """The labels of one prepared example on the decoder's low-res grid."""
    return label_grid(ex.labels, LowResFrame(ex.embedding.geometry, model.low_res_size))


def seed_f1(head, examples: list, grids: list[np.ndarray]) -> dict:
    """Recall, precision and F1 of ``head``'s seeds against the objects of ``examples`` (their
    label ``grids``)."""
    found = objects = seeds = 0
    for ex, grid in zip(examples, grids):
        fg, depth = head_maps(head, ex.features[0].float().cpu().numpy())
        f, o, s = seed_matches(head_seeds(fg, depth, grid >= 0), grid)
        found, objects, seeds = found + f, objects + o, seeds + s
    recall, precision = found / max(objects, 1), found / max(seeds, 1)
    f1 = 2 * found / max(objects + seeds, 1)
    return {"objects": objects, "seeds": seeds, "recall": round(recall, 4), "precision": round(precision, 4),
            "f1": round(f1, 4)}


def tune_head(model, train_set: list, held_set: list, *, steps: int = STEPS, seed: int = 0,
              should_stop: Callable[[], bool] | None = None) -> dict | None:
    """Fine-tune ``model.instance_head`` in place on ``train_set`` (prepared examples) and keep it
    only when its seeds' F1 on ``held_set`` rose; returns what happened (None: the model has no head
    or there are no objects to learn from)."""
    head = getattr(model, "instance_head", None)
    if head is None or not train_set or not held_set:
        return None
    data = [(torch.from_numpy(np.stack(head_targets(_grid(model, ex)))), ex.features) for ex in train_set]
    data = [(t, f) for t, f in data if t[0].any()]
    if not data:
        return None
    held_grids = [_grid(model, ex) for ex in held_set]  # once, for the checks before and after
    before = seed_f1(head, held_set, held_grids)
    tuned = copy.deepcopy(head).float()
    for p in tuned.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(tuned.parameters(), lr=LR, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    done = 0
    for step in range(steps):
        if should_stop is not None and should_stop():
            break
        target, features = data[int(rng.integers(len(data)))]
        with torch.enable_grad():
            logits = tuned(features.float())[0]
            valid = target[2]
            loss = (F.binary_cross_entropy_with_logits(logits, target[:2], reduction="none") * valid).sum()
            loss = loss / valid.sum().clamp(min=1) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()
        done = step + 1
    tuned.eval()
    for p in tuned.parameters():
        p.requires_grad_(False)
    after = seed_f1(tuned, held_set, held_grids)
    kept = after["f1"] > before["f1"]
    if kept:
        model.instance_head = tuned
    return {"before": before, "after": after, "kept": kept, "steps": done}

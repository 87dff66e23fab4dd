"""The training loop: the prompt encoder and mask decoder learn on kept embeddings (the image
encoder frozen), on prompts simulated from the labels, with early stopping on the held-out
objects; the best weights so far are kept whatever stops it.

Everything here works in the model frame (the image resized into the model's square input and
padded, as the predictor does), at most :data:`LOSS_SIDE` pixels across: targets are the labels
resized into it, prompts are pixels of it (scaled to the model's own frame for the prompt encoder),
and the loss is taken on its image part (the padding is never shown to anyone). The included
model's frame is 512 px, so it trains at full resolution; SAM's 1024 px frame trains at half, which
makes a step about four times cheaper in time and memory (its logits are 256 px across anyway).
One step, as in the recipe that trained the included model (``training/train.py``): up to
``objects`` objects of one training picture get a first prompt (one random point with the 3
candidates, or a jittered box), then ``iters - 1`` correction rounds, each a click from the error
region of the previous best-scored candidate whose low-res logits are fed back as ``mask_input``;
loss: 20 focal + dice of the best candidate and MSE of the IoU head, summed over rounds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.outputs import ImageEmbedding
from .losses import mask_iou, sam_loss
from .prompts import centre_correction, interior_point, jittered_box, random_point, sampled_correction, tight_box


#: Side of the frame the loss is taken in (the model frame when that is smaller).
LOSS_SIDE = 512


def loss_scale(embedding: ImageEmbedding) -> float:
    """The loss frame's size over the model frame's, for ``embedding``'s model (at most 1)."""
    return min(1.0, LOSS_SIDE / embedding.geometry.model_size)


@dataclass
class Prepared:
    """An example with its kept embedding (features as a 1 x 256 x g x g tensor)."""

    embedding: ImageEmbedding
    features: torch.Tensor
    labels: np.ndarray
    ids: np.ndarray
    name: str


@dataclass
class Settings:
    """How the decoder is trained (the defaults are the ones the docs measured)."""

    lr: float = 1e-4
    objects: int = 16
    iters: int = 3
    weight_decay: float = 1e-4
    warmup: int = 10
    eval_every: int = 25
    patience: int = 6

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Log:
    """What a training run did: steps, why it stopped, and its held-out checks (step, scores)."""

    steps: int = 0
    best_step: int = 0
    best_score: float = float("nan")
    stopped: str = "steps"
    seconds: float = 0.0
    history: list = field(default_factory=list)
    losses: list = field(default_factory=list)


def trainable(model) -> list[torch.nn.Parameter]:
    """Freeze everything but the prompt encoder and mask decoder; return their parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for part in (model.prompt_encoder, model.mask_decoder) for p in part.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def frame_masks(masks: np.ndarray, embedding: ImageEmbedding) -> torch.Tensor:
    """N x H x W bool masks -> N x h x w float {0, 1} in the loss frame, resized like the image
    (h x w: the image part of the frame, whose top-left corner is the frame's)."""
    g, scale = embedding.geometry, loss_scale(embedding)
    size = tuple(max(1, int(round(n * scale))) for n in g.input_size)
    m = torch.from_numpy(masks.astype(np.float32))[:, None]
    if tuple(m.shape[-2:]) != size:
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False, antialias=size[0] < m.shape[-2])
    return (m[:, 0] > 0.5).float()


def _in_model_frame(coords, scale: float) -> np.ndarray:
    """Pixel coordinates of the loss frame -> the model frame's (pixel centres kept on centres)."""
    a = np.asarray(coords, np.float32)
    return a if scale == 1.0 else (a + 0.5) / scale - 0.5


def _decode(model, pe, feats, size, pts, labs, boxes, mask_in, multimask, scale: float = 1.0):
    dev, points = feats.device, None
    if pts is not None:
        points = (torch.tensor(_in_model_frame(pts, scale), device=dev),
                  torch.tensor(np.asarray(labs, np.int64), device=dev))
    bx = None if boxes is None else torch.tensor(_in_model_frame(boxes, scale), device=dev)
    sparse, dense = model.prompt_encoder(points, bx, mask_in)
    low, iou = model.mask_decoder(feats, pe, sparse, dense, multimask)
    s = int(round(4 * low.shape[-1] * scale))  # the loss frame
    up = F.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)
    return low, up[..., : size[0], : size[1]], iou  # the image part only: padding is never shown


def _add_clicks(pts, labs, clicks):
    new_p = [[c[1], c[0]] if c else [0.0, 0.0] for c in clicks]  # (x, y) in the model frame
    new_l = [c[2] if c else -1 for c in clicks]
    if pts is None:
        return [[p] for p in new_p], [[lab] for lab in new_l]
    return [a + [p] for a, p in zip(pts, new_p)], [a + [lab] for a, lab in zip(labs, new_l)]


def step_loss(model, pe, ex: Prepared, rng: np.random.Generator, settings: Settings) -> torch.Tensor:
    """The loss of one training step on ``ex`` (see the module's docstring)."""
    idx = rng.permutation(len(ex.ids))[: settings.objects]
    targets = frame_masks(ex.labels[None] == ex.ids[idx, None, None], ex.embedding)
    targets = targets[targets.flatten(1).sum(1) > 0]
    if not len(targets):
        return None
    tgt = targets.numpy() > 0.5
    targets = targets.to(ex.features.device)
    size, scale = tgt.shape[-2:], loss_scale(ex.embedding)
    use_box = rng.random() < 0.5
    pts = labs = boxes = None
    if use_box:
        boxes = [[b[1], b[0], b[3], b[2]] for b in (jittered_box(t, rng) for t in tgt)]
    else:
        pts, labs = _add_clicks(None, None, [(*random_point(t, rng), 1) for t in tgt])
    total, mask_in = 0.0, None
    for it in range(settings.iters):
        low, up, iou = _decode(model, pe, ex.features, size, pts, labs, boxes, mask_in, it == 0 and not use_box,
                               scale)
        total = total + sam_loss(up, iou, targets)
        if it == settings.iters - 1:
            break
        rows = torch.arange(len(tgt), device=up.device)
        chosen = iou.detach().argmax(1)
        mask_in = low.detach()[rows, chosen][:, None]
        pred = (up.detach()[rows, chosen] > 0).cpu().numpy()
        pts, labs = _add_clicks(pts, labs, [sampled_correction(p, t, rng) for p, t in zip(pred, tgt)])
    return total / settings.iters


class HeldOut:
    """The held-out objects with fixed prompts, scored in the model frame (fast, for early stopping):
    mean IoU of one centre click (best-scored of 3), the tight box, and the click plus one
    correction."""

    def __init__(self, held: list[Prepared], chunk: int = 32) -> None:
        self.parts = []
        for ex in held:
            for start in range(0, len(ex.ids), chunk):
                ids = ex.ids[start:start + chunk]
                targets = frame_masks(ex.labels[None] == ids[:, None, None], ex.embedding)
                keep = targets.flatten(1).sum(1) > 0
                targets = targets[keep]
                if len(targets):
                    tgt = targets.numpy() > 0.5
                    targets = targets.to(ex.features.device)
                    clicks = [(*interior_point(t), 1) for t in tgt]
                    boxes = [[b[1], b[0], b[3], b[2]] for b in map(tight_box, tgt)]
                    self.parts.append((ex.features, targets, tgt, clicks, boxes, loss_scale(ex.embedding)))

    @torch.no_grad()
    def score(self, model, pe) -> dict:
        got = {"click": [], "box": [], "click+1": []}
        for feats, targets, tgt, clicks, boxes, scale in self.parts:
            size = tgt.shape[-2:]
            pts, labs = _add_clicks(None, None, clicks)
            low, up, iou = _decode(model, pe, feats, size, pts, labs, None, None, True, scale)
            rows = torch.arange(len(tgt), device=up.device)
            chosen = iou.argmax(1)
            got["click"] += mask_iou(up[rows, chosen], targets).tolist()
            pred = (up[rows, chosen] > 0).cpu().numpy()
            pts2, labs2 = _add_clicks(pts, labs, [centre_correction(p, t) for p, t in zip(pred, tgt)])
            _, up2, _ = _decode(model, pe, feats, size, pts2, labs2, None, low[rows, chosen][:, None], False, scale)
            got["click+1"] += mask_iou(up2[:, 0], targets).tolist()
            _, upb, _ = _decode(model, pe, feats, size, None, None, boxes, None, False, scale)
            got["box"] += mask_iou(upb[:, 0], targets).tolist()
        out = {k: float(np.mean(v)) for k, v in got.items()}
        out["mean"] = float(np.mean(list(out.values())))
        return out


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of ``base`` at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def train(model, train_set: list[Prepared], held: HeldOut, settings: Settings, *, steps: int | None,
          deadline: float | None, seed: int = 0, progress: Callable[[str, int, int], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> Log:
    """Train ``model``'s prompt encoder and mask decoder in place and leave it holding the weights
    that scored best on ``held`` (the starting weights when nothing beat them).

    ``steps``: how many steps; None: as many as fit before ``deadline`` (``time.monotonic()``),
    the schedule's length fixed from the speed of the first steps. Stops early when the held-out
    score has not improved in ``settings.patience`` checks, when ``should_stop()`` returns True,
    or on Ctrl+C (KeyboardInterrupt); all keep the best weights so far.
    """
    rng = np.random.default_rng(seed)
    params = trainable(model)
    parts = (model.prompt_encoder, model.mask_decoder)
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    with torch.no_grad():
        pe = model.prompt_encoder.get_dense_pe()
    log, t0 = Log(), time.monotonic()

    def snapshot():
        return [{k: v.detach().clone() for k, v in p.state_dict().items()} for p in parts]

    first = held.score(model, pe)
    log.history.append((0, first))
    log.best_score, best, bad = first["mean"], snapshot(), 0
    total = steps if steps is not None else None
    check_seconds = time.monotonic() - t0
    step = skipped = 0
    try:
        while total is None or step < total:
            if should_stop is not None and should_stop():
                log.stopped = "cancelled"
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                log.stopped = "time"
                break
            if total is None and step == 5:  # fix the schedule's length from the speed so far
                per_step = (now - t0 - check_seconds) / step
                per_step += check_seconds / settings.eval_every
                total = max(step + 1, int((deadline - now) / per_step) + step) if deadline else 1000
            ex = train_set[int(rng.integers(len(train_set)))]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total or 1000, settings.lr, settings.warmup)
            model.train(False)  # the frozen encoder's BatchNorm and all else in eval mode
            with torch.enable_grad():
                loss = step_loss(model, pe, ex, rng, settings)
                if loss is None:  # its objects vanish when resized into the model frame
                    skipped += 1
                    if skipped > 100 + 10 * step:
                        raise ValueError("the training objects are too small to be seen at the model's resolution "
                                         "(they vanish when the image is fitted into its frame)")
                    continue
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            step += 1
            log.losses.append(float(loss.detach()))
            if progress is not None:
                progress("training", step, total or step)
            end = total is not None and step >= total
            if step % settings.eval_every == 0 or end:
                score = held.score(model, pe)
                log.history.append((step, score))
                if score["mean"] > log.best_score + 1e-4:
                    log.best_score, log.best_step, best, bad = score["mean"], step, snapshot(), 0
                else:
                    bad += 1
                    if bad >= settings.patience:
                        log.stopped = "early"
                        break
    except KeyboardInterrupt:
        log.stopped = "interrupted"
    for part, state in zip(parts, best):
        part.load_state_dict(state)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    log.steps, log.seconds = step, time.monotonic() - t0
    return log

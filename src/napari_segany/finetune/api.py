"""``finetune``: adapt a model to a user's annotations; ``estimate``: how long it will take."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..engine.predictor import Predictor
from ..model import Sam
from ..weights.hashing import file_digests
from ..weights.load import load_model
from ..volume import EmbeddingStore
from . import save as saving
from .data import Split, split
from .loop import HeldOut, Prepared, Settings, step_loss, trainable, train
from .head import tune_head
from .propagation import held_blocks
from .report import Report, evaluate

#: Seconds kept free at the end of a time budget for saving and slack.
MARGIN_S = 5.0


@dataclass
class FinetuneResult:
    """What :func:`finetune` made.

    Attributes
    ----------
    model : Sam
        The fine-tuned model when it ``improved`` on the held-out objects, else the base model
        (nothing replaces the model you had when fine-tuning did not help).
    report : Report
        Held-out mean IoU before and after (``print(result.report)``), the data and settings.
    improved : bool
        Whether the held-out score (mean of click, box and click + 2 corrections) went up.
    path : Path or None
        The checkpoint written (None when nothing was written).
    trained : Sam
        The fine-tuned model, whether it improved or not.
    """

    model: Sam
    report: Report
    improved: bool
    path: Path | None
    trained: Sam


@dataclass
class Estimate:
    """How long :func:`finetune` will take with these data and settings (measured on this machine:
    one embedding and a few training steps)."""

    examples: int
    held_out_examples: int
    train_objects: int
    held_out_objects: int
    embed_seconds: float
    step_seconds: float
    steps: int
    total_seconds: float
    split: str

    def __str__(self) -> str:
        return (f"{self.examples} pictures ({self.held_out_examples} held out: {self.split}), "
                f"{self.train_objects} objects to learn from, {self.held_out_objects} to check on; embeddings "
                f"about {self.embed_seconds:.0f} s, {self.steps} steps of about {self.step_seconds:.2f} s; "
                f"about {self.total_seconds / 60:.1f} min in all.")


def _base(model) -> Sam:
    if isinstance(model, Sam):
        return model
    if model is None or isinstance(model, (str, Path)):
        return load_model(model, device="cpu")
    raise TypeError(f"model must be a loaded model (load_model) or a model name or file, got {type(model).__name__}")


def _embed(predictor: Predictor, data: Split, cache_dir, progress, should_stop) -> list[Prepared]:
    """Each example's embedding (one view), computed once; volume slices through an EmbeddingStore
    (the volume's intensity window, its disk cache when ``cache_dir`` is given)."""
    stores, out = {}, []
    try:
        for k, ex in enumerate(data.examples):
            if progress is not None:
                progress("embedding", k, len(data.examples))
            if ex.image is not None:
                emb = predictor.encode(ex.image, views=1, contrast_limits=ex.window, should_stop=should_stop)
            else:
                src = data.sources[ex.source]
                if ex.source not in stores:
                    stores[ex.source] = EmbeddingStore(predictor, src.image, axis=src.axis, prefetch=0,
                                                       cache_dir=cache_dir if ":" in predictor.model_id else None,
                                                       memory_bytes=64 * 2**20)
                emb = stores[ex.source].get(ex.slice_index, should_stop=should_stop)
            features = torch.from_numpy(np.asarray(emb.features, np.float32))[None].to(predictor.device)
            out.append(Prepared(emb, features, ex.labels, ex.ids, ex.name))
    finally:
        for store in stores.values():
            store.close()
    if progress is not None:
        progress("embedding", len(data.examples), len(data.examples))
    return out


def finetune(model, pairs, output=None, *, axis: int = 0, held_out: float = 0.25, max_minutes: float | None = 5.0,
             steps: int | None = None, lr: float = 1e-4, seed: int = 0, objects: int = 16, name: str | None = None,
             save: str = "improved", overwrite: bool = False, cache_dir=None,
             progress: Callable[[str, int, int], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> FinetuneResult:
    """Adapt a model's prompt encoder and mask decoder to annotated images, keeping its image
    encoder frozen, and report honestly whether it got better.

    Parameters
    ----------
    model : Sam, str, Path or None
        The model to start from: a loaded model (left unchanged), a registry name, a checkpoint
        file, or None for the included model.
    pairs : list of (image, labels)
        Arrays or file paths. A 2D image (H x W, or H x W x C) with H x W labels, or a volume
        (Z x Y x X, or channels last) with Z x Y x X labels, sliced along ``axis``. Objects are the
        label ids (0 = background) of each 2D picture.
    output : path or name, optional
        Where to write the fine-tuned model (``.pt``/``.pth``, our format, loadable with
        :func:`napari_segany.load_model`), or a name (letters, digits, - and _): then it is saved
        among your own models, ``<cache>/user-models/<name>.pt``, and ``load_model(name)`` finds it
        (:mod:`napari_segany.weights.user_models`; a registry name is refused). Written only when
        the held-out score improved (or with ``save="always"``), atomically, never over an
        existing file unless ``overwrite``.
    held_out : float
        Share of the data held out to measure the result (by image, by block of slices, or, with
        fewer than 4 such parts, by quarter of each image; never by pixel). At least one part is
        held out; too little data to hold one out is refused with a ValueError.
    max_minutes : float or None
        Time budget for everything (embeddings, training, the report): with ``steps=None`` the
        training takes what is left. None: no limit (then give ``steps``).
    steps : int, optional
        Exact number of training steps (still stopped by the budget and by early stopping).
    lr, seed, objects
        Learning rate (AdamW), the seed of the split and of the prompts, objects per step.
    name : str, optional
        The new model's name (default: the output file's stem, else ``<base>-finetuned``).
    save : {"improved", "always"}
        When to write ``output``.
    cache_dir : path, optional
        Disk cache for volume slices' embeddings (:class:`napari_segany.EmbeddingStore`).
    progress : callable(stage, done, total), optional
        Called with stage "embedding", "before", "training", "after".
    should_stop : callable() -> bool, optional
        Polled during training: True stops it and keeps the best weights so far (as does Ctrl+C).

    Returns
    -------
    FinetuneResult
    """
    t0 = time.monotonic()
    if save not in ("improved", "always"):
        raise ValueError(f"save must be 'improved' or 'always', got {save!r}")
    if max_minutes is None and steps is None:
        raise ValueError("give a time budget (max_minutes) or a number of steps")
    if steps is not None and (not isinstance(steps, (int, np.integer)) or steps < 0):
        raise ValueError(f"steps must be a whole number >= 0, got {steps!r}")
    path = None if output is None else saving.check_output(output, overwrite)
    base = _base(model)
    data = split(pairs, axis=axis, held_out=held_out, seed=seed)
    settings = Settings(lr=float(lr), objects=int(objects))
    predictor = Predictor(base, precision="fp32", views=1)
    prepared = _embed(predictor, data, cache_dir, progress, should_stop)
    t_embed = time.monotonic()
    train_set = [p for p, e in zip(prepared, data.examples) if not e.held_out]
    held_set = [p for p, e in zip(prepared, data.examples) if e.held_out]
    if progress is not None:
        progress("before", 0, 1)
    blocks = held_blocks(data, prepared)  # volumes: their held-out objects are propagated too
    before = evaluate(predictor, held_set, blocks=blocks)
    t_before = time.monotonic()
    trained = copy.deepcopy(base)
    label = name or (path.stem if path is not None else f"{base.info.name}-finetuned")
    trained.info = replace(base.info, name=label, source="", sha256="")
    deadline = None
    if max_minutes is not None:
        deadline = t0 + 60.0 * float(max_minutes) - 1.2 * (t_before - t_embed) - MARGIN_S
    log = train(trained, train_set, HeldOut(held_set), settings, steps=steps, deadline=deadline, seed=seed,
                progress=progress, should_stop=should_stop)
    head = tune_head(trained, train_set, held_set, seed=seed, should_stop=should_stop)
    t_train = time.monotonic()
    if progress is not None:
        progress("after", 0, 1)
    after = evaluate(Predictor(trained, precision="fp32", views=1), held_set, blocks=blocks)
    t_after = time.monotonic()
    report = Report(before, after, data.summary(), {**settings.as_dict(), "held_out": float(held_out),
                                                    "max_minutes": max_minutes, "steps": steps, "seed": int(seed),
                                                    "axis": int(axis), "frozen": "image_encoder"},
                    log.steps, log.best_step, log.stopped,
                    {"embeddings": round(t_embed - t0, 2), "report_before": round(t_before - t_embed, 2),
                     "training": round(t_train - t_before, 2), "report_after": round(t_after - t_train, 2)},
                    log.history, head)
    improved = report.improved
    written = None
    if path is not None and (improved or save == "always"):
        provenance = {k: v for k, v in report.as_dict().items() if k != "history"}
        written = saving.write(trained, path, saving.config_for(trained, base.info, provenance, label), overwrite)
        trained.info = replace(trained.info, source=str(written), sha256=file_digests(written, ["sha256"])["sha256"])
    return FinetuneResult(trained if improved else base, report, improved, written, trained)


def estimate(model, pairs, *, axis: int = 0, held_out: float = 0.25, max_minutes: float | None = 5.0,
             steps: int | None = None, seed: int = 0, objects: int = 16) -> Estimate:
    """How long :func:`finetune` with these arguments will take, measured: one picture is encoded
    and 3 training steps are run on it (a few seconds); nothing is kept."""
    if max_minutes is None and steps is None:
        raise ValueError("give a time budget (max_minutes) or a number of steps")
    base = _base(model)
    data = split(pairs, axis=axis, held_out=held_out, seed=seed)
    first = data.train[0]
    sub = Split([first], data.sources, data.units, [], data.how)
    predictor = Predictor(base, precision="fp32", views=1)
    t = time.monotonic()
    prepared = _embed(predictor, sub, None, None, None)[0]
    embed_s = time.monotonic() - t
    trial = copy.deepcopy(base)
    params = trainable(trial)
    opt = torch.optim.AdamW(params, lr=1e-6)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        pe = trial.prompt_encoder.get_dense_pe()
    t = time.monotonic()
    for _ in range(3):
        with torch.enable_grad():
            loss = step_loss(trial, pe, prepared, rng, Settings(objects=objects))
            if loss is not None:
                opt.zero_grad()
                loss.backward()
        opt.step()
    step_s = (time.monotonic() - t) / 3
    n = len(data.examples)
    total_embed = embed_s * n
    held_objects = sum(len(e.ids) for e in data.held)
    report_s = 2 * held_objects * 4 * 0.05  # about 4 decoder answers per object, before and after
    if steps is None:
        budget = 60.0 * float(max_minutes) - total_embed - report_s - MARGIN_S
        n_steps = max(0, int(budget / (step_s * 1.1)))
    else:
        n_steps = int(steps)
    total = total_embed + report_s + n_steps * step_s * 1.1
    if max_minutes is not None:
        total = min(total, max(60.0 * float(max_minutes), total_embed + report_s))
    return Estimate(n, len(data.held), sum(len(e.ids) for e in data.train), held_objects, total_embed, step_s,
                    n_steps, total, data.how)

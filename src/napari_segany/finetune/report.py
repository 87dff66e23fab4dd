"""The held-out report: what a person would get on the held-out objects, before and after.

Scored through :class:`napari_segany.Predictor` (its regions rule and the model's boundary refiner
and candidate scorer included, one view), at the pictures' own resolution, per object:
``click``: one positive click at the point farthest from the object's boundary (3 candidates, the
best-scored kept); ``box``: the tight box; ``click+1``, ``click+2``: then correction clicks at the
centre of the largest error region, with the previous logits as ``mask_input``. For volumes,
``propagation``: each object of a held-out block of slices propagated from its largest slice
through the block (:mod:`.propagation`). ``mean`` is the mean of ``click``, ``box``, ``click+2`` and,
for volumes, ``propagation``: the number ``improved`` compares.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .propagation import propagation_scores
from .prompts import centre_correction, interior_point, tight_box

CORRECTIONS = 2
MODES = ("click", "box", "click+1", "click+2")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def evaluate(predictor, held, should_stop=None, blocks=()) -> dict:
    """Mean held-out IoU per prompt mode (see the module's docstring) with ``predictor``; the
    held-out pictures' kept embeddings are reused (the image encoder is the same). ``blocks``: the
    held-out blocks of slices of volumes (:func:`.propagation.held_blocks`), scored by propagation."""
    got = {m: [] for m in MODES}
    for ex in held:
        emb = replace(ex.embedding, model_id=predictor.model_id)
        for i in ex.ids:
            if should_stop is not None and should_stop():
                break
            gt = ex.labels == i
            point = interior_point(gt)
            pred = predictor.predict(points=[point], multimask=True, embedding=emb)
            mask, logits = pred.mask(0), pred.logits[0]
            got["click"].append(_iou(mask, gt))
            got["box"].append(_iou(predictor.predict(box=tight_box(gt), multimask=False, embedding=emb).mask(0), gt))
            points, labels = [point], [1]
            for k in range(1, CORRECTIONS + 1):
                click = centre_correction(mask, gt)
                if click is not None:
                    points.append(click[:2])
                    labels.append(click[2])
                    pred = predictor.predict(points=points, labels=labels, mask_input=logits, multimask=False,
                                             embedding=emb)
                    mask, logits = pred.mask(0), pred.logits[0]
                got[f"click+{k}"].append(_iou(mask, gt))
    out = {m: float(np.mean(v)) if v else float("nan") for m, v in got.items()}
    counted = [out["click"], out["box"], out[f"click+{CORRECTIONS}"]]
    propagated = propagation_scores(predictor, blocks, should_stop) if blocks else []
    if propagated:
        out["propagation"] = float(np.mean(propagated))
        out["propagated_objects"] = len(propagated)
        counted.append(out["propagation"])
    out["mean"] = float(np.mean(counted))
    out["objects"] = len(got["click"])
    return out


@dataclass
class Report:
    """Held-out mean IoUs ``before`` and ``after`` fine-tuning (dicts keyed by :data:`MODES`, plus
    ``mean`` and ``objects``), with what the run did."""

    before: dict
    after: dict
    data: dict
    settings: dict
    steps: int
    best_step: int
    stopped: str
    seconds: dict
    history: list
    #: The instance head's fine-tuning (:func:`napari_segany.finetune.head.tune_head`), None without one.
    head: dict | None = None

    @property
    def improved(self) -> bool:
        return bool(self.after["mean"] > self.before["mean"])

    def as_dict(self) -> dict:
        return {"before": self.before, "after": self.after, "improved": self.improved, "data": self.data,
                "settings": self.settings, "steps": self.steps, "best_step": self.best_step,
                "stopped": self.stopped, "seconds": self.seconds,
                "history": [[int(s), {k: round(v, 4) for k, v in sc.items()}] for s, sc in self.history],
                "instance_head": self.head}

    def __str__(self) -> str:
        n = self.after.get("objects", 0)
        lines = [f"Held-out mean IoU on {n} objects ({self.data.get('split', '')}), before -> after:"]
        if "propagated_objects" in self.after:
            lines[0] += f" (propagation: {self.after['propagated_objects']} objects through their held-out block)"
        both = "propagation" in self.before and "propagation" in self.after
        for m in (*MODES, "propagation", "mean") if both else (*MODES, "mean"):
            lines.append(f"  {m:11s} {self.before[m]:.3f} -> {self.after[m]:.3f} ({self.after[m] - self.before[m]:+.3f})")
        why = {"steps": "all steps done", "time": "time budget reached", "early": "held-out score stopped improving",
               "cancelled": "cancelled", "interrupted": "interrupted (Ctrl+C)"}.get(self.stopped, self.stopped)
        lines.append(f"{self.steps} steps ({why}); best weights at step {self.best_step}; "
                     f"{sum(self.seconds.values()):.0f} s in all.")
        if self.head is not None:
            hb, ha = self.head["before"], self.head["after"]
            lines.append(f"Instance head (segment everything): its seeds found {hb['recall']:.0%} of the held-out "
                         f"objects one to one before, {ha['recall']:.0%} after (F1 {hb['f1']:.3f} -> {ha['f1']:.3f}); "
                         + ("the tuned head is kept." if self.head["kept"] else "the head stays as it was."))
        lines.append("Improved on the held-out objects." if self.improved else
                     "NOT improved on the held-out objects: keep using the original model.")
        return "\n".join(lines)

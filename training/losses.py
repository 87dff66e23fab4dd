"""SAM's training losses: focal (or binary cross-entropy) + dice on mask logits (the best candidate
only), MSE for the IoU head. Targets may be soft (the fraction of each logit pixel an object covers)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from napari_segany.finetune.losses import mask_iou as shared_mask_iou

FOCAL_WEIGHT = 20.0  # SAM: focal : dice = 20 : 1
DICE_WEIGHT = 1.0
IOU_WEIGHT = 1.0


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Per-mask sigmoid focal loss, mean over pixels.

    logits: ... x H x W; target: broadcastable, values in {0, 1}. Returns ... .
    """
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    return (a_t * ce * (1 - p_t) ** gamma).flatten(-2).mean(-1)


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-mask binary cross-entropy, mean over pixels. logits: ... x H x W; target broadcastable,
    values in [0, 1]: with soft targets its minimum is at ``sigmoid(logit) = target``, so a logit
    map upsampled bilinearly and thresholded at 0 places the boundary between pixels."""
    return F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none").flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Per-mask soft dice loss. logits: ... x H x W; target broadcastable. Returns ... ."""
    prob = torch.sigmoid(logits).flatten(-2)
    t = target.expand_as(logits).flatten(-2)
    return 1 - (2 * (prob * t).sum(-1) + eps) / (prob.sum(-1) + t.sum(-1) + eps)


@torch.no_grad()
def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of the thresholded (> 0) logits with the target, per mask. ... x H x W -> ... ."""
    return shared_mask_iou(logits, target)


def sam_loss(
    logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor, focal_weight: float = FOCAL_WEIGHT,
    bce_weight: float = 0.0, actual_iou: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """SAM's loss for B objects with K candidate masks each.

    Parameters
    ----------
    logits : B x K x H x W mask logits (at the target's resolution)
    iou_pred : B x K predicted IoU
    target : B x H x W float {0, 1}, or soft in [0, 1] (then pass ``actual_iou``)
    focal_weight, bce_weight : float
        Weights of the focal and the binary cross-entropy term (dice has weight 1).
    actual_iou : B x K, optional
        The candidates' true IoU (the IoU head's target), when it is measured
        elsewhere, e.g. at a higher resolution than ``logits``; default: from
        ``logits`` and ``target``.

    Returns
    -------
    loss : scalar
        Mean over objects of (focal + bce + dice, weighted) of the candidate with the
        lowest such loss, plus the MSE between every candidate's predicted and
        actual IoU.
    stats : dict
        ``mask`` and ``iou`` loss parts, ``best`` (B,) index of the chosen
        candidate, ``iou`` (B x K) actual IoUs.
    """
    t = target[:, None].float()
    per = DICE_WEIGHT * dice_loss(logits, t)  # B x K
    if focal_weight:
        per = per + focal_weight * focal_loss(logits, t)
    if bce_weight:
        per = per + bce_weight * bce_loss(logits, t)
    best = per.argmin(dim=1)
    mask_part = per.gather(1, best[:, None]).mean()
    actual = mask_iou(logits, t) if actual_iou is None else actual_iou
    iou_part = F.mse_loss(iou_pred, actual)
    return mask_part + IOU_WEIGHT * iou_part, {
        "mask": float(mask_part.detach()), "iou_mse": float(iou_part.detach()), "best": best, "iou": actual,
    }

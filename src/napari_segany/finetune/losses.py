"""SAM's training loss (focal + dice on the best candidate, MSE of the IoU head), compact (the
recipe's own is ``training/losses.py``, not installed)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0  # SAM: focal : dice = 20 : 1


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with ``target > 0.5``, per mask: ... x H x W -> ... (1 when both are empty)."""
    pred = (logits > 0).flatten(-2)
    t = (target > 0.5).expand_as(logits).flatten(-2)
    inter = (pred & t).sum(-1).float()
    union = (pred | t).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


def sam_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """B x K candidate logits (H x W), B x K predicted IoUs, B x H x W {0, 1} targets -> the mean
    over objects of (20 focal + dice) of each object's best candidate, plus the MSE between the
    predicted and the actual IoU of every candidate."""
    t = target[:, None].float().expand_as(logits)
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p_t = prob * t + (1 - prob) * (1 - t)
    focal = ((0.25 * t + 0.75 * (1 - t)) * ce * (1 - p_t) ** 2).flatten(-2).mean(-1)
    p, tt = prob.flatten(-2), t.flatten(-2)
    dice = 1 - (2 * (p * tt).sum(-1) + 1) / (p.sum(-1) + tt.sum(-1) + 1)
    per = FOCAL_WEIGHT * focal + dice
    with torch.no_grad():
        actual = mask_iou(logits, t)
    return per.min(dim=1).values.mean() + F.mse_loss(iou_pred, actual)

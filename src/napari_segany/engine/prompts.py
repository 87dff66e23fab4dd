"""Validation of user prompts and their conversion to model-frame tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .preprocess import Geometry


@dataclass
class PromptTensors:
    """Prompts for B objects in the model frame.

    points: (B x N x 2 XY coords, B x N labels) or None; boxes: B x 4 XYXY or
    None; masks: B x 1 x h x w logits or None.
    """

    points: tuple[torch.Tensor, torch.Tensor] | None
    boxes: torch.Tensor | None
    masks: torch.Tensor | None


def as_labels(labels, allowed: tuple[int, ...], meaning: str) -> np.ndarray:
    """``labels`` as int64, refusing anything that is not exactly one of ``allowed`` (a fractional
    0.5 or 0.9 is an error, never truncated to a background click)."""
    raw = np.asarray(labels)
    if raw.dtype == bool:
        raw = raw.astype(np.int64)
    if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        raise TypeError(f"labels must be numbers ({meaning}), got dtype {raw.dtype}")
    if raw.dtype.kind == "f" and not (np.isfinite(raw).all() and (raw == np.round(raw)).all()):
        raise ValueError(f"labels must be whole numbers: {meaning}; got {raw.reshape(-1)[:6].tolist()}")
    lab = raw.astype(np.int64)
    if not np.isin(lab, allowed).all():
        raise ValueError(f"labels must be {meaning}")
    return lab


def as_numbers(value, what: str, form: str) -> np.ndarray:
    """``value`` as float64, or a sentence naming ``what`` (text or ragged lists were numpy's words)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numbers, {form}; got {value!r:.80}") from None


def check_points(points, labels, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) (row, col) points and (N,) 0/1 labels, validated against an H x W image."""
    pts = as_numbers(points, "points", "a list of (row, col) pairs")
    if pts.shape == (2,):
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise ValueError(f"points must be a list of (row, col) pairs, shape (N, 2); got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("points contain NaN or infinite coordinates")
    h, w = size
    outside = (pts[:, 0] < -0.5) | (pts[:, 0] > h - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > w - 0.5)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"point {i} at (row, col) = ({pts[i, 0]:g}, {pts[i, 1]:g}) lies outside the {h} x {w} image; "
            "points are (row, col) in pixels"
        )
    if labels is None:
        lab = np.ones(len(pts), dtype=np.int64)
    else:
        lab = as_labels(labels, (0, 1), "1 (foreground) or 0 (background)").reshape(-1)
        if lab.shape != (len(pts),):
            raise ValueError(f"labels must have one entry per point ({len(pts)}), got {lab.shape[0]}")
    return pts, lab


def check_box(box, size: tuple[int, int]) -> np.ndarray:
    """A (min_row, min_col, max_row, max_col) box validated and clipped to the image."""
    b = as_numbers(box, "box", "(min_row, min_col, max_row, max_col)").reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise ValueError(f"box must be four finite numbers (min_row, min_col, max_row, max_col), got {box!r}")
    r0, c0, r1, c1 = b
    if r1 <= r0 or c1 <= c0:
        raise ValueError(
            f"box {tuple(float(v) for v in b)} is inverted or has zero area; pass "
            "(min_row, min_col, max_row, max_col) with max_row > min_row and max_col > min_col"
        )
    h, w = size
    if r1 < 0 or c1 < 0 or r0 > h - 1 or c0 > w - 1:
        raise ValueError(f"box {tuple(float(v) for v in b)} lies entirely outside the {h} x {w} image")
    return np.array([max(r0, 0), max(c0, 0), min(r1, h - 1), min(c1, w - 1)])


def finite_logits(m: np.ndarray) -> np.ndarray:
    if not np.isfinite(m).all():
        raise ValueError("mask_input holds NaN or infinite values; pass logits of a previous prediction "
                         "(prediction.logits[i]) or Predictor.mask_prompt(mask)")
    return m


def check_mask_input(mask_input, low_res: int) -> np.ndarray:
    """Low-res logits given as (h, w), (1, h, w) or (1, 1, h, w) -> (h, w) float32."""
    m = np.asarray(mask_input, dtype=np.float32)
    if m.ndim >= 2 and m.shape[-2:] == (low_res, low_res) and m.size == low_res * low_res:
        return finite_logits(m).reshape(low_res, low_res)
    raise ValueError(
        f"mask_input must be low-resolution logits of shape ({low_res}, {low_res}), e.g. "
        f"previous.logits[0], got shape {m.shape}; use Predictor.mask_prompt(mask) for a full-size mask"
    )


def prepare_prompts(
    geometry: Geometry, low_res: int, points, labels, box, mask_input, device: torch.device
) -> PromptTensors:
    """Validate one object's prompts and convert them to a batch of one."""
    if points is None and box is None and mask_input is None:
        raise ValueError(
            "no prompt given: pass points=[(row, col)] (with labels), a box=(min_row, min_col, max_row, max_col), "
            "or mask_input"
        )
    if labels is not None and points is None:
        raise ValueError("labels were given without points")
    size = geometry.original_size
    pt = None
    if points is not None:
        pts, lab = check_points(points, labels, size)
        coords = torch.from_numpy(geometry.points_to_model(pts)).to(device)[None]
        pt = (coords, torch.from_numpy(lab).to(device)[None])
    bx = None
    if box is not None:
        bx = torch.from_numpy(geometry.box_to_model(check_box(box, size))).to(device)[None]
    mk = None
    if mask_input is not None:
        mk = torch.from_numpy(check_mask_input(mask_input, low_res)).to(device)[None, None]
    return PromptTensors(pt, bx, mk)


def prepare_batch(
    geometry: Geometry, low_res: int, boxes, points, labels, mask_input, device: torch.device
) -> PromptTensors:
    """Validate prompts for B objects (see :meth:`Predictor.predict_batch`)."""
    if boxes is None and points is None and mask_input is None:
        raise ValueError("no prompt given: pass boxes (B, 4), points (B, N, 2) or mask_input (B, h, w)")
    size = geometry.original_size
    counts = []
    bx = pt = mk = None
    if boxes is not None:
        b = as_numbers(boxes, "boxes", "shape (B, 4)")
        if b.ndim != 2 or b.shape[1] != 4 or len(b) == 0:
            raise ValueError(f"boxes must have shape (B, 4) with B >= 1 objects, got {b.shape}")
        b = np.stack([check_box(row, size) for row in b])
        bx = torch.from_numpy(geometry.box_to_model(b)).to(device)
        counts.append(len(b))
    if points is not None:
        p = as_numbers(points, "points", "shape (B, N, 2)")
        if p.ndim != 3 or p.shape[2] != 2 or p.shape[1] == 0:
            raise ValueError(f"points must have shape (B, N, 2), got {p.shape}")
        lab = np.ones(p.shape[:2], np.int64) if labels is None else as_labels(
            labels, (-1, 0, 1), "1 (foreground), 0 (background) or -1 (padding)")
        if lab.shape != p.shape[:2]:
            raise ValueError(f"labels must have shape {p.shape[:2]}, got {lab.shape}")
        real = lab >= 0
        if boxes is None and mask_input is None and not real.any(axis=1).all():
            k = int(np.flatnonzero(~real.any(axis=1))[0])
            raise ValueError(f"object {k} has only padding points (label -1) and no box: give it a point "
                             "or a box, or leave it out")
        if real.any():
            check_points(p[real], lab[real], size)
        p = np.where(real[..., None], p, 0.0)
        pt = (torch.from_numpy(geometry.points_to_model(p)).to(device), torch.from_numpy(lab).to(device))
        counts.append(len(p))
    if mask_input is not None:
        m = np.asarray(mask_input, dtype=np.float32)
        if m.ndim == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if m.ndim != 3 or m.shape[1:] != (low_res, low_res):
            raise ValueError(f"mask_input must have shape (B, {low_res}, {low_res}), got {m.shape}")
        mk = torch.from_numpy(np.ascontiguousarray(finite_logits(m))).to(device)[:, None]
        counts.append(len(m))
    if len(set(counts)) != 1:
        raise ValueError(f"boxes, points and mask_input must describe the same number of objects, got {counts}")
    return PromptTensors(pt, bx, mk)

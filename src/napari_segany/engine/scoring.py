"""Choosing among a click's candidate masks with a learnt scorer.

One click is ambiguous: the decoder answers with three candidates (a part, an
object, a larger whole) and its own predicted IoU picks one. That choice is
made on the coarse embedding, before the masks are upscaled and refined, and
for our small included model it is often wrong (on held-out generated scenes
the best of the three beat the chosen one by 0.04 IoU on nuclei and 0.2 on
cells). A model may carry a :class:`CandidateScorer`, a small convolutional
net trained after the model (``training/scorer.py``) on the model's own final
masks, that predicts each candidate's IoU from what the user would look at:

- a square crop around the candidates (their joint extent, grown by half and
  by 16 px), resampled to :data:`SIZE` x :data:`SIZE`, of the image (scaled to
  the crop's 1st-99th percentiles), where the image is, a spot at the click,
  the candidates' mean, and the candidate itself;
- the decoder's own score, the candidate's area relative to the largest one,
  the crop's size and the candidate's rank.

:class:`napari_segany.Predictor` and :class:`napari_segany.engine.zoom.ZoomPredictor`
apply it to the answer to a single click with multimask output (what it was
trained on): the candidates are reordered by its predictions, which become
their ``scores``. Other prompts keep the decoder's order and scores. SAM
checkpoints have no scorer.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Key prefix of a scorer's weights in our checkpoints (its settings: ``config["scorer"]``).
SCORER_PREFIX = "scorer."
#: Side of the resampled crop the scorer reads.
SIZE = 64
#: Image channels and scalar features per candidate.
CHANNELS, SCALARS = 5, 4


class CandidateScorer(nn.Module):
    """Predicted IoU (as a logit) of each candidate: images B x 5 x 64 x 64, scalars B x 4 -> B."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.width = int(width)
        w = self.width
        self.convs = nn.Sequential(
            nn.Conv2d(CHANNELS, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(4 * w + SCALARS, 64), nn.ReLU(), nn.Linear(64, 1))

    @property
    def config(self) -> dict:
        """What :func:`build_scorer` needs to rebuild this net (stored in checkpoints)."""
        return {"width": self.width, "size": SIZE}

    def forward(self, images: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        h = self.convs(images)
        return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3)), scalars], 1))[:, 0]


def build_scorer(config: dict) -> CandidateScorer:
    """A :class:`CandidateScorer` from a checkpoint's ``config["scorer"]``."""
    try:
        if int(config["size"]) != SIZE:
            raise ValueError(f"size {config['size']} is not {SIZE}")
        return CandidateScorer(width=int(config["width"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"The checkpoint's scorer settings {config!r} do not fit this version ({err}); "
                         "the file is damaged or from another program: reinstall or re-export it.") from None


def _square(masks: np.ndarray) -> tuple[float, float, float] | None:
    """(centre row, centre col, side) of the square crop around the candidates, None if all are empty."""
    union = masks.any(0)
    rows, cols = np.flatnonzero(union.any(1)), np.flatnonzero(union.any(0))
    if rows.size == 0:
        return None
    side = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) * 1.5 + 16
    return (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2, float(side)


def _resample(planes: np.ndarray, centre_row: float, centre_col: float, side: float) -> torch.Tensor:
    """C x H x W planes -> C x SIZE x SIZE, bilinear on the square crop (centre in the planes'
    pixels), zero outside them."""
    h, w = planes.shape[-2:]
    t = torch.from_numpy(np.ascontiguousarray(planes, np.float32))[None]
    steps = torch.linspace(-0.5 + 0.5 / SIZE, 0.5 - 0.5 / SIZE, SIZE) * side
    gy = (centre_row + steps + 0.5) / h * 2 - 1
    gx = (centre_col + steps + 0.5) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None].float()
    return F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def scorer_inputs(guide: np.ndarray, masks: np.ndarray, scores: np.ndarray,
                  point: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The scorer's inputs for K candidates: (K x 5 x SIZE x SIZE images, K x 4 scalars), or None
    when every candidate is empty.

    ``guide``: the H x W image in [0, 1] (:attr:`ImageEmbedding.guide`); ``masks``: K x H x W
    bool; ``scores``: the decoder's K predicted IoUs; ``point``: the click (row, col).
    """
    square = _square(masks)
    if square is None:
        return None
    cr, cc, side = square
    k, h, w = masks.shape
    r0, r1 = int(max(cr - side / 2, 0)), int(min(cr + side / 2 + 1, h))
    c0, c1 = int(max(cc - side / 2, 0)), int(min(cc + side / 2 + 1, w))
    lo, hi = np.percentile(guide[r0:r1, c0:c1], [1, 99])
    # the planes only where bilinear sampling of the square reads them (one pixel beyond it)
    region = (slice(max(int(np.floor(cr - side / 2)) - 1, 0), min(int(np.ceil(cr + side / 2)) + 2, h)),
              slice(max(int(np.floor(cc - side / 2)) - 1, 0), min(int(np.ceil(cc + side / 2)) + 2, w)))
    top, left = region[0].start, region[1].start
    part = masks[(slice(None), *region)]
    image = (guide[region].astype(np.float32) - lo) / max(hi - lo, 0.02)
    rows, cols = np.ogrid[region]
    spot = np.exp(-((rows - point[0]) ** 2 + (cols - point[1]) ** 2) / (2 * (side / 32) ** 2))
    shared = _resample(np.stack([image, np.ones(image.shape, np.float32), spot.astype(np.float32),
                                 part.mean(0, dtype=np.float32)]), cr - top, cc - left, side)
    own = _resample(part.astype(np.float32), cr - top, cc - left, side)
    images = torch.cat([shared[None].expand(k, -1, -1, -1), own[:, None]], 1)
    areas = masks.reshape(k, -1).sum(1).astype(np.float32)
    scalars = np.stack([np.asarray(scores, np.float32), np.log((areas + 1) / (areas.max() + 1)),
                        np.full(k, np.log(side) / 5, np.float32), np.arange(k, dtype=np.float32) / 2], 1)
    return images, torch.from_numpy(scalars.astype(np.float32))


def predicted_ious(scorer: CandidateScorer, guide: np.ndarray, masks: np.ndarray, scores: np.ndarray,
                   point: tuple[float, float]) -> np.ndarray | None:
    """The scorer's predicted IoU of each candidate (K,), or None when every candidate is empty."""
    inputs = scorer_inputs(guide, masks, scores, point)
    if inputs is None:
        return None
    device = next(scorer.parameters()).device
    with torch.inference_mode():
        return torch.sigmoid(scorer(*(t.to(device) for t in inputs))).float().cpu().numpy()


def single_click(points, labels, box, mask_input, multimask: bool) -> tuple[float, float] | None:
    """The click, when the prompts are what a scorer judges (one positive point, multimask output)."""
    if not multimask or box is not None or mask_input is not None or points is None:
        return None
    pts = np.asarray(points, float).reshape(-1, 2)
    if len(pts) != 1 or (labels is not None and int(np.asarray(labels).reshape(-1)[0]) != 1):
        return None
    return float(pts[0, 0]), float(pts[0, 1])


def rescored(prediction, scorer: CandidateScorer | None, guide: np.ndarray | None, point):
    """``prediction`` with its candidates reordered by the scorer's predicted IoU, which become
    its ``scores``; unchanged without a scorer, a guide or a click, or when all masks are empty."""
    if scorer is None or guide is None or point is None or len(prediction) < 2:
        return prediction
    masks = prediction.masks
    ious = predicted_ious(scorer, guide, masks, prediction.scores, point)
    if ious is None:
        return prediction
    order = np.argsort(-ious, kind="stable")
    return replace(prediction, scores=ious[order].astype(np.float32), logits=prediction.logits[order],
                   token_index=prediction.token_index[order], _masks=masks[order], _single={})

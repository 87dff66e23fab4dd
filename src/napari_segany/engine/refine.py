"""Boundary refinement of upscaled logits, guided by the image.

The mask decoder answers on a grid 4x coarser than the model frame (128 x 128
logits for a 512 frame): a nucleus 20 px across is 5 logit cells, and its
bilinearly upscaled boundary cannot follow the image to the pixel. A model may
carry a :class:`MaskRefiner`, a small convolutional net trained after the
model (``training/refiner.py``), that moves each mask's boundary to where the
image puts it. It works at the image's own resolution and only near the
boundary: in a band of about 1.5 logit cells around it, so it can neither
erase a mask's interior nor add distant regions. Inside that band it reads

- the image, scaled so that the median just inside the mask is 1 and the
  median just outside is 0 (the object's own contrast, whatever its brightness
  or polarity),
- the upscaled logits (squashed) and the mask they give.

:class:`napari_segany.Predictor` applies it to every mask it returns when the
loaded model has one (``model.refiner``); SAM checkpoints have none.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from torch import nn

#: Key prefix of a refiner's weights in our checkpoints (its settings: ``config["refiner"]``).
REFINER_PREFIX = "refiner."
#: Image pixels kept around a mask's bounding box as the net's context.
MARGIN = 12
#: Band half-width in logit cells, and its limits in image pixels.
BAND_CELLS, BAND_MIN, BAND_MAX = 1.5, 3.0, 12.0
#: Smallest |inside - outside| contrast used to scale the image (unit-range intensities).
MIN_CONTRAST = 0.05
#: Side of the tiles a large crop is refined in (only tiles that hold band pixels are computed).
TILE = 64


class MaskRefiner(nn.Module):
    """Residual correction of logits in a band around the mask boundary.

    Inputs, each B x 1 x h x w: the scaled image and the band (from
    :func:`net_inputs`) and the upscaled logits; output: the logits with a
    learnt correction added inside the band. The last layer starts at zero, so an untrained refiner changes
    nothing.
    """

    def __init__(self, width: int = 24, dilations: tuple[int, ...] = (2, 4, 8)) -> None:
        super().__init__()
        self.width, self.dilations = int(width), tuple(int(d) for d in dilations)
        layers = [nn.Conv2d(3, width, 3, padding=1)]
        layers += [nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in self.dilations]
        layers.append(nn.Conv2d(width, width, 3, padding=1))
        self.convs = nn.ModuleList(layers)
        self.out = nn.Conv2d(width, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def reach(self) -> int:
        """How far (px) an output pixel sees: the sum of the convolutions' radii."""
        return 1 + sum(self.dilations) + 1

    @property
    def config(self) -> dict:
        """What :func:`build_refiner` needs to rebuild this net (stored in checkpoints)."""
        return {"width": self.width, "dilations": list(self.dilations)}

    def forward(self, guide: torch.Tensor, band: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        x = torch.cat([guide, torch.tanh(logits / 4.0), (logits > 0).to(logits.dtype)], 1)
        # channels-last runs the convolutions about 2x faster on CPUs; the same sums up to rounding
        x = x.contiguous(memory_format=torch.channels_last)
        for conv in self.convs:
            x = F.relu(conv(x))
        return torch.where(band > 0, logits + self.out(x), logits)


def build_refiner(config: dict) -> MaskRefiner:
    """A :class:`MaskRefiner` from a checkpoint's ``config["refiner"]``."""
    try:
        return MaskRefiner(width=int(config["width"]), dilations=tuple(config["dilations"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"The checkpoint's refiner settings {config!r} are incomplete ({err}); "
                         "the file is damaged or from another program: reinstall or re-export it.") from None


def guide_from_unit(unit: np.ndarray) -> np.ndarray:
    """The image a refiner reads: an H x W x C image in [0, 1] with its channels averaged (float32)."""
    if unit.shape[-1] == 1:  # one channel: the image itself, not a second full-size copy
        return unit[..., 0]
    return unit.mean(-1, dtype=np.float32)


def logit_cell(image_shape: tuple[int, ...], low_res_size: int) -> float:
    """Image pixels per logit cell, for an image of ``image_shape`` (rows, cols, ...) answered on a
    ``low_res_size`` logit grid (the longest side fills the model frame)."""
    return max(image_shape[:2]) / low_res_size


def band_radius(cell: float) -> float:
    """Half-width in image pixels of the band refined around a boundary, for logit cells of
    ``cell`` image pixels."""
    return float(np.clip(BAND_CELLS * cell, BAND_MIN, BAND_MAX))


def object_crop(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The mask's bounding box grown by :data:`MARGIN` (clipped to the image), or None if empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    h, w = mask.shape
    return (slice(max(rows[0] - MARGIN, 0), min(rows[-1] + MARGIN + 1, h)),
            slice(max(cols[0] - MARGIN, 0), min(cols[-1] + MARGIN + 1, w)))


def net_inputs(guide: np.ndarray, logits: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """(scaled image, band) for one object's crop: ``guide`` and ``logits`` are h x w arrays of
    the crop (unit-range image, upscaled logits)."""
    mask = logits > 0
    band = _boundary_distance(mask) <= band_radius(cell)
    return _contrast(guide, guide[mask & band], guide[~mask & band])(guide), band


def _boundary_distance(mask: np.ndarray) -> np.ndarray:
    """Each pixel's distance to the nearest pixel on the other side of the mask's boundary."""
    return np.where(mask, ndi.distance_transform_edt(mask), ndi.distance_transform_edt(~mask))


def _contrast(guide: np.ndarray, inner: np.ndarray, outer: np.ndarray):
    """The image scaling of :func:`net_inputs`, from the band's values just inside and just outside."""
    fg = np.median(inner) if inner.size else guide.max()
    bg = np.median(outer) if outer.size else guide.min()
    contrast = fg - bg
    if abs(contrast) < MIN_CONTRAST:
        contrast = MIN_CONTRAST if contrast >= 0 else -MIN_CONTRAST
    return lambda values: np.clip((values - bg) / contrast, -3.0, 4.0).astype(np.float32)


def refine_logits(refiner: MaskRefiner, guide: np.ndarray, logits: torch.Tensor, cell: float) -> torch.Tensor:
    """K x H x W upscaled logits -> the same with each mask's boundary refined.

    ``guide``: the H x W image in [0, 1] (the predictor's intensity window,
    channels averaged); ``cell``: image pixels per logit cell. Empty masks are
    left as they are.
    """
    out = logits.clone()
    for k in range(len(out)):
        crop = object_crop(out[k].numpy() > 0)
        if crop is None:
            continue
        lg = out[k][crop].numpy()
        out[k][crop] = torch.from_numpy(_refine_crop(refiner, guide[crop], lg, cell))
    return out


def _run(refiner: MaskRefiner, *arrays: np.ndarray) -> np.ndarray:
    """The net on a batch of equal-sized windows: each array is B x h x w (scaled image, band, logits)."""
    device = next(refiner.parameters()).device
    as_input = [torch.from_numpy(np.ascontiguousarray(a, np.float32))[:, None].to(device) for a in arrays]
    with torch.inference_mode():
        return refiner(*as_input)[:, 0].float().cpu().numpy()


def _refine_at_once(refiner: MaskRefiner, guide: np.ndarray, lg: np.ndarray, cell: float) -> np.ndarray:
    """One object's crop refined as a whole (what the tiles of :func:`_refine_crop` reproduce)."""
    scaled, band = net_inputs(guide, lg, cell)
    return _run(refiner, scaled[None], band[None], lg[None])[0]


def _refine_crop(refiner: MaskRefiner, guide: np.ndarray, lg: np.ndarray, cell: float) -> np.ndarray:
    """One object's crop refined: where the band is a small part of a large crop (a large
    object's outline), only the :data:`TILE`-square tiles that hold it, with the same result."""
    mask = lg > 0
    radius = band_radius(cell)
    window = (TILE + 2 * refiner.reach) ** 2  # pixels the net computes per tile
    cores = _edge_cores(mask, radius) if window < 0.75 * lg.size else []  # one tile cannot beat a small crop
    # no edge (the mask fills its crop) or tiles that would cost about as much: the whole crop at once
    if not cores or len(cores) * window > 0.75 * lg.size:
        return _refine_at_once(refiner, guide, lg, cell)
    bands = [_core_band(mask, core, radius) for core in cores]
    scale = _contrast(guide, np.concatenate([guide[c][mask[c] & b] for c, b in zip(cores, bands)]),
                      np.concatenate([guide[c][~mask[c] & b] for c, b in zip(cores, bands)]))
    out = lg.copy()
    groups: dict[tuple[int, ...], list] = {}  # windows of one shape run as one batch
    for core, band in zip(cores, bands):
        win = _grown(core, refiner.reach, lg.shape)
        groups.setdefault(lg[win].shape, []).append((core, band, win))
    for group in groups.values():
        wins = [win for _, _, win in group]
        refined = _run(refiner, np.stack([scale(guide[w]) for w in wins]),
                       np.ones((len(wins),) + lg[wins[0]].shape, np.float32), np.stack([lg[w] for w in wins]))
        for (core, band, win), res in zip(group, refined):
            out[core] = np.where(band, res[_within(core, win)], lg[core])
    return out


def _grown(core: tuple[slice, slice], by: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    return tuple(slice(max(c.start - by, 0), min(c.stop + by, n)) for c, n in zip(core, shape))


def _within(core: tuple[slice, slice], win: tuple[slice, slice]) -> tuple[slice, slice]:
    """Where ``core`` lies in an array cut out at ``win`` (a window around it)."""
    return tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(core, win))


def _search(core: tuple[slice, slice], radius: float, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """``core`` grown by ``radius`` + 1: it holds the nearest pixel of the other side of every band
    pixel in ``core``, and an edge pixel for every core that holds band pixels."""
    return _grown(core, int(np.ceil(radius)) + 1, shape)


def _edge_cores(mask: np.ndarray, radius: float) -> list[tuple[slice, slice]]:
    """The :data:`TILE`-square cores of ``mask`` within ``radius`` + 1 px of its boundary, the
    only ones that can hold band pixels."""
    edge = np.zeros(mask.shape, bool)  # pixels with a 4-neighbour on the other side
    rows, cols = mask[1:] != mask[:-1], mask[:, 1:] != mask[:, :-1]
    edge[1:] |= rows
    edge[:-1] |= rows
    edge[:, 1:] |= cols
    edge[:, :-1] |= cols
    h, w = mask.shape
    cores = [(slice(r, min(r + TILE, h)), slice(c, min(c + TILE, w)))
             for r in range(0, h, TILE) for c in range(0, w, TILE)]
    return [core for core in cores if edge[_search(core, radius, mask.shape)].any()]


def _core_band(mask: np.ndarray, core: tuple[slice, slice], radius: float) -> np.ndarray:
    """:func:`net_inputs`'s band in ``core``, exactly: distances are measured in its :func:`_search`
    window."""
    win = _search(core, radius, mask.shape)
    m = mask[win]
    if m.all() or not m.any():  # one side only (the edge's other pixel lies just outside): no band
        return np.zeros(mask[core].shape, bool)
    return _boundary_distance(m)[_within(core, win)] <= radius

"""A model's instance head: where the objects of an image are, read off its embedding.

Segmenting everything with a grid of prompts asks the mask decoder hundreds of times, most of them
about background or about an object already found. A model may carry an :class:`InstanceHead`, a
small convolutional net trained after the model (``training/instance_head.py``) with the encoder
frozen, that reads the image embedding once and answers on the decoder's low-resolution grid (4 x
the embedding's):

- ``foreground``: the probability that a cell lies in an object;
- ``depth``: how deep inside its object a cell lies, its distance to the object's boundary divided
  by the largest such distance in that object (1 at the object's core, falling to 0 at its edge).

Cores (depth above one half) of touching objects stay apart where their outlines do not, so they
seed one object each: :mod:`napari_segany.auto.head` turns them into point and box prompts for the
mask decoder, which draws each object's outline (micro-sam calls this "automatic prompt
generation"). Only our own models have a head; SAM checkpoints have none.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from scipy import ndimage
from skimage.segmentation import watershed
from torch import nn

#: Key prefix of a head's weights in our checkpoints (its settings: ``config["instance_head"]``).
HEAD_PREFIX = "instance_head."
#: The maps the head predicts, in channel order.
MAPS = ("foreground", "depth")
#: Foreground probability above which a cell belongs to an object.
FOREGROUND = 0.5
#: Depth above which a foreground cell belongs to its object's core (a seed).
CORE = 0.5


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.GELU())


class InstanceHead(nn.Module):
    """Embedding B x C x g x g -> logits of the maps (:data:`MAPS`), B x 2 x 4g x 4g."""

    def __init__(self, in_channels: int = 256, width: int = 64) -> None:
        super().__init__()
        self.in_channels, self.width = int(in_channels), int(width)
        w = self.width
        self.reduce = nn.Sequential(nn.Conv2d(self.in_channels, w, 1), nn.GroupNorm(8, w), nn.GELU())
        self.coarse = _block(w, w)
        self.up1 = nn.ConvTranspose2d(w, w // 2, 2, stride=2)
        self.mid = _block(w // 2, w // 2)
        self.up2 = nn.ConvTranspose2d(w // 2, w // 2, 2, stride=2)
        self.fine = _block(w // 2, w // 2)
        self.out = nn.Conv2d(w // 2, len(MAPS), 1)

    @property
    def config(self) -> dict:
        """What :func:`build_instance_head` needs to rebuild this net (stored in checkpoints)."""
        return {"in_channels": self.in_channels, "width": self.width, "maps": list(MAPS)}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.coarse(self.reduce(features))
        h = self.mid(self.up1(h))
        return self.out(self.fine(self.up2(h)))


def build_instance_head(config: dict) -> InstanceHead:
    """An :class:`InstanceHead` from a checkpoint's ``config["instance_head"]``."""
    try:
        if list(config["maps"]) != list(MAPS):
            raise ValueError(f"maps {config['maps']} are not {list(MAPS)}")
        width = int(config["width"])
        if width < 16 or width % 16:
            raise ValueError(f"width {width} is not a multiple of 16")
        return InstanceHead(in_channels=int(config["in_channels"]), width=width)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"The checkpoint's instance head settings {config!r} do not fit this version ({err}); "
                         "the file is damaged or from another program: reinstall or re-export it.") from None


def head_maps(head: InstanceHead, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(foreground probability, depth), each n x n float32 on the decoder's low-res grid, of one
    embedding's ``features`` (C x g x g)."""
    param = next(itertools.chain(head.parameters(), head.buffers()))
    x = torch.from_numpy(np.ascontiguousarray(features, np.float32))[None].to(param.device, param.dtype)
    with torch.inference_mode():
        out = torch.sigmoid(head(x)[0].float()).cpu().numpy()
    return out[0], out[1]


def head_targets(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(foreground, depth, valid) float32 targets of the maps from a
    :func:`~napari_segany.engine.low_res.label_grid` of an image's labels: depth is
    each cell's distance to its object's boundary (background and other objects alike) over the
    largest in that object; cells outside the image are not valid."""
    valid = grid >= 0
    ids = np.where(valid, grid, 0)
    fg = (ids > 0).astype(np.float32)
    depth = np.zeros(grid.shape, np.float32)
    for i, box in enumerate(ndimage.find_objects(ids), start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        inside = ids[box] == i
        dist = ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
        depth[box][inside] = (dist[inside] / dist.max()).astype(np.float32)
    return fg, depth, valid.astype(np.float32)


def head_seeds(foreground: np.ndarray, depth: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Seeds (int32, 1..K, 0 elsewhere) on the low-res grid: the 4-connected parts of the
    foreground deeper than :data:`CORE`; ``valid`` (bool) marks the cells inside the image."""
    core = (foreground > FOREGROUND) & (depth > CORE)
    if valid is not None:
        core &= valid
    seeds, _ = ndimage.label(core)
    return seeds.astype(np.int32)


def head_regions(foreground: np.ndarray, depth: np.ndarray, seeds: np.ndarray,
                 valid: np.ndarray | None = None) -> np.ndarray:
    """Each seed grown over the foreground by a watershed on the depth (int32, as ``seeds``)."""
    mask = foreground > FOREGROUND
    if valid is not None:
        mask &= valid
    return watershed(-depth, seeds, mask=mask | (seeds > 0)).astype(np.int32)


def seed_matches(seeds: np.ndarray, grid: np.ndarray) -> tuple[int, int, int]:
    """(objects found by exactly one seed that covers no other object, objects, seeds) of
    :func:`head_seeds` against a :func:`~napari_segany.engine.low_res.label_grid` of the truth:
    recall and precision of the seeds one to one."""
    objects = int(np.count_nonzero(np.unique(grid) > 0))
    owners = []
    for box_i, box in enumerate(ndimage.find_objects(seeds), start=1):
        if box is None:
            continue
        under = np.unique(grid[box][seeds[box] == box_i])
        under = under[under > 0]
        if len(under) == 1:
            owners.append(int(under[0]))
    found = sum(1 for i in set(owners) if owners.count(i) == 1)
    return found, objects, int(seeds.max(initial=0))

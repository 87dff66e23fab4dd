"""The slices of a volume and its one intensity window, read without loading the volume whole."""

from __future__ import annotations

import numpy as np

from ..engine.preprocess import DEFAULT_PERCENTILES, intensity_window
from .checks import check_channel

__all__ = ["take_slice", "volume_window"]

WINDOW_SAMPLE_SLICES = 16
WINDOW_SAMPLE_PIXELS = 250_000  # per sampled slice


def take_slice(volume, axis: int, index: int):
    """``volume`` indexed at ``index`` along ``axis`` (a view for numpy arrays)."""
    return volume[(slice(None),) * axis + (index,)]


def single_valued(plane) -> bool:
    """Every pixel of this slice (all channels) holds one value, as the padding slices of a
    registered MRI volume or the ends of a stack do: there is nothing to see, and whatever the
    model answered there would be a guess."""
    plane = np.asarray(plane)
    return plane.size > 0 and bool(plane.min() == plane.max())


def volume_window(volume, axis: int = 0, *, channel: int | None = None,
                  contrast_limits=None, percentiles=DEFAULT_PERCENTILES) -> tuple[float, float]:
    """One intensity window for every slice of ``volume``.

    ``contrast_limits`` if given; otherwise the robust ``percentiles`` of a
    subsample: at most 16 evenly spaced slices along ``axis``, each read on a
    grid of at most 250,000 pixels (the volume is never loaded whole). Slices
    of a single value (padding, see :func:`single_valued`) are left out of the
    sample, as they are left out of segmentation; where all 16 are such slices,
    twice as many are read, and so on, until one is not (or every slice has been:
    then the 16 give the window, as for any volume).
    """
    channel = check_channel(channel, tuple(volume.shape))
    if contrast_limits is not None:
        return intensity_window(np.zeros((1, 1, 1)), contrast_limits=contrast_limits)
    n = volume.shape[axis]
    parts, padding, seen, count = [], [], set(), WINDOW_SAMPLE_SLICES
    while not parts and len(seen) < n:
        picks = np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(int))
        for i in (int(i) for i in picks if int(i) not in seen):
            seen.add(i)
            plane = np.asarray(take_slice(volume, axis, i))
            if not single_valued(plane):
                parts.append(_sample(plane, channel))
            elif count == WINDOW_SAMPLE_SLICES:  # only the first round: a volume of padding alone gets
                # the window it always got, without a sample of each of its slices held at once
                padding.append(_sample(plane, channel))
        count *= 2
    return intensity_window(np.concatenate(parts or padding), percentiles=percentiles)


def _sample(plane: np.ndarray, channel: int | None) -> np.ndarray:
    """The channels the window is taken over, on a grid of at most WINDOW_SAMPLE_PIXELS pixels, as
    (pixels, 1, channels)."""
    if plane.ndim == 3:
        plane = plane[..., channel:channel + 1] if channel is not None else plane[..., :3]
    else:
        plane = plane[..., None]
    step = max(1, int(np.ceil(np.sqrt(plane.shape[0] * plane.shape[1] / WINDOW_SAMPLE_PIXELS))))
    return plane[::step, ::step].reshape(-1, 1, plane.shape[-1])

"""Image preparation for the encoder and the geometry between image and model frames.

Public coordinates are (row, col) in pixels of the 2D image; the model works
in (x, y) pixels of its square, padded input. Every conversion between the
two lives here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# ImageNet statistics on the 0-255 scale, as the SAM checkpoints were trained.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
DEFAULT_PERCENTILES = (1.0, 99.8)
MIN_SIDE = 8
# Pixels used to estimate percentiles; larger images are subsampled on a grid.
PERCENTILE_SAMPLES = 4_000_000


def as_2d_channels(image, *, channel: int | None = None, rgb: bool | None = None) -> np.ndarray:
    """Validate an image and return it as H x W x C (C = 1 or 3) without rescaling.

    ``image`` is (H, W), (H, W, 3|4) RGB(A), or (H, W, C) with ``channel``
    naming the channel to use. ``rgb=False`` forces a 3-wide last axis to be
    read as three channels that need ``channel``.
    """
    if not isinstance(image, np.ndarray):
        if hasattr(image, "__array__"):
            image = np.asarray(image)
        else:
            raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype == bool or not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise TypeError(
            f"image has dtype {image.dtype}; pass an integer or floating-point array "
            "(convert booleans or complex data first)"
        )
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape}); pass an image with pixels")
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, (int, np.integer))):
        raise TypeError(f"channel must be a whole number (the index of a channel), got {channel!r}")
    if image.ndim == 2:
        if channel not in (None, 0):
            raise ValueError("channel= was given but the image is 2D (a single channel)")
        out = image[..., None]
    elif image.ndim == 3:
        if channel is not None:
            if not -image.shape[2] <= channel < image.shape[2]:
                raise ValueError(f"channel={channel} is out of range for an image with {image.shape[2]} channels")
            out = image[..., channel : channel + 1] if channel >= 0 else image[..., [channel]]
        elif image.shape[2] in (3, 4) and rgb is not False:
            out = image[..., :3]
        else:
            raise ValueError(
                f"image has shape {image.shape}: a 3D array is read as (H, W, channels); "
                "pass channel=i to pick one channel, or pass one 2D slice of a volume, e.g. volume[z]"
            )
    else:
        raise ValueError(
            f"image has {image.ndim} dimension(s), shape {image.shape}; pass a 2D image (H, W), "
            "an RGB(A) image (H, W, 3|4), or one 2D slice of a volume, e.g. volume[z]"
        )
    if min(out.shape[:2]) < MIN_SIDE:
        raise ValueError(f"image is {out.shape[0]} x {out.shape[1]} pixels; both sides must be at least {MIN_SIDE}")
    return out


def intensity_window(
    image: np.ndarray,
    *,
    contrast_limits: tuple[float, float] | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> tuple[float, float]:
    """The (low, high) intensities mapped to 0 and 255.

    Order of precedence: explicit ``contrast_limits``; full range 0-255 for
    uint8 RGB; otherwise the robust ``percentiles`` of the finite pixels
    (all channels pooled, so colour balance is kept).
    """
    if contrast_limits is not None:
        try:
            lo, hi = (float(v) for v in contrast_limits)
        except (TypeError, ValueError):
            raise ValueError("contrast_limits must be two finite numbers with low < high, "
                             f"got {contrast_limits!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
            raise ValueError(f"contrast_limits must be two finite numbers with low < high, got {contrast_limits}")
        return lo, hi
    try:
        p_lo, p_hi = (float(v) for v in percentiles)
    except (TypeError, ValueError):
        p_lo = p_hi = float("nan")
    if not (0.0 <= p_lo < p_hi <= 100.0):
        raise ValueError(f"percentiles must be two numbers with 0 <= low < high <= 100, got {percentiles!r}")
    if image.dtype == np.uint8 and image.shape[-1] == 3:
        return 0.0, 255.0
    flat = image.reshape(-1)
    if flat.size > PERCENTILE_SAMPLES:
        flat = flat[:: int(np.ceil(flat.size / PERCENTILE_SAMPLES))]
    if np.issubdtype(flat.dtype, np.floating):
        flat = flat[np.isfinite(flat)]
        if flat.size == 0:
            raise ValueError("image has no finite values (all NaN or infinite); check how it was loaded")
    lo, hi = (float(v) for v in np.percentile(flat, percentiles))
    if hi <= lo:
        lo, hi = float(flat.min()), float(flat.max())
    return lo, hi


def to_unit_range(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Map ``window`` linearly to [0, 1] in float32, clipping outside it;
    non-finite pixels become 0. A constant image maps to zeros, with a warning."""
    lo, hi = window
    if hi <= lo:
        warnings.warn(
            "the image is constant: there is nothing for the model to segment; "
            "the result will be meaningless", UserWarning, stacklevel=3,
        )
        return np.zeros(image.shape, np.float32)
    # one float32 array, computed in place (a 20000 px image is 1.6 GB per copy); the input is never written
    out = np.subtract(image, np.float32(lo), dtype=np.float32)
    out *= np.float32(1.0 / (hi - lo))
    bad = ~np.isfinite(out) if np.issubdtype(image.dtype, np.floating) else None
    np.clip(out, 0.0, 1.0, out=out)
    if bad is not None:
        out[bad] = 0.0
    return out


@dataclass(frozen=True)
class Geometry:
    """How an H x W image sits in the model's S x S input.

    ``profile`` "sam": longest side resized to S, zero-padded bottom/right.
    ``profile`` "medsam": stretched to S x S.
    ``max_upscale``: an image smaller than the frame is enlarged at most this much and padded
    beyond (None: resized to fill the frame, as SAM does).
    """

    original_size: tuple[int, int]
    input_size: tuple[int, int]  # resized (h, w) inside the S x S frame
    model_size: int
    profile: str = "sam"
    max_upscale: float | None = None

    @classmethod
    def for_image(cls, original_size: tuple[int, int], model_size: int, profile: str = "sam",
                  max_upscale: float | None = None) -> "Geometry":
        h, w = original_size
        if profile == "medsam":
            return cls((h, w), (model_size, model_size), model_size, profile)
        scale = model_size / max(h, w)
        if max_upscale is not None and scale > max_upscale:
            scale = float(max_upscale)
        size = (int(h * scale + 0.5), int(w * scale + 0.5))
        if min(size) < 1:
            raise ValueError(f"image is {h} x {w} pixels: fitted into the model's {model_size} px frame its "
                             f"short side would be under one pixel; cut it into pieces of a more square "
                             f"shape (at most about {model_size} times longer than wide) and segment each")
        return cls((h, w), size, model_size, profile, max_upscale)

    def for_other(self, original_size: tuple[int, int]) -> "Geometry":
        """How an image of ``original_size`` (a crop, a mirrored view) sits in the same frame, by
        the same rules (profile, the cap on enlarging)."""
        return Geometry.for_image(original_size, self.model_size, self.profile, self.max_upscale)

    def points_to_model(self, rowcol: np.ndarray) -> np.ndarray:
        """... x 2 (row, col) image pixels -> ... x 2 (x, y) model pixels."""
        rowcol = np.asarray(rowcol, dtype=np.float64)
        sy = self.input_size[0] / self.original_size[0]
        sx = self.input_size[1] / self.original_size[1]
        return np.stack([rowcol[..., 1] * sx, rowcol[..., 0] * sy], axis=-1).astype(np.float32)

    def box_to_model(self, box: np.ndarray) -> np.ndarray:
        """... x 4 (min_row, min_col, max_row, max_col) -> ... x 4 XYXY model pixels."""
        box = np.asarray(box, dtype=np.float64)
        corners = self.points_to_model(box.reshape(*box.shape[:-1], 2, 2))
        return corners.reshape(*box.shape[:-1], 4)


def resized_input(unit: np.ndarray, geometry: Geometry, device: torch.device) -> torch.Tensor:
    """H x W x C image in [0, 1] -> 1 x 3 x h x w, resized to ``geometry.input_size``."""
    x = torch.from_numpy(np.ascontiguousarray(unit)).to(device)
    x = x.permute(2, 0, 1)[None]
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[-2:]) != geometry.input_size:
        x = F.interpolate(x, size=geometry.input_size, mode="bilinear", align_corners=False, antialias=True)
    return x


def encoder_input(unit: np.ndarray, geometry: Geometry, device: torch.device) -> torch.Tensor:
    """H x W x C image in [0, 1] -> 1 x 3 x S x S encoder input."""
    return finished_input(resized_input(unit, geometry, device), geometry)


def finished_input(x: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """A resized 1 x 3 x h x w image in [0, 1] -> the encoder input: normalised and padded to S x S
    (MedSAM: as it is)."""
    device = x.device
    if geometry.profile == "medsam":
        return x.contiguous()
    mean = torch.tensor(PIXEL_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=device).view(1, 3, 1, 1)
    x = (x * 255.0 - mean) / std
    pad_h = geometry.model_size - geometry.input_size[0]
    pad_w = geometry.model_size - geometry.input_size[1]
    return F.pad(x, (0, pad_w, 0, pad_h))


def upscale_logits(logits: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """... x h x w low-res logits -> ... x H x W logits at the image's size.

    For the "sam" profile: upsample to S x S, crop the unpadded region, resize
    to the original size (both bilinear). For "medsam": one bilinear resize.
    """
    x = F.interpolate(_in_frame(logits, geometry), size=geometry.original_size, mode="bilinear",
                      align_corners=False)
    return x.reshape(*logits.shape[:-2], *geometry.original_size)


def _in_frame(logits: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """... x h x w low-res logits -> N x 1 x h' x w' logits of the image's part of the model frame
    ("sam": upsampled to S x S and cropped to the unpadded region; "medsam": as they are)."""
    x = logits.reshape(-1, 1, *logits.shape[-2:]).float()
    if geometry.profile != "medsam":
        s = geometry.model_size
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        x = x[..., : geometry.input_size[0], : geometry.input_size[1]]
    return x


#: Images of at least this many pixels are handled without full-size copies: masks are upscaled
#: only in the window around the object (:func:`object_window`), mirrored views are mirrored after
#: the resize (a full-size float32 copy of a 20000 px image is 1.6 GB).
LARGE_IMAGE_PIXELS = 4096 * 4096


def object_window(logits: np.ndarray, geometry: Geometry, margin: int = 16) -> tuple[slice, slice] | None:
    """The image rows and columns outside of which every candidate of ``logits`` (K x h x w,
    low-res) upscales to <= 0, i.e. holds no mask pixel, grown by ``margin`` pixels (at least the
    boundary refiner's reach) and one cell of interpolation support; None when no logit is > 0."""
    positive = np.asarray(logits > 0).reshape(-1, *logits.shape[-2:]).any(0)
    rows, cols = np.flatnonzero(positive.any(1)), np.flatnonzero(positive.any(0))
    if rows.size == 0:
        return None
    out = []
    for cells, n_low, size, inner in ((rows, positive.shape[0], geometry.original_size[0], geometry.input_size[0]),
                                      (cols, positive.shape[1], geometry.original_size[1], geometry.input_size[1])):
        frame = geometry.model_size if geometry.profile != "medsam" else size
        per_cell = (frame / n_low) * (size / inner if geometry.profile != "medsam" else 1.0)
        reach = margin + 2 * math.ceil(size / inner if geometry.profile != "medsam" else size / n_low)
        start = math.floor((cells[0] - 1) * per_cell) - reach
        stop = math.ceil((cells[-1] + 2) * per_cell) + reach
        out.append(slice(max(0, start), min(size, stop)))
    return out[0], out[1]


def upscale_logits_window(logits: torch.Tensor, geometry: Geometry, rows: slice, cols: slice) -> torch.Tensor:
    """:func:`upscale_logits` computed only for the image window ``rows`` x ``cols``: the same
    values to float rounding (within 1e-6), without the full-size array."""
    lead = logits.shape[:-2]
    x = _in_frame(logits, geometry)[:, 0]
    r0, r1, rw0, rw1 = _linear_taps(geometry.original_size[0], x.shape[-2], rows)
    c0, c1, cw0, cw1 = _linear_taps(geometry.original_size[1], x.shape[-1], cols)
    top, bottom = x[:, r0], x[:, r1]
    out = (rw0[:, None] * (cw0 * top[..., c0] + cw1 * top[..., c1])
           + rw1[:, None] * (cw0 * bottom[..., c0] + cw1 * bottom[..., c1]))
    return out.reshape(*lead, *out.shape[-2:])


def _linear_taps(n_out: int, n_in: int, window: slice):
    """Source indices and weights of torch's bilinear resize (align_corners=False) from ``n_in`` to
    ``n_out`` samples, for the output samples in ``window``."""
    scale = np.float32(n_in) / np.float32(n_out)
    dst = np.arange(window.start, window.stop)
    src = np.maximum((np.float64(scale) * (dst + 0.5) - 0.5).astype(np.float32), np.float32(0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0).astype(np.float32)
    return torch.from_numpy(i0), torch.from_numpy(i1), torch.from_numpy(np.float32(1) - w1), torch.from_numpy(w1)


def mask_to_logits(mask: np.ndarray, geometry: Geometry, low_res: int, magnitude: float = 8.0) -> np.ndarray:
    """A full-resolution binary mask -> low-res logits usable as ``mask_input``.

    The mask is placed in the model frame like the image (resize + pad),
    area-averaged down to ``low_res`` x ``low_res`` and mapped to
    [-magnitude, +magnitude] (the decoder reads logits, not probabilities).
    """
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    m = F.interpolate(m, size=geometry.input_size, mode="bilinear", align_corners=False, antialias=True)
    if geometry.profile != "medsam":
        s = geometry.model_size
        m = F.pad(m, (0, s - geometry.input_size[1], 0, s - geometry.input_size[0]))
    m = F.interpolate(m, size=(low_res, low_res), mode="area")
    return ((m[0, 0] * 2.0 - 1.0) * magnitude).numpy().astype(np.float32)

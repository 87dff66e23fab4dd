"""Small objects at a higher resolution: prompts answered from an enlarged crop.

A model sees the whole image in one square frame (512 px for the included
model, 1024 for SAM), so on a large image, or for small objects, an object a
few pixels across covers a fraction of one embedding token and its mask is
coarse. :class:`ZoomPredictor` encodes a crop around the object instead — the
box, or for clicks the mask of a first pass on the whole image — chosen so
that the object fills about ``object_fraction`` of the frame, with pixels
enlarged at most ``max_scale`` times, and returns masks at the image's size.
Inside the crop the answer averages the crop's logits with the whole image's
for the same prompts (``blend``): two scales of one model, like the mirrored
views of :mod:`napari_segany.engine.views`. Crops are encoded with the whole image's
intensity window, or (``contrast="object"``) with one narrowed to the object,
so that a dim object beside bright ones is shown at full contrast. Crop
embeddings are computed on demand and the last few are kept.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from dataclasses import replace

import numpy as np
import torch

from .crop_geometry import (BLEND, BLEND_GAIN, CONTRASTS, MAX_SCALE, MIN_GAIN, OBJECT_FRACTION, Window,
                            blend_weight, prompt_extent, prompt_points, zoom_window)
from .identity import image_fingerprint
from .predictor import ImageEmbedding, Prediction, Predictor
from .preprocess import DEFAULT_PERCENTILES, Geometry, as_2d_channels, mask_to_logits, object_window, upscale_logits
from .prompts import check_mask_input
from .regions import REFINER_REACH, best_overlap, fits, is_large, masks_from, pasted, shifted
from .scoring import single_click

# contrast="object": a crop's window keeps the image's low end and ends at the upper percentile of the
# pixels around the object (its extent grown by this fraction of its size on every side), when that is
# lower; set before measuring, like the percentile (the image window's own), not chosen on any data.
# Not the default: on generated scenes of dim nuclei beside condensed bright ones it helped, on the
# usual generated scenes and the real nuclei it did not (training/HISTORY.md).
OBJECT_CONTEXT = 0.25


__all__ = ["BLEND", "BLEND_GAIN", "CONTRASTS", "MAX_SCALE", "MIN_GAIN", "OBJECT_FRACTION", "Window",
           "ZoomPredictor", "blend_weight", "zoom_window"]

_LATEST = object()


class ZoomPredictor:
    """A :class:`Predictor` that segments small objects from an enlarged crop.

    Use it like a Predictor: ``set_image`` then ``predict``. Prompts with a
    box are answered in the crop :func:`zoom_window` gives for the box; clicks
    get a first answer on the whole image, whose best mask sets the crop (the
    smallest crop around the clicks when that mask is empty: the object may be
    too small for the whole image's frame); when the crop's own mask calls for
    a crop at least ``MIN_GAIN`` times smaller, the click is answered there.
    Where no crop enlarges the object enough, the answer is the Predictor's.
    When refining with ``mask_input``, the crop is kept while the prompts stay
    inside it; otherwise a new crop is chosen and the previous mask carried
    over to it. The predictor's own state is never changed (every answer
    names its embedding), and one ZoomPredictor may be called from several
    threads: its crop cache is guarded.

    Parameters
    ----------
    predictor : Predictor
    object_fraction : float
        Target size of the object as a fraction of the crop's side.
    max_scale : float
        Largest enlargement of image pixels in the model frame.
    blend : float
        Weight of the whole image's logits in the answer inside the crop while
        the crop enlarges the image at most ``BLEND_GAIN`` (1.5) times more
        than the whole image's frame does; beyond, the weight falls with the
        square of that gain (:func:`blend_weight`). The two answers are
        each boundary-refined at their own scale, then averaged; the mask is
        where the average is positive, with the prompted regions kept as
        :class:`Predictor` keeps them. Outside the crop the whole image's
        answer stands. 0 answers from the crop alone. Each candidate of the
        crop is paired with the whole image's candidate whose mask overlaps it
        most. Scores and logits (for ``mask_input``) stay the crop's.
    contrast : {"image", "object"}
        The intensity window of a crop: ``"image"`` encodes every crop with
        the whole image's window; ``"object"`` keeps its low end and lowers
        its high end to the upper percentile (99.8) of the pixels around the
        object (:meth:`object_limits`), so a dim object beside bright ones is
        seen at full contrast. Single-channel images only; RGB crops keep the
        image's window.
    cache_size : int
        Crop embeddings kept for reuse.
    crops : callable, optional
        ``crops(window, image_crop, encode_kwargs) -> ImageEmbedding | None``
        supplies crop embeddings instead of encoding them here (the napari
        widget computes them in a worker); None means "not yet", and the
        whole image answers meanwhile.
    """

    def __init__(self, predictor: Predictor, *, object_fraction: float = OBJECT_FRACTION,
                 max_scale: float = MAX_SCALE, blend: float = BLEND, contrast: str = "image", cache_size: int = 8,
                 crops=None) -> None:
        if not isinstance(predictor, Predictor):
            raise TypeError(f"predictor must be a napari_segany Predictor, got {type(predictor).__name__}")
        if not 0 < object_fraction <= 1:
            raise ValueError(f"object_fraction must be in (0, 1], got {object_fraction}")
        if max_scale <= 0:
            raise ValueError(f"max_scale must be positive, got {max_scale}")
        if not 0 <= blend < 1:
            raise ValueError(f"blend must be in [0, 1) (the whole image's share of the answer), got {blend}")
        if contrast not in CONTRASTS:
            raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
        self.predictor = predictor
        self.object_fraction, self.max_scale, self.cache_size = object_fraction, max_scale, cache_size
        self.contrast = contrast
        self.blend = float(blend)
        self._crops_from = crops
        self._image = None
        self._full: ImageEmbedding | None = None
        self._crops: OrderedDict[Window, ImageEmbedding] = OrderedDict()
        self._last: Prediction | None = None
        self._lock = threading.RLock()

    def set_image(self, image, *, channel: int | None = None, rgb: bool | None = None, **kwargs) -> ImageEmbedding:
        """Encode the whole image (keywords as :meth:`Predictor.encode`); crops reuse its intensity window."""
        embedding = self.predictor.encode(image, channel=channel, rgb=rgb, **kwargs)
        self.attach(embedding, image, channel=channel, rgb=rgb)
        return embedding

    def attach(self, embedding: ImageEmbedding, image, *, channel: int | None = None,
               rgb: bool | None = None) -> None:
        """Use an embedding computed elsewhere (a cache, a worker) for ``image``; the keywords
        are those it was encoded with."""
        if tuple(embedding.original_size) != tuple(np.shape(image)[:2]):
            raise ValueError(f"the embedding is of a {embedding.original_size} image, not of this "
                             f"{np.shape(image)[:2]} one")
        self.predictor._bind(embedding)  # this model's, or a sentence saying to recompute it
        if embedding.image_id.startswith("px:") and \
                image_fingerprint(as_2d_channels(image, channel=channel, rgb=rgb)) != embedding.image_id:
            raise ValueError("the embedding was computed from other pixels than this image's (another image, "
                             "slice or channel, or the data changed since); encode this image again")
        with self._lock:
            self._full, self._image, self._channels = embedding, image, {"channel": channel, "rgb": rgb}
            self._crops.clear()
            self._last = None

    @property
    def embedding(self) -> ImageEmbedding | None:
        """The whole image's embedding."""
        return self._full

    def window_for(self, extent) -> Window | None:
        """The crop used for an object spanning ``extent``, or None for the whole image."""
        if self._full is None:
            raise RuntimeError("no image is set: call set_image(image) first")
        window = zoom_window(extent, self._full.original_size, self.predictor.model.image_size,
                             object_fraction=self.object_fraction, max_scale=self.max_scale)
        if window is None or self.contrast == "image":
            return window
        return replace(window, limits=self.object_limits(extent))

    def object_limits(self, extent) -> tuple[float, float] | None:
        """The intensity window for a crop of the object spanning ``extent``: the whole image's low
        end, and the 99.8th percentile of the pixels within the extent grown by ``OBJECT_CONTEXT`` of
        its size on every side as the high end, when that lies inside the image's window (and is
        at least 2 % of it above the low end); None (the image's window) otherwise or for RGB."""
        lo, hi = self._full.window
        r0, c0, r1, c1 = (float(v) for v in extent)
        gr, gc = OBJECT_CONTEXT * (r1 - r0 + 1), OBJECT_CONTEXT * (c1 - c0 + 1)
        h, w = self._full.original_size
        rows = slice(max(0, math.floor(r0 - gr)), min(h, math.ceil(r1 + gr) + 1))
        cols = slice(max(0, math.floor(c0 - gc)), min(w, math.ceil(c1 + gc) + 1))
        region, channel = np.asarray(self._image[rows, cols]), self._channels["channel"]
        if region.ndim == 3 and channel is not None:
            region = region[..., channel]
        if region.ndim != 2:  # RGB: one window for the colours
            return None
        pixels = region[np.isfinite(region)] if region.dtype.kind == "f" else region.reshape(-1)
        if pixels.size == 0:
            return None
        top = float(np.percentile(pixels, DEFAULT_PERCENTILES[1]))
        return (lo, top) if lo + 0.02 * (hi - lo) < top < hi else None

    def predict(self, points=None, labels=None, box=None, mask_input=None, multimask: bool = True,
                mask_window=_LATEST) -> Prediction:
        """Candidate masks for one object (arguments as :meth:`Predictor.predict`).

        ``mask_window``: where ``mask_input`` lives, a ``Prediction.window``
        (None: the whole image, e.g. from ``predictor.mask_prompt``); it may
        be omitted when ``mask_input`` is one of the latest prediction's
        logits. The result's ``window`` says where its ``logits`` live.
        """
        with self._lock:
            return self._predict(points, labels, box, mask_input, multimask, mask_window)

    def _predict(self, points, labels, box, mask_input, multimask, mask_window) -> Prediction:
        if self._full is None:
            raise RuntimeError("no image is set: call set_image(image) first")
        prompts = {"points": points, "labels": labels, "box": box}
        source = first = previous = None  # previous: mask_input as a full-size mask, made only when needed
        clicked = mask_input is None and box is None
        if mask_input is not None:
            mask_input = check_mask_input(mask_input, self.predictor.model.low_res_size)
            source = self._latest_window(mask_input) if mask_window is _LATEST else mask_window
            window = source
            if source is None or not source.contains(prompt_points(points, box)):
                previous = self._full_mask(mask_input, source)
                window = self.window_for(prompt_extent(points, box, previous))
        elif box is not None:
            window = self.window_for(prompt_extent(points, box))
        else:  # clicks: the whole image's best mask gives the object's extent (if it found none,
            # the object may be too small for the whole image: the smallest crop around the points)
            first = self._answer(None, multimask=multimask, **prompts)
            window = self.window_for(prompt_extent(points, mask=first.mask(0)))
        if window is not None and self._embedding(window) is None:
            window = None  # the crop's embedding is not ready: answer on the whole image meanwhile
        if first is not None and window is None:
            return self._rescored(first, prompts, multimask)
        whole_input = mask_input
        if mask_input is not None and window != source:
            if previous is None:
                previous = self._full_mask(mask_input, source)
            mask_input = mask_to_logits(self._crop(window, previous), self._geometry(window),
                                        self.predictor.model.low_res_size)
        if window is not None and self.blend > 0 and first is None:  # the whole image's answer to blend in
            if whole_input is not None and source is not None:  # mask_input lives in a crop: carry it over
                if previous is None:
                    previous = self._full_mask(whole_input, source)
                whole_input = mask_to_logits(previous, self._full.geometry, self.predictor.model.low_res_size)
            first = self.predictor._predict(mask_input=whole_input, multimask=multimask, embedding=self._full,
                                            **prompts)
        res = self._answer(window, mask_input=mask_input, multimask=multimask, whole=first, **prompts)
        if clicked and window is not None:
            res = self._closer(res, first, multimask, prompts)
        return self._rescored(res, prompts, multimask) if clicked else res

    def _rescored(self, res: Prediction, prompts: dict, multimask: bool) -> Prediction:
        """A click's final answer reordered by the model's candidate scorer (:mod:`napari_segany.engine.scoring`)."""
        point = single_click(prompts["points"], prompts["labels"], None, None, multimask)
        if point is None:
            return res
        self._last = self.predictor.rescore(res, point, embedding=self._full)  # masks at the image's size
        return self._last

    def _closer(self, res: Prediction, whole: Prediction, multimask: bool, prompts: dict) -> Prediction:
        """A click's answer from a crop set by the whole image's mask, or, when the crop's own mask
        calls for a crop at least ``MIN_GAIN`` times smaller, from that crop (on a large image of
        small objects the whole image's mask can be a blob of many, which sets a crop too large)."""
        inner = self.window_for(prompt_extent(prompts["points"], mask=res.mask(0)))
        if inner is None or inner.side * MIN_GAIN > res.window.side:
            return res
        if self._embedding(inner) is None:  # not ready yet (computed elsewhere): the first crop's answer
            return res
        return self._answer(inner, multimask=multimask, whole=whole, **prompts)

    def _latest_window(self, mask_input) -> Window | None:
        """The window of the latest prediction, if ``mask_input`` is one of its logits."""
        last = self._last
        if last is None or not any(np.array_equal(mask_input, lg) for lg in last.logits):
            raise ValueError("mask_input is not one of the logits of this ZoomPredictor's latest prediction; "
                             "pass mask_window=prediction.window with the prediction it comes from "
                             "(None for logits of the whole image, e.g. from predictor.mask_prompt)")
        return last.window

    # -- one prediction in one frame ------------------------------------------
    def _answer(self, window: Window | None, *, points, labels, box, mask_input=None, multimask: bool,
                whole: Prediction | None = None) -> Prediction:
        pred = self.predictor
        if window is None:
            res = pred._predict(points=points, labels=labels, box=box, mask_input=mask_input, multimask=multimask,
                                embedding=self._full)
        else:
            offset = np.array([window.top, window.left], float)
            crop_points = None if points is None else np.asarray(points, float).reshape(-1, 2) - offset
            crop_box = None if box is None else np.asarray(box, float).reshape(4) - np.tile(offset, 2)
            crop = self._embedding(window)
            res = pred._predict(points=crop_points, labels=labels, box=crop_box, mask_input=mask_input,
                                multimask=multimask, embedding=crop)
            crop_logits = pred._image_logits(crop)
            if whole is None or self.blend == 0:
                crop_masks = res._upscale
                upscale = lambda logits: self._paste(window, crop_masks(logits))  # noqa: E731
            else:
                upscale = self._blended(window, crop_logits, whole,
                                        {"points": crop_points, "labels": labels, "box": crop_box},
                                        {"points": points, "labels": labels, "box": box})
            res = replace(res, _upscale=upscale, window=window, _masks=None, _single={})
        self._last = res
        return res

    def _blended(self, window: Window, crop_logits, whole: Prediction, crop_prompts: dict, prompts: dict):
        """Masks from crop logits averaged, inside ``window``, with the logits of the whole
        image's candidate (in ``whole``) whose mask overlaps the crop's mask most (the decoder's
        output tokens need not mean the same part of an object at two scales); outside the crop
        the whole image's logits alone. On a large image all of it happens in the frame holding the
        crop and every mask pixel of the whole image's candidates (:func:`regions.upscaled_masks`)."""
        pred = self.predictor
        weight = blend_weight(self.blend, tuple(self._full.original_size), window)
        regions = pred.regions  # as at the time of the answer, like Predictor's masks
        whole_logits = pred._image_logits(self._full)
        shape = tuple(self._full.original_size)
        frame = self._frame(window, whole, prompts)
        inside = (..., *window.slices) if frame is None else (
            ..., slice(window.top - frame[0].start, window.top - frame[0].start + window.height),
            slice(window.left - frame[1].start, window.left - frame[1].start + window.width))
        local_points, local_box = (prompts["points"], prompts["box"]) if frame is None else shifted(
            frame, prompts["points"], prompts["box"])
        candidates = functools.cache(lambda: whole_logits(whole.logits, frame))  # refined once, when first needed

        def upscale(logits: np.ndarray) -> np.ndarray:
            inner, outer = crop_logits(logits), candidates()
            out = []
            for k in range(len(inner)):
                j = 0
                if len(outer) > 1:
                    own = np.zeros(outer.shape[1:], dtype=bool)
                    own[inside[1:]] = masks_from(inner[k : k + 1], regions, **crop_prompts)[0]
                    j = best_overlap((outer > 0).numpy(), own)
                blend = outer[j].clone()
                blend[inside] = weight * blend[inside] + (1 - weight) * inner[k]
                out.append(blend)
            masks = masks_from(torch.stack(out), regions, local_points, prompts["labels"], local_box)
            return masks if frame is None else pasted(frame, masks, shape)

        return upscale

    def _frame(self, window: Window, whole: Prediction, prompts: dict) -> tuple[slice, slice] | None:
        """On a large image, the rows and columns holding the crop and every mask pixel of the whole
        image's candidates; None (the whole image) otherwise, or where the prompts need it."""
        shape = tuple(self._full.original_size)
        if not is_large(shape):
            return None
        rows, cols = window.slices
        found = object_window(whole.logits, self._full.geometry, margin=REFINER_REACH)
        if found is not None:
            rows = slice(min(rows.start, found[0].start), max(rows.stop, found[0].stop))
            cols = slice(min(cols.start, found[1].start), max(cols.stop, found[1].stop))
        frame = (rows, cols)
        return frame if fits(frame, shape, prompts["points"], prompts["labels"], prompts["box"]) else None

    def _embedding(self, window: Window) -> ImageEmbedding | None:
        if window in self._crops:
            self._crops.move_to_end(window)
            return self._crops[window]
        image = self._image[window.slices]
        kwargs = {"contrast_limits": window.limits or self._full.window, **self._channels}
        if self._crops_from is not None:
            return self._crops_from(window, image, kwargs)
        self._crops[window] = self.predictor.encode(image, **kwargs)
        while len(self._crops) > self.cache_size:
            self._crops.popitem(last=False)
        return self._crops[window]

    def _geometry(self, window: Window | None) -> Geometry:
        if window is None:
            return self._full.geometry
        return self._full.geometry.for_other((window.height, window.width))

    def _full_mask(self, logits: np.ndarray, window: Window | None) -> np.ndarray:
        """Low-res ``logits`` living in ``window`` -> bool mask at the image's size."""
        return self._paste(window, upscale_logits(torch.from_numpy(logits), self._geometry(window)).numpy() > 0)

    def _paste(self, window: Window | None, masks: np.ndarray) -> np.ndarray:
        return masks if window is None else window.paste(masks, self._full.original_size)

    @staticmethod
    def _crop(window: Window | None, mask: np.ndarray) -> np.ndarray:
        return mask if window is None else mask[window.slices]



"""Numpy in, numpy out: one image -> embedding, prompts -> candidate masks."""

from __future__ import annotations

import threading
import weakref
from dataclasses import replace
from functools import partial
from typing import Callable, NamedTuple

import numpy as np
import torch

from ..model import Sam
from .precision import autocast_context, resolve_precision
from .preprocess import (
    DEFAULT_PERCENTILES,
    Geometry,
    as_2d_channels,
    intensity_window,
    mask_to_logits,
    to_unit_range,
    upscale_logits,
    upscale_logits_window,
)
from .prompts import PromptTensors, prepare_batch, prepare_prompts
from .refine import guide_from_unit, logit_cell, refine_logits
from .scoring import rescored, single_click
from .regions import check_regions, upscaled_masks
from .identity import image_fingerprint, model_identity
from .outputs import ImageEmbedding, Prediction
from .views import average_views, check_view_count, view_input, views as view_list


class Cancelled(Exception):
    """Raised inside :meth:`Predictor.encode` when ``should_stop`` returns True."""


class _Bound(NamedTuple):
    """An embedding with its features as tensors on the model's device (one per view)."""

    embedding: ImageEmbedding
    features: torch.Tensor
    view_features: tuple[torch.Tensor, ...]


class Predictor:
    """Prompted segmentation of 2D images: ``encode`` an image once, then answer prompts on it.

    An answer is a function of an embedding and the prompts: ``predict(...,
    embedding=emb)`` touches no state, so one predictor serves several images
    and threads at once. ``set_image`` / ``set_embedding`` make an embedding
    current for calls that name none; a call reads it once, so a concurrent
    ``set_embedding`` never mixes two images into one answer.

    Parameters
    ----------
    model : Sam
        From :func:`napari_segany.load_model`.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Arithmetic for the encoder and decoder. "auto" (default) takes bf16
        where it was measured faster than fp32 on this machine with logits
        within 2 %, else fp32 (:mod:`napari_segany.engine.precision_choice`);
        "fp32" reproduces the reference implementation.
    regions : {"prompted", "all"}
        Which connected regions of each mask to return: "prompted" (default)
        keeps the regions under the positive points and the box's main
        region, dropping islands elsewhere (:mod:`napari_segany.engine.regions`);
        "all" returns the decoder's thresholded mask as it is, as the
        reference implementation does. Logits and scores are the same in both.
    views : {1, 2, 4, 8}
        How many mirrored copies of each image :meth:`encode` encodes;
        :meth:`predict` averages the decoder's logits and scores over them
        (test-time augmentation, :mod:`napari_segany.engine.views`). More views give
        better masks at one encoder pass each. The command line and the napari
        widget use the model's own recommendation (``model.info.views``); the
        default 1 is the reference implementation's behaviour.
    """

    def __init__(self, model: Sam, *, precision: str = "auto", regions: str = "prompted", views: int = 1,
                 report: Callable[[str], None] | None = None) -> None:
        if not isinstance(model, Sam):
            raise TypeError(f"model must be a napari_segany Sam model (see load_model), got {type(model).__name__}")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.regions = check_regions(regions)
        self.views = check_view_count(views)
        self._model_id = model_identity(model)
        self.precision = resolve_precision(precision, self.device, model, self._model_id, report)
        self._current: _Bound | None = None
        self._bound_lock = threading.Lock()
        self._bound: weakref.WeakKeyDictionary[ImageEmbedding, _Bound] = weakref.WeakKeyDictionary()
        self._dense_pe: torch.Tensor | None = None

    # -- images -------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """Which model computes this predictor's embeddings: its name and file digest, or for a
        model built in memory its name and a digest of its weights at the predictor's creation."""
        return self._model_id

    def encode(
        self,
        image,
        *,
        channel: int | None = None,
        rgb: bool | None = None,
        contrast_limits: tuple[float, float] | None = None,
        percentiles: tuple[float, float] | None = None,
        should_stop: Callable[[], bool] | None = None,
        views: int | None = None,
        image_id: str | None = None,
        reuse: ImageEmbedding | None = None,
    ) -> ImageEmbedding:
        """Compute the embedding of ``image`` without changing the predictor's state.

        Intensities are windowed to ``contrast_limits`` if given, else to the
        robust ``percentiles`` (default (1, 99.8); (0, 100) for MedSAM), and
        uint8 RGB images keep their full 0-255 range. ``should_stop`` is
        polled between encoder stages; when it returns True, :class:`Cancelled`
        is raised. ``views``: mirrored copies to encode too (default: the
        predictor's ``views``). ``image_id`` names what is encoded (default:
        :func:`~napari_segany.engine.identity.image_fingerprint` of the pixels used).
        ``reuse``: an embedding of the same pixels and window by this model
        (e.g. one view first, for a fast first answer) whose views are kept
        instead of encoded again.
        """
        data = as_2d_channels(image, channel=channel, rgb=rgb)
        profile = self.model.info.preprocess
        if percentiles is None:
            percentiles = (0.0, 100.0) if profile == "medsam" else DEFAULT_PERCENTILES
        window = intensity_window(data, contrast_limits=contrast_limits, percentiles=percentiles)
        image_id = image_fingerprint(data) if image_id is None else str(image_id)
        unit = to_unit_range(data, window)
        embeddings = []
        kept = {} if reuse is None else self._reusable(reuse, image_id, window)
        for view in view_list(self.views if views is None else views):
            g = Geometry.for_image(view.shape(data.shape[:2]), self.model.image_size, profile,
                                   getattr(self.model.info, "max_upscale", None))
            if view in kept:
                embeddings.append((view, kept[view]))
                continue
            features = self._run_encoder(view_input(view, unit, g, self.device), should_stop)
            embeddings.append((view, ImageEmbedding(features[0].float().cpu().numpy(), g, self.model_id, window,
                                                    image_id=f"{image_id}/{view}")))
        guide = guide_from_unit(unit) if self._guided else None
        return replace(embeddings[0][1], views=tuple(embeddings[1:]), guide=guide, image_id=image_id)

    def _reusable(self, reuse: ImageEmbedding, image_id: str, window) -> dict:
        """View -> embedding of each view of ``reuse`` (if it encodes these pixels and window)."""
        if (reuse.model_id, reuse.image_id, tuple(reuse.window)) != (self.model_id, image_id, tuple(window)):
            raise ValueError("reuse= must be an embedding of the same image and window by this model")
        first = replace(reuse, views=(), guide=None, image_id=f"{image_id}/{view_list(1)[0]}")
        return {view_list(1)[0]: first, **dict(reuse.views)}

    @property
    def _guided(self) -> bool:
        """Whether embeddings carry the image (``guide``) for the model's refiner or scorer."""
        has = self.model.refiner is not None or self.model.scorer is not None
        return has and self.model.info.preprocess != "medsam"

    def guide_image(self, image, window: tuple[float, float], *, channel: int | None = None,
                    rgb: bool | None = None) -> np.ndarray | None:
        """The ``guide`` of an :class:`ImageEmbedding` of ``image`` encoded with intensity
        ``window`` (None when the model has no boundary refiner nor scorer): for embeddings kept
        without it, e.g. on disk."""
        if not self._guided:
            return None
        return guide_from_unit(to_unit_range(as_2d_channels(image, channel=channel, rgb=rgb), window))

    def _run_encoder(self, x: torch.Tensor, should_stop: Callable[[], bool] | None) -> torch.Tensor:
        hooks = []
        if should_stop is not None:
            caller = threading.get_ident()

            def check(*_):
                # hooks live on shared modules: only this call's thread may be stopped
                if threading.get_ident() == caller and should_stop():
                    raise Cancelled("embedding was cancelled")
            for child in self.model.image_encoder.modules():
                if child is not self.model.image_encoder and isinstance(child, torch.nn.ModuleList):
                    hooks += [m.register_forward_pre_hook(check) for m in child]
        try:
            with torch.inference_mode(), autocast_context(self.precision, self.device):
                return self.model.image_encoder(x)
        finally:
            for h in hooks:
                h.remove()

    def set_image(self, image, **kwargs) -> ImageEmbedding:
        """Encode ``image`` (see :meth:`encode` for the keywords) and make it current."""
        emb = self.encode(image, **kwargs)
        self.set_embedding(emb)
        return emb

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Make a previously computed (or cached) embedding current, for the calls that name none."""
        self._current = self._bind(embedding)

    def _bind(self, embedding: ImageEmbedding) -> _Bound:
        """``embedding``, checked to be this model's, with its features as tensors (kept while the
        embedding lives, so that answering again on it copies nothing)."""
        if not isinstance(embedding, ImageEmbedding):
            raise TypeError("expected an ImageEmbedding from Predictor.encode (or .embedding), got "
                            f"{type(embedding).__name__}")
        grid = self.model.embedding_size
        if embedding.features.shape != (256, grid, grid):
            raise ValueError(
                f"embedding has shape {embedding.features.shape}, this model needs (256, {grid}, {grid}); "
                "it was computed with a different model"
            )
        if embedding.model_id != self.model_id:
            raise ValueError(
                f"embedding was computed by model {embedding.model_id!r}, not {self.model_id!r}; recompute it"
            )
        with self._bound_lock:
            bound = self._bound.get(embedding)
            if bound is None:
                bound = _Bound(embedding, self._tensor(embedding.features),
                               tuple(self._tensor(e.features) for _, e in embedding.views))
                self._bound[embedding] = bound
        return bound

    def _resolve(self, embedding: ImageEmbedding | None) -> _Bound:
        """The embedding a call answers on: the one it names, else the current one (read once)."""
        if embedding is not None:
            return self._bind(embedding)
        bound = self._current
        if bound is None:
            raise RuntimeError("no image is set: pass embedding=predictor.encode(image), or call "
                               "set_image(image) first")
        return bound

    def _tensor(self, features: np.ndarray) -> torch.Tensor:
        return torch.tensor(np.asarray(features, np.float32), device=self.device)[None]

    @property
    def embedding(self) -> ImageEmbedding | None:
        """The current embedding (:meth:`set_image`), or None."""
        bound = self._current
        return None if bound is None else bound.embedding

    @property
    def is_ready(self) -> bool:
        return self._current is not None

    def reset(self) -> None:
        """Forget the current embedding."""
        self._current = None

    # -- prompts ------------------------------------------------------------
    def predict(
        self,
        points=None,
        labels=None,
        box=None,
        mask_input=None,
        multimask: bool = True,
        *,
        embedding: ImageEmbedding | None = None,
    ) -> Prediction:
        """Candidate masks for one object.

        Parameters
        ----------
        points : (N, 2) array_like of (row, col), optional
        labels : (N,) array_like of 1 (foreground) / 0 (background), optional;
            all foreground when omitted.
        box : (min_row, min_col, max_row, max_col), optional
        mask_input : (h, w) low-res logits, e.g. ``previous.logits[0]``.
        multimask : bool
            True returns 3 candidates (for an ambiguous single prompt), False
            returns 1 (better for several prompts at once).
        embedding : ImageEmbedding, optional
            The image to answer on (from :meth:`encode`); default: the
            current one (:meth:`set_image`).

        Returns
        -------
        Prediction
            The candidates, best first. When the model has a candidate scorer
            (:mod:`napari_segany.engine.scoring`), the candidates for a single
            positive click with ``multimask`` are ordered by its predicted IoU,
            which is their ``scores``; otherwise by the decoder's. The result's
            ``embedding`` is the one it answers on.
        """
        res = self._predict(points, labels, box, mask_input, multimask, embedding=embedding)
        return self.rescore(res, single_click(points, labels, box, mask_input, multimask))

    def rescore(self, prediction: Prediction, point, *, embedding: ImageEmbedding | None = None) -> Prediction:
        """``prediction`` (on ``embedding``'s image, default the prediction's own) reordered by the
        model's candidate scorer for the click ``point`` (row, col); unchanged when there is no
        scorer or no point."""
        emb = embedding if embedding is not None else prediction.embedding
        if emb is None:
            emb = self._resolve(None).embedding
        return rescored(prediction, self.model.scorer, emb.guide, point)

    def _predict(self, points=None, labels=None, box=None, mask_input=None, multimask: bool = True, *,
                 embedding: ImageEmbedding | None = None) -> Prediction:
        """:meth:`predict` with the decoder's order and scores."""
        bound = self._resolve(embedding)
        emb = bound.embedding
        prompts = prepare_prompts(emb.geometry, self.model.low_res_size, points, labels, box, mask_input,
                                  self.device)
        logits, scores = self._decode(prompts, multimask, bound.features)
        if emb.views:
            decode = lambda p, features: self._decode(p, multimask, features)  # noqa: E731
            logits, scores = average_views(decode, emb, bound.view_features, logits, scores, prompts.masks,
                                           (points, labels, box), self.model.low_res_size, self.device)
        logits, scores = logits[0], scores[0]
        order = torch.argsort(scores, descending=True)
        logits, scores = logits[order], scores[order]
        return Prediction(
            scores=scores.float().cpu().numpy(),
            logits=logits.float().cpu().numpy(),
            token_index=order.cpu().numpy() + (1 if multimask else 0),
            _upscale=self._upscaler(emb, points, labels, box),
            embedding=emb,
        )

    def predict_batch(self, boxes=None, points=None, labels=None, mask_input=None, multimask: bool = False, *,
                      embedding: ImageEmbedding | None = None):
        """Candidate masks for B objects in one decoder call (on the image as it is: mirrored
        views are not averaged here).

        Parameters
        ----------
        boxes : (B, 4) array_like of (min_row, min_col, max_row, max_col), optional
        points : (B, N, 2) array_like of (row, col), optional; pad objects with
            fewer points using label -1 (ignored points).
        labels : (B, N) array_like of 1 / 0 / -1, optional (all 1 when omitted)
        mask_input : (B, h, w) low-res logits, optional
        multimask : bool
        embedding : ImageEmbedding, optional
            As in :meth:`predict`.

        Returns
        -------
        list of Prediction, one per object, candidates sorted best first.
        """
        bound = self._resolve(embedding)
        emb = bound.embedding
        prompts = prepare_batch(emb.geometry, self.model.low_res_size, boxes, points, labels, mask_input,
                                self.device)
        logits, scores = self._decode(prompts, multimask, bound.features)
        order = torch.argsort(scores, dim=1, descending=True)
        scores = torch.gather(scores, 1, order).float().cpu().numpy()
        logits = logits[torch.arange(len(order))[:, None], order].float().cpu().numpy()
        order = order.cpu().numpy() + (1 if multimask else 0)
        n = len(scores)
        pts = [None] * n if points is None else list(points)
        labs = [None] * n if labels is None else list(labels)
        bxs = [None] * n if boxes is None else list(boxes)
        return [Prediction(scores[i], logits[i], order[i], self._upscaler(emb, pts[i], labs[i], bxs[i]),
                           embedding=emb) for i in range(n)]

    def _upscaler(self, embedding: ImageEmbedding, points=None, labels=None, box=None
                  ) -> Callable[[np.ndarray], np.ndarray]:
        """Low-res logits (K, h, w) -> bool masks (K, H, W) of ``embedding``'s image, keeping the
        prompted regions (``self.regions`` when called) of each."""
        to_image, regions, geometry = self._image_logits(embedding), self.regions, embedding.geometry
        return lambda logits: upscaled_masks(to_image, logits, geometry, regions, points, labels, box)

    def _image_logits(self, embedding: ImageEmbedding) -> Callable[[np.ndarray], torch.Tensor]:
        """For ``embedding``: low-res logits (K, h, w) -> (K, H, W) scores at the image's
        size whose positive part is the mask: the logits upscaled and boundary-refined when the
        model has a refiner; for MedSAM, which thresholds the resized probability at 0.5, that
        probability minus 0.5."""
        geometry, guide = embedding.geometry, embedding.guide
        medsam = geometry.profile == "medsam"
        refiner = self.model.refiner if guide is not None else None  # no guide: no refiner, or MedSAM
        cell = logit_cell(geometry.original_size, self.model.low_res_size)

        def to_image(logits: np.ndarray, window: tuple[slice, slice] | None = None) -> torch.Tensor:
            """... the whole image, or only the image ``window`` (rows, cols)."""
            t = torch.from_numpy(np.ascontiguousarray(logits))
            upscale = upscale_logits if window is None else partial(upscale_logits_window, rows=window[0],
                                                                    cols=window[1])
            if medsam:
                return upscale(torch.sigmoid(t), geometry) - 0.5
            t = upscale(t, geometry)
            if refiner is not None:
                g = guide if window is None else guide[window]
                t = refine_logits(refiner, g, t.reshape(-1, *t.shape[-2:]), cell).reshape(t.shape)
            return t

        return to_image

    def _decode(self, prompts: PromptTensors, multimask: bool, features: torch.Tensor):
        """-> (1 x K x h x w logits, 1 x K scores) on ``features`` (1 x 256 x h x w)."""
        model = self.model
        dense_pe = self._dense_pe
        if dense_pe is None:  # computed once; two threads computing it at once get the same tensor
            with torch.inference_mode():
                dense_pe = self._dense_pe = model.prompt_encoder.get_dense_pe()
        with torch.inference_mode(), autocast_context(self.precision, self.device):
            sparse, dense = model.prompt_encoder(prompts.points, prompts.boxes, prompts.masks)
            return model.mask_decoder(features, dense_pe, sparse, dense, multimask)

    def mask_prompt(self, mask: np.ndarray, magnitude: float = 8.0, *,
                    embedding: ImageEmbedding | None = None) -> np.ndarray:
        """Turn a full-resolution binary mask of ``embedding``'s image (default: the current one)
        into low-res logits for ``mask_input`` (e.g. to refine an existing object)."""
        geometry = self._resolve(embedding).embedding.geometry
        mask = np.asarray(mask)
        if mask.shape != geometry.original_size:
            raise ValueError(f"mask has shape {mask.shape}, the image is {geometry.original_size}")
        if mask.dtype != bool and not ((mask.dtype.kind in "iuf") and np.isin(mask, (0, 1)).all()):
            # NaN or a probability became True in astype(bool): a wrong prompt without a word
            raise ValueError(f"mask must hold only 0/1 (or True/False), got dtype {mask.dtype} with other values; "
                             "threshold logits or probabilities first, e.g. mask = logits > 0")
        return mask_to_logits(mask.astype(bool), geometry, self.model.low_res_size, magnitude)


"""A deterministic stand-in for the predictor, answering each slice with the
ground-truth object under the prompt, and the real 3D nuclei data."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from napari_segany.engine.predictor import ImageEmbedding, Prediction
from napari_segany.engine.preprocess import Geometry
from napari_segany.volume.cache import slice_hash
from napari_segany.volume.window import take_slice

MIN_SHARE = 0.2  # an object answers when the overlap is 20 % of the prompt or of the object


class StandInPredictor:
    """Duck-types :class:`napari_segany.Predictor` for propagation tests.

    ``encode`` recognises the slice by its bytes; ``predict_batch`` answers
    each object with the ground-truth object covering the largest part of its
    prompt (the mask prompt if given, else the point, else the box), if that
    overlap is at least 20 % of the prompt or of the object on this slice,
    else with an empty mask. ``dilate`` grows the
    answer (to provoke overlaps); ``scores`` overrides the score per slice.
    Its frame is 512 px like the included model's, so propagation answers the
    256 px slices of the sample whole, never in zoomed crops (which this
    stand-in could not recognise).
    """

    model_id = "standin:0"

    def __init__(self, volume, truth, axis=0, dilate=0, scores=None):
        self.model = SimpleNamespace(image_size=512, embedding_size=1, info=SimpleNamespace(preprocess="sam"))
        self.truth, self.axis, self.dilate = truth, axis, dilate
        self.scores = scores or {}
        self.by_hash = {slice_hash(np.asarray(take_slice(volume, axis, z))): z for z in range(volume.shape[axis])}
        self.batch_sizes: list[int] = []
        self.encoded: list[int] = []
        self.set_calls = 0

    def encode(self, image, channel=None, contrast_limits=None, should_stop=None, **kwargs):
        z = self.by_hash[slice_hash(image)]
        self.encoded.append(z)
        return ImageEmbedding(np.full((1, 1, 1), z, np.float32), Geometry.for_image(image.shape[:2], self.model.image_size),
                              self.model_id, tuple(contrast_limits))

    def set_embedding(self, emb):
        self.set_calls += 1  # propagation must never change a predictor's state

    def mask_prompt(self, mask, embedding=None):
        return np.where(mask, 1.0, -1.0).astype(np.float32)

    def predict_batch(self, boxes=None, points=None, labels=None, mask_input=None, multimask=False, *, embedding):
        from scipy import ndimage as ndi

        z = int(round(float(embedding.features.ravel()[0])))
        truth = np.asarray(take_slice(self.truth, self.axis, z))
        count = next(len(a) for a in (mask_input, points, boxes) if a is not None)
        self.batch_sizes.append(count)
        out = []
        for b in range(count):
            region = np.zeros(truth.shape, bool)
            if mask_input is not None:
                region = mask_input[b] > 0
            elif points is not None:
                r, c = np.asarray(points[b][0]).astype(int)
                region[r, c] = True
            else:
                r0, c0, r1, c1 = np.asarray(boxes[b]).round().astype(int)
                region[r0:r1, c0:c1] = True
            ids, counts = np.unique(truth[region], return_counts=True)
            keep = ids != 0
            ids, counts = ids[keep], counts[keep]
            mask = np.zeros(truth.shape, bool)
            best = ids[np.argmax(counts)] if ids.size else 0
            if best and counts.max() >= MIN_SHARE * min(region.sum(), np.count_nonzero(truth == best)):
                mask = truth == best
                if self.dilate:
                    mask = ndi.binary_dilation(mask, iterations=self.dilate)
            score = self.scores.get(z, 1.0 if mask.any() else 0.0)
            logits = np.where(mask, 1.0, -1.0)[None].astype(np.float32)
            out.append(Prediction(np.array([score], np.float32), logits, np.array([0]), lambda lg: lg > 0))
        return out


def iou3d(a, b) -> float:
    return float(np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b)))


def extent(mask3d, axis=0) -> tuple[int, int]:
    other = tuple(i for i in range(mask3d.ndim) if i != axis)
    zs = np.flatnonzero(mask3d.any(axis=other))
    return int(zs[0]), int(zs[-1])

"""napari-segany: promptable segmentation (Segment Anything family) for
microscopy and MRI, in napari and from Python.

>>> import napari_segany as sg
>>> pred = sg.Predictor(sg.load_model("vit_b"))          # doctest: +SKIP
>>> emb = pred.encode(image)                               # doctest: +SKIP
>>> res = pred.predict(points=[(120, 88)], labels=[1], embedding=emb)  # doctest: +SKIP
"""

from .engine.predictor import Cancelled, ImageEmbedding, Prediction, Predictor
from .weights.load import load_model
from .volume import EmbeddingStore, PropagationResult, propagate
from .engine.zoom import Window, ZoomPredictor
from .auto.everything import GridSettings, Objects, segment_everything
from .auto.volume import VolumeObjects, segment_volume
from . import finetune  # a callable module: sg.finetune(...) is finetune.finetune(...); sg.finetune.estimate(...)

__all__ = [
    "Cancelled", "EmbeddingStore", "GridSettings", "ImageEmbedding", "Objects", "Prediction", "PropagationResult",
    "Predictor", "VolumeObjects", "Window", "ZoomPredictor", "load_model", "propagate", "segment_everything",
    "segment_volume", "finetune",
]
__version__ = "0.1.0"

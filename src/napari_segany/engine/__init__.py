"""The 2D engine: from an image and prompts to masks.

- :mod:`~napari_segany.engine.predictor`: :class:`Predictor`, the encoder once per image and the
  decoder once per prompt, with embeddings passed explicitly.
- :mod:`~napari_segany.engine.zoom`: :class:`ZoomPredictor`, small objects segmented again on an
  enlarged crop (geometry in :mod:`~napari_segany.engine.crop_geometry`).
- :mod:`~napari_segany.engine.views`: mirrored views averaged for steadier masks.
- :mod:`~napari_segany.engine.refine` and :mod:`~napari_segany.engine.scoring`: the included
  model's boundary refiner and candidate scorer.
- :mod:`~napari_segany.engine.preprocess`, :mod:`~napari_segany.engine.prompts`,
  :mod:`~napari_segany.engine.regions`, :mod:`~napari_segany.engine.precision`,
  :mod:`~napari_segany.engine.identity`, :mod:`~napari_segany.engine.outputs`: the steps and
  records these share.

The engine needs a loaded model (:func:`napari_segany.load_model`) but never loads one itself.
"""

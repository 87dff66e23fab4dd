"""Training our own small SAM-compatible model (``vit_t`` at 512) from procedural data.

Not part of the installed package: run from the repository root, e.g.
``python -m training.train --out model.pt --minutes 85 --seed 0`` and
``python -m training.evaluate --model model.pt``.
"""

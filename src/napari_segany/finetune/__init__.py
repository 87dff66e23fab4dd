"""Fine-tuning a model on a user's annotations: the prompt encoder and mask decoder learn on kept
embeddings (the image encoder frozen), checked on held-out images (or blocks of slices, or
quarters of an image) before and after.

>>> import napari_segany as sg
>>> result = sg.finetune(None, [(image, labels)], "my_model.pt")     # doctest: +SKIP
>>> print(result.report)                                             # doctest: +SKIP
>>> model = sg.load_model("my_model.pt")                             # doctest: +SKIP

Modules: :mod:`.data` (pairs -> pictures, the split), :mod:`.prompts` (simulated prompts),
:mod:`.losses`, :mod:`.loop` (training, early stopping), :mod:`.report` (held-out scores),
:mod:`.save` (the checkpoint), :mod:`.api` (:func:`finetune`, :func:`estimate`).
"""

import sys
import types

from .api import Estimate, FinetuneResult, estimate, finetune
from .report import Report

__all__ = ["Estimate", "FinetuneResult", "Report", "estimate", "finetune"]


class _CallableModule(types.ModuleType):
    """This module, callable: ``napari_segany.finetune(...)`` is :func:`finetune`, while
    ``napari_segany.finetune.estimate`` and ``import napari_segany.finetune.data`` keep working
    (a function of the same name would have hidden the subpackage)."""

    def __call__(self, *args, **kwargs) -> FinetuneResult:
        return finetune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

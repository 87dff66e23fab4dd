"""Automatic instance segmentation: every object of an image or a volume without prompts.

:mod:`.grid` asks the decoder at a grid of points and judges the answers on its low-res logits;
:mod:`.everything` tiles a 2D image, paints the survivors into one label image and tables them;
:mod:`.volume` finds objects slice by slice and follows each through the volume by propagation.
"""

from .everything import Objects, segment_everything
from .grid import GridSettings
from .volume import VolumeObjects, segment_volume

__all__ = ["GridSettings", "Objects", "VolumeObjects", "segment_everything", "segment_volume"]

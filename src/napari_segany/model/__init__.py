"""Pure-torch modules of the Segment Anything family (no numpy I/O, no napari)."""

from .sam import ARCHITECTURES, ModelInfo, Sam, build_sam

__all__ = ["ARCHITECTURES", "ModelInfo", "Sam", "build_sam"]

"""napari glue for napari-segany: the "Segment Anything" dock widget.

Only this package (and the sample-data hooks in :mod:`._widget.samples`) uses
napari and Qt; the engine it drives lives in the modules above it.
"""

from ._compat import guard_triton

guard_triton()

from .widget import SegmentAnythingWidget  # noqa: E402

__all__ = ["SegmentAnythingWidget"]

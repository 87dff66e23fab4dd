"""What a propagation did: per object, the slices reached and why each walk stopped."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Why a walk from a seed stopped.
REASONS = {
    "low_iou": "the predicted IoU fell below the threshold",
    "area_change": "the area changed more than allowed between neighbouring slices",
    "vanished": "the object vanished (mask smaller than min_area)",
    "occupied": "the predicted mask lies entirely on other objects",
    "end_of_volume": "the end of the volume was reached",
    "met_seed": "it met the walk from another seed of the same object",
    "approved": "the next slice is approved and was left untouched",
    "blank": "the next slice holds a single value: nothing to follow there",
    "max_distance": "the maximum distance from the seed was reached",
    "cancelled": "propagation was cancelled",
}


@dataclass
class Stop:
    """One walk from a seed slice in one direction (+1 or -1 along the axis).

    ``last`` is the last slice written (the seed if none); ``at`` the slice
    where the walk stopped without writing (None at the end of the volume);
    ``score``/``area_ratio`` are the measurements on slice ``at``, if any.
    """

    seed: int
    direction: int
    last: int
    reason: str
    at: int | None = None
    score: float | None = None
    area_ratio: float | None = None

    @property
    def explanation(self) -> str:
        text = REASONS.get(self.reason, self.reason)
        if self.reason == "low_iou" and self.score is not None:
            text += f" ({self.score:.2f})"
        if self.reason == "area_change" and self.area_ratio is not None:
            text += f" (x{self.area_ratio:.2f})"
        return text


@dataclass
class ObjectReport:
    """One object after propagation.

    ``slices``: every slice where the object now is; ``voxels``: its size in
    voxels; ``volume``: in physical units (voxel count x product of spacing);
    ``extent``: its length along the axis in physical units.
    """

    label_id: int
    seeds: list[int]
    slices: list[int] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    voxels: int = 0
    volume: float = 0.0
    extent: float = 0.0

    @property
    def first(self) -> int | None:
        return min(self.slices) if self.slices else None

    @property
    def last(self) -> int | None:
        return max(self.slices) if self.slices else None


@dataclass
class Changes:
    """Every voxel the propagation changed: ``labels[index] = values`` applies
    it, ``labels[index] = previous`` undoes it (one undoable step in napari:
    ``layer.data_setitem(index, values)``)."""

    index: tuple[np.ndarray, ...]
    previous: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.values.size)


@dataclass
class PropagationResult:
    """``labels``: the new labels volume (the input is never modified);
    ``objects``: one :class:`ObjectReport` per object id; ``changes``: the
    voxels that differ from the input labels; ``cancelled``: stopped by
    ``should_stop`` (what was done so far is kept)."""

    labels: np.ndarray
    objects: dict[int, ObjectReport]
    changes: Changes
    axis: int
    spacing: tuple[float, ...]
    cancelled: bool = False
    slices_decoded: int = 0
    decoder_calls: int = 0

    def summary(self, unit: str = "") -> str:
        """A few lines of text for people: reach and stop reasons per object."""
        u = f" {unit}" if unit else ""
        lines = []
        for oid, rep in sorted(self.objects.items()):
            if not rep.slices:
                lines.append(f"object {oid}: nothing written")
                continue
            lines.append(f"object {oid}: slices {rep.first}-{rep.last} ({len(rep.slices)} slices, "
                         f"{rep.extent:.4g}{u} along axis {self.axis}), volume {rep.volume:.4g}{u}^3 "
                         f"({rep.voxels} voxels)")
            for s in rep.stops:
                where = "down" if s.direction < 0 else "up"
                at = f" at slice {s.at}" if s.at is not None else ""
                lines.append(f"  from seed {s.seed} {where}: reached {s.last}, stopped{at}: {s.explanation}")
        if self.cancelled:
            lines.append("cancelled: the result holds what was done before the cancel")
        return "\n".join(lines)

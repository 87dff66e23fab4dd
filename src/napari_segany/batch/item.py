"""One input of ``auto``, start to end: read it, skip it when its outputs are complete, segment
every object, write the outputs. The same function runs in the single process of the command
line and inside each task on a dask worker, so both give the same files."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import GridSettings
from .inputs import read_input, layout
from .outputs import DONE, PICTURE, Job, count_rows, state, write_picture, write_result

#: What a failing input's segmentation may raise: reported for that input, the others go on.
ITEM_ERRORS = (ValueError, TypeError, OSError, RuntimeError, MemoryError)


class ModelUnavailable(RuntimeError):
    """The model cannot be loaded: no input can be segmented, so the run stops."""


@dataclass(frozen=True)
class AutoOptions:
    """Everything about a run of ``auto`` but its inputs and outputs (picklable: it travels to the
    workers). ``model``: registry name, your model's name or a checkpoint path (None: the included
    model); ``device``, ``precision``, ``regions``: as for :class:`~napari_segany.Predictor`;
    ``volume``, ``axis``, ``channel``, ``contrast_limits``: how inputs are read (the rule of
    ``napari-segany auto --help``); ``existing``: a labels file of the (one) input whose objects are
    kept; ``overwrite``: segment again inputs whose outputs exist; ``block_slices``: on a cluster,
    a volume with more slices (along its first axis) is cut into blocks of this many, each a task,
    overlapping by ``block_overlap`` slices (see :mod:`~napari_segany.batch.blocks`)."""

    settings: GridSettings = field(default_factory=GridSettings)
    model: str | None = None
    device: str = "auto"
    precision: str = "auto"
    regions: str = "prompted"
    volume: bool = False
    axis: int = 0
    channel: int | None = None
    contrast_limits: tuple[float, float] | None = None
    existing: str | None = None
    overwrite: bool = False
    block_slices: int | None = None
    block_overlap: int = 4
    #: For ``propagate`` over many volumes: what :func:`napari_segany.propagate` takes beyond the
    #: volume and its seeds (iou_threshold, area_change, spacing, zoom).
    propagation: dict = field(default_factory=dict)

    @property
    def model_key(self) -> tuple:
        """What makes two runs' predictors the same (a worker keeps one per key)."""
        return self.model, self.device, self.precision, self.regions


def load_predictor(options: AutoOptions, report: Callable[[str], None] | None = None):
    """The predictor ``options`` name, the model loaded once for all the inputs it segments."""
    from .. import Predictor, load_model

    model = load_model(options.model, device=options.device)
    return Predictor(model, precision=options.precision, regions=options.regions, views=1, report=report)


def segment_item(job: Job, options: AutoOptions, predictor: Callable[[], object], *, existing=None,
                 compute=contextlib.nullcontext, progress: bool = False) -> dict:
    """Segment one input and write its outputs. A problem with this input is its result
    (``status`` "failed", ``error`` the sentence), not the end of the run; ``predictor()`` is
    called only when the input needs segmenting (a resumed run of finished inputs loads nothing),
    and what it raises ends the run. ``existing``: labels already read (else ``options.existing``
    is read here); ``compute``: a context manager held while the model works (a worker's lock and
    threads); ``progress``: a bar for this input."""
    started = time.perf_counter()
    result = {"path": str(job.source), "kind": None, "status": "failed", "outputs": job.outputs, "objects": None,
              "seconds": 0.0}
    try:
        try:
            plan = layout(read_input(job.source), volume=options.volume, channel=options.channel, axis=options.axis)
            result["kind"] = plan.kind
            if existing is None and options.existing is not None:
                from ..files import read_image

                existing = read_image(options.existing)
            if existing is not None and tuple(existing.shape) != plan.shape:
                raise ValueError(f"--existing {options.existing} has shape {tuple(existing.shape)} but the input's "
                                 f"labels are {plan.shape}; pass the labels of this input")
            if not options.overwrite:
                left, _, labels = state(job, plan.shape)
                if left in (DONE, PICTURE):
                    if left == PICTURE:
                        write_picture(job, plan, labels, axis=options.axis, channel=options.channel)
                    result.update(status="skipped", objects=count_rows(job.table))
                    return result
        except (ValueError, TypeError, OSError) as err:
            return failed(result, job.source, err)
        model = predictor()  # outside the per-input handling: a model that fails stops the run
        try:
            with compute():
                objects = _segment(model, plan, options, existing, job.source.name, progress)
            write_result(job, plan, objects.labels, objects.table, axis=options.axis, channel=options.channel)
        except ITEM_ERRORS as err:
            return failed(result, job.source, err)
        result.update(status="segmented", objects=len(objects.table))
        return result
    finally:
        result["seconds"] = round(time.perf_counter() - started, 3)


def failed(result: dict, source: Path, err: BaseException) -> dict:
    """``result`` marked failed with ``err``'s sentence, naming the input."""
    text = str(err) if str(source) in str(err) else f"{source}: {err}"
    result.update(status="failed", error=text)
    return result


def _segment(predictor, plan, options: AutoOptions, existing, name: str, progress: bool):
    from tqdm import tqdm

    from .. import segment_everything, segment_volume

    unit = "prompt" if plan.kind == "image" else "slice"
    with tqdm(total=None, unit=unit, desc=name, leave=False, disable=not progress) as bar:
        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        common = dict(settings=options.settings, existing=existing, progress=advance, channel=options.channel,
                      contrast_limits=options.contrast_limits)
        if plan.kind == "image":
            return segment_everything(predictor, plan.data, **common)
        return segment_volume(predictor, plan.data, axis=options.axis, **common)

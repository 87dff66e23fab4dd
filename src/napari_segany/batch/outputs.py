"""What a batch writes for each input: the output paths (checked before any work), whether an
input's outputs are already complete (resuming), the object table as CSV rows, and the files,
each written atomically with the labels last, so an interrupted input is never taken for done."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import check_output_path
from .inputs import Layout, Source, clash, stem

#: What ``auto`` appends to an input's name for the files it writes beside it (in --output-dir):
#: ``<name>_labels.tif``, ``<name>_objects.csv``, ``<name>_overlay.png``; ``finetune`` pairs an
#: image with ``<name>_labels.tif`` by the same rule.
LABELS_SUFFIX, TABLE_SUFFIX, OVERLAY_SUFFIX = "_labels", "_objects", "_overlay"


@dataclass(frozen=True)
class Job:
    """An input and the files written for it."""

    source: Path
    labels: Path
    table: Path
    overlay: Path | None

    @property
    def outputs(self) -> dict[str, str]:
        out = {"labels": str(self.labels), "objects": str(self.table)}
        if self.overlay is not None:
            out["overlay"] = str(self.overlay)
        return out


def plan_jobs(sources: list[Source], *, output: str | None, output_dir: str | None, overlay: bool,
              also_read: list[str] = ()) -> list[Job]:
    """The outputs of every input, checked before any work: ``-o`` only for one input, no two
    inputs writing the same file, no output that is an input (an image found in a folder or by a
    pattern that is another input's output is a result of an earlier run and is not an input), and
    every output in a folder that can be written. ``also_read``: other files the command reads."""
    if output is not None and len(sources) != 1:
        raise ValueError(f"{len(sources)} inputs were given and -o names one output; pass --output-dir DIR "
                         "instead (each input gets <name>_labels.tif and <name>_objects.csv there)")
    jobs = [_job(src.path, output, output_dir, overlay) for src in sources]
    written = {_key(p): (job, kind) for job in jobs for kind, p in job.outputs.items()}
    kept = []
    for src, job in zip(sources, jobs):
        earlier = written.get(_key(src.path))
        if earlier is not None and earlier[0] is not job and not src.named:
            continue  # an earlier run's output found in the input folder
        kept.append((src, job))
    for src, job in kept:
        earlier = written.get(_key(src.path))
        if earlier is not None:
            flag = "-o" if output is not None else "--output-dir"
            whose = "itself" if earlier[0] is job else repr(str(earlier[0].source))
            raise ValueError(f"the input {str(src.path)!r} would be overwritten by the {earlier[1]} output of "
                             f"{whose}: an input is never overwritten; choose another {flag}")
    for path in also_read:
        if _key(Path(path)) in written:
            raise ValueError(f"{path!r} is read by this command and would be overwritten by the "
                             f"{written[_key(Path(path))][1]} output: an input is never overwritten; choose "
                             "another output")
    same = clash([(_key(job.labels), src.path) for src, job in kept])
    if same is not None:
        labels = next(job.labels for src, job in kept if src.path == same[1])
        raise ValueError(f"{str(same[0])!r} and {str(same[1])!r} would both be written to {str(labels)!r} (same "
                         "name); rename one, or segment them into different --output-dir folders")
    for src, job in kept:
        for kind, p in job.outputs.items():
            check_output_path(p, f"{kind} output")
    return [job for _, job in kept]


def _job(source: Path, output: str | None, output_dir: str | None, overlay: bool) -> Job:
    if output is not None:
        labels = Path(output).expanduser()
        if labels.suffix.lower() not in (".tif", ".tiff"):
            raise ValueError(f"-o {output}: the labels are written as a TIFF; give a name ending in .tif or .tiff "
                             "(the table and the picture take the same name ending in .csv and .png)")
        return Job(source, labels, labels.with_suffix(".csv"), labels.with_suffix(".png") if overlay else None)
    folder, name = Path(output_dir).expanduser(), stem(source)
    return Job(source, folder / f"{name}{LABELS_SUFFIX}.tif", folder / f"{name}{TABLE_SUFFIX}.csv",
               folder / f"{name}{OVERLAY_SUFFIX}.png" if overlay else None)


def _key(path: Path) -> str:
    return os.path.realpath(Path(path).expanduser())


# -- resuming ----------------------------------------------------------------------------------------
DONE, TODO, PICTURE = "done", "todo", "picture"


def state(job: Job, shape: tuple[int, ...]) -> tuple[str, str | None, np.ndarray | None]:
    """(what is left, why, the labels read): ``done`` when the labels TIFF opens with ``shape`` and
    integer ids and the table has its header and whole rows (and the picture is there when asked
    for); ``picture`` when only the picture is missing; ``todo`` when the labels TIFF is absent
    (it is written last: a table or picture without it is left from an interrupted run). Anything
    else raises FileExistsError: the files may be someone's, and only --overwrite replaces them."""
    import tifffile

    if not job.labels.exists():
        return TODO, None, None
    try:
        labels = tifffile.imread(job.labels)
    except Exception as err:  # noqa: BLE001 - any reader error means "not a complete result"
        _incomplete(job, f"{job.labels} cannot be read as a TIFF ({type(err).__name__})")
    if tuple(labels.shape) != tuple(shape):
        _incomplete(job, f"{job.labels} has shape {tuple(labels.shape)}, not the input's {tuple(shape)}")
    if not np.issubdtype(labels.dtype, np.integer):
        _incomplete(job, f"{job.labels} holds {labels.dtype} values, not label ids")
    problem = _table_problem(job.table)
    if problem:
        _incomplete(job, problem)
    if job.overlay is not None and not job.overlay.is_file():
        return PICTURE, None, labels
    return DONE, None, labels


def _incomplete(job: Job, why: str):
    raise FileExistsError(f"{why}, so its outputs are not a complete result of an earlier run; pass --overwrite "
                          "to segment it again, or move the files away")


def _table_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"the table {path} is missing"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return f"the table {path} cannot be read as CSV"
    if not rows or not rows[0] or rows[0][0] != "id" or any(len(r) != len(rows[0]) for r in rows[1:]):
        return f"the table {path} is not an object table (an 'id' column first, whole rows)"
    return None


def count_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as f:
        return max(0, sum(1 for _ in csv.reader(f)) - 1)


# -- the table -----------------------------------------------------------------------------------------
#: Column names of the table's tuples, by their length; array axes in the file's order.
SPLIT = {
    "bbox": {4: ("min_row", "min_col", "max_row", "max_col"),
             6: ("min_z", "min_y", "min_x", "max_z", "max_y", "max_x")},
    "centroid": {2: ("row", "col"), 3: ("z", "y", "x")},
}
COLUMNS = {
    "image": ["id", "area", "bbox", "centroid", "predicted_iou", "stability"],
    "volume": ["id", "voxels", "bbox", "centroid", "first_slice", "last_slice", "found_on_slice", "predicted_iou",
               "stability"],
}


def table_rows(table: list[dict], kind: str) -> tuple[list[str], list[list]]:
    """(header, rows) of ``table``: tuples (bbox, centroid) split into a column per number. The
    columns are the engine's keys in order, or the usual ones for an empty table."""
    keys = list(table[0]) if table else COLUMNS[kind]
    for row in table[1:]:
        keys += [k for k in row if k not in keys]
    ndim = 2 if kind == "image" else 3
    header = []
    for key in keys:
        if key in SPLIT:
            header += [f"{key}_{name}" for name in SPLIT[key][2 * ndim if key == "bbox" else ndim]]
        else:
            header.append(key)
    rows = []
    for row in table:
        values = []
        for key in keys:
            value = row.get(key, "")
            if key in SPLIT:
                width = 2 * ndim if key == "bbox" else ndim
                value = list(value) if isinstance(value, (tuple, list, np.ndarray)) else [""] * width
                values += [_plain(v) for v in value]
            else:
                values.append(_plain(value))
        rows.append(values)
    return header, rows


def _plain(value):
    if isinstance(value, (np.integer, bool)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), 4)
    return value


def compact(labels: np.ndarray) -> np.ndarray:
    """The label image as uint16 when its ids fit (what `segment` and `propagate` write, and what
    ImageJ/Fiji open), else uint32."""
    top = int(labels.max(initial=0))
    return labels.astype(np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32, copy=False)


def write_result(job: Job, plan: Layout, labels: np.ndarray, table: list[dict], *, axis: int = 0,
                 channel: int | None = None) -> None:
    """The picture and the table first, the labels last: the labels TIFF marks the input as done."""
    from ..files import write_csv, write_labels

    labels = compact(np.asarray(labels))
    if job.overlay is not None:
        write_picture(job, plan, labels, axis=axis, channel=channel)
    write_csv(job.table, *table_rows(table, plan.kind))
    write_labels(job.labels, labels)


def write_picture(job: Job, plan: Layout, labels: np.ndarray, *, axis: int = 0, channel: int | None = None) -> None:
    """The input (of a volume: its middle slice along ``axis``, the only one read) with its objects."""
    from ..files import overlay, write_png

    image = plan.data
    if plan.kind == "volume":
        axis = axis % 3
        middle = plan.shape[axis] // 2
        image = np.asarray(image[(slice(None),) * axis + (middle,)])
        image = image if image.ndim == 2 else image[..., channel]
        labels = np.take(labels, middle, axis=axis)
    else:
        image = np.asarray(image)
        if channel is not None and image.ndim == 3:
            image = image[..., channel]
    write_png(job.overlay, overlay(image, labels))

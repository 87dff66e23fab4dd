"""What ``napari-segany auto`` reads and writes: the inputs a command line names (files, folders,
patterns), the outputs of each, how an input is read (an image or a volume), whether its outputs
are already complete (resuming), and the object table as CSV rows."""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import check_output_path

#: The files a folder or a pattern contributes (a file named on its own is read whatever its name).
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
PATTERN_CHARACTERS = "*?["


@dataclass(frozen=True)
class Source:
    """One input image: its path and whether the command line named it (not a folder or pattern)."""

    path: Path
    named: bool


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


def expand_inputs(specs: list[str]) -> list[Source]:
    """The images named by ``specs``: a file as it is, a folder's image files (sorted by name,
    hidden ones left out), a pattern's image files (sorted). A path that does not exist, a folder
    without images and a pattern matching none are refused before any work. Each image once."""
    found: list[Source] = []
    for spec in specs:
        p = Path(spec).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if _is_image_file(f))
            if not files:
                raise FileNotFoundError(f"the folder {spec!r} holds no image files ({', '.join(IMAGE_SUFFIXES)}); "
                                        "check the path, or name the files")
            found += [Source(f, False) for f in files]
        elif p.exists():
            found.append(Source(p, True))
        elif any(ch in spec for ch in PATTERN_CHARACTERS):
            files = sorted(Path(f) for f in glob.glob(os.path.expanduser(spec), recursive=True))
            files = [f for f in files if _is_image_file(f)]
            if not files:
                raise FileNotFoundError(f"the pattern {spec!r} matches no image files ({', '.join(IMAGE_SUFFIXES)}); "
                                        "check the pattern")
            found += [Source(f, False) for f in files]
        else:
            raise FileNotFoundError(f"no image file at {spec!r}; check the path")
    seen, unique = set(), []
    for src in found:
        key = os.path.realpath(src.path)
        if key not in seen:
            seen.add(key)
            unique.append(src)
    return unique


def _is_image_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def stem(path: Path) -> str:
    """The name outputs start with: the file name without its ending (``cells.ome.tif`` -> ``cells``)."""
    name = path.stem
    return name[:-4] if name.lower().endswith(".ome") else name


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
    owners: dict[str, Path] = {}
    for src, job in kept:
        key = _key(job.labels)
        if key in owners:
            raise ValueError(f"{str(owners[key])!r} and {str(src.path)!r} would both be written to "
                             f"{str(job.labels)!r} (same name); rename one, or segment them into different "
                             "--output-dir folders")
        owners[key] = src.path
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
    return Job(source, folder / f"{name}_labels.tif", folder / f"{name}_objects.csv",
               folder / f"{name}_overlay.png" if overlay else None)


def _key(path: Path) -> str:
    return os.path.realpath(Path(path).expanduser())


@dataclass(frozen=True)
class Layout:
    """How an input is segmented: ``kind`` "image" (``data`` is the 2D, RGB(A) or (H, W, C) array)
    or "volume" (``data`` (Z, Y, X) or (Z, Y, X, C)); ``shape``: the shape of its labels."""

    kind: str
    data: np.ndarray
    shape: tuple[int, ...]


def layout(data: np.ndarray, *, volume: bool, channel: int | None, axis: int) -> Layout:
    """The rule of ``auto`` (stated in its --help): 2D is an image; 4D is a volume (Z, Y, X, C) and
    needs --channel; 3D is a volume (Z, Y, X) unless its last axis holds 3 or 4 values (RGB/RGBA) or
    --channel is given, which make it one image (H, W, C), and --volume makes it a volume always."""
    shape = tuple(data.shape)
    if data.ndim == 2:
        if volume:
            raise ValueError(f"--volume was given but the input is a 2D image, shape {shape}; leave --volume out")
        if channel not in (None, 0):
            raise ValueError(f"--channel {channel} was given but the image is 2D, with a single channel; leave "
                             "--channel out")
        return Layout("image", data, shape)
    if data.ndim == 3 and not volume and (shape[2] in (3, 4) or channel is not None):
        if channel is not None and not -shape[2] <= channel < shape[2]:
            raise ValueError(f"--channel {channel} does not exist: the image, shape {shape}, has {shape[2]} "
                             f"channels (0-{shape[2] - 1})")
        return Layout("image", data, shape[:2])
    if data.ndim == 3 and not volume and shape[2] < 5:
        raise ValueError(f"the input has shape {shape}, which looks like an image with {shape[2]} channels; pass "
                         "--channel C to segment one of them, or --volume if it is a stack of slices")
    if data.ndim not in (3, 4):
        raise ValueError(f"the input has shape {shape}; auto reads a 2D image, RGB(A) or (H, W, C) with --channel, "
                         "or a volume (Z, Y, X) or (Z, Y, X, C) with --channel")
    if not -3 <= axis < 3:
        raise ValueError(f"--axis {axis} is not one of the volume's 3 spatial axes (0, 1 or 2)")
    if data.ndim == 4 and channel is None:
        raise ValueError(f"the input has shape {shape}, a volume with {shape[3]} channels; pass --channel C to "
                         "segment one of them")
    if channel is not None and (data.ndim != 4 or not -shape[3] <= channel < shape[3]):
        have = "no channel axis" if data.ndim != 4 else f"{shape[3]} channels (0-{shape[3] - 1})"
        raise ValueError(f"--channel {channel} does not fit the volume, shape {shape}: it has {have}")
    return Layout("volume", data, shape[:3])


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

"""What a batch reads: the inputs a command line or a caller names (files, folders, patterns,
zarr arrays), how each is opened (lazily for zarr), and whether it is an image or a volume."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .zarr_input import is_zarr, open_zarr

#: The files a folder or a pattern contributes (a file named on its own is read whatever its name);
#: a folder ending in .zarr is one zarr array (or OME-Zarr image), not a folder of images.
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
PATTERN_CHARACTERS = "*?["


@dataclass(frozen=True)
class Source:
    """One input image: its path and whether the command line named it (not a folder or pattern)."""

    path: Path
    named: bool


def expand_inputs(specs: list[str]) -> list[Source]:
    """The images named by ``specs``: a file or a zarr array as it is, a folder's image files and
    zarr arrays (sorted by name, hidden ones left out), a pattern's (sorted). A path that does not
    exist, a folder without images and a pattern matching none are refused before any work. Each
    image once."""
    found: list[Source] = []
    for spec in specs:
        p = Path(spec).expanduser()
        if is_zarr(p):
            found.append(Source(p, True))
        elif p.is_dir():
            files = sorted(f for f in p.iterdir() if _is_input(f))
            if not files:
                raise FileNotFoundError(f"the folder {spec!r} holds no image files ({_kinds()}); check the path, "
                                        "or name the files")
            found += [Source(f, False) for f in files]
        elif p.exists():
            found.append(Source(p, True))
        elif any(ch in spec for ch in PATTERN_CHARACTERS):
            files = sorted(Path(f) for f in glob.glob(os.path.expanduser(spec), recursive=True))
            files = [f for f in files if _is_input(f)]
            if not files:
                raise FileNotFoundError(f"the pattern {spec!r} matches no image files ({_kinds()}); check the "
                                        "pattern")
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


def _kinds() -> str:
    return ", ".join(IMAGE_SUFFIXES) + " or .zarr"


def _is_input(path: Path) -> bool:
    if path.name.startswith("."):
        return False
    if path.is_dir():
        return path.suffix.lower() == ".zarr" and is_zarr(path)
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def clash(named: list[tuple[str, Path]]) -> tuple[Path, Path, str] | None:
    """The first two inputs given the same name (an output or cache path), and that name; None when
    every name is its own."""
    owners: dict[str, Path] = {}
    for name, path in named:
        if name in owners:
            return owners[name], path, name
        owners[name] = path
    return None


def stem(path: Path) -> str:
    """The name outputs start with: the file name without its ending (``cells.ome.tif`` and
    ``cells.ome.zarr`` -> ``cells``)."""
    name = path.stem
    return name[:-4] if name.lower().endswith(".ome") else name


def read_input(path: str | os.PathLike):
    """The pixels of an input: a numpy array for an image file, a lazy array (read slice by slice
    when indexed) for a zarr array or OME-Zarr image."""
    from ..files import read_image

    p = Path(path).expanduser()
    return open_zarr(p) if is_zarr(p) else read_image(p)


def input_shape(path: str | os.PathLike) -> tuple[int, ...] | None:
    """The shape of an input without reading its pixels where the format allows it (a TIFF's
    header, a zarr array's metadata), else by reading it; None when it cannot be told here (the
    input is then read, and its problem reported, where it is segmented)."""
    p = Path(path).expanduser()
    try:
        if is_zarr(p):
            return tuple(open_zarr(p).shape)
        if p.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(p) as tif:
                return tuple(int(s) for s in tif.series[0].shape)
        return tuple(read_input(p).shape)
    except Exception:  # noqa: BLE001 - any problem is the worker's to report, with the reader's words
        return None


@dataclass(frozen=True)
class Layout:
    """How an input is segmented: ``kind`` "image" (``data`` is the 2D, RGB(A) or (H, W, C) array)
    or "volume" (``data`` (Z, Y, X) or (Z, Y, X, C)); ``shape``: the shape of its labels."""

    kind: str
    data: np.ndarray
    shape: tuple[int, ...]


def layout(data, *, volume: bool, channel: int | None, axis: int) -> Layout:
    """``data`` with its kind and label shape by :func:`kind_of` (``data`` may be lazy)."""
    kind, shape = kind_of(tuple(data.shape), volume=volume, channel=channel, axis=axis)
    return Layout(kind, data, shape)


def kind_of(shape: tuple[int, ...], *, volume: bool, channel: int | None, axis: int) -> tuple[str, tuple[int, ...]]:
    """(kind, labels' shape) by the rule of ``auto`` (stated in its --help): 2D is an image; 4D is
    a volume (Z, Y, X, C) and needs --channel; 3D is a volume (Z, Y, X) unless its last axis holds
    3 or 4 values (RGB/RGBA) or --channel is given, which make it one image (H, W, C), and
    --volume makes it a volume always."""
    ndim = len(shape)
    if ndim == 2:
        if volume:
            raise ValueError(f"--volume was given but the input is a 2D image, shape {shape}; leave --volume out")
        if channel not in (None, 0):
            raise ValueError(f"--channel {channel} was given but the image is 2D, with a single channel; leave "
                             "--channel out")
        return "image", shape
    if ndim == 3 and not volume and (shape[2] in (3, 4) or channel is not None):
        if channel is not None and not -shape[2] <= channel < shape[2]:
            raise ValueError(f"--channel {channel} does not exist: the image, shape {shape}, has {shape[2]} "
                             f"channels (0-{shape[2] - 1})")
        return "image", shape[:2]
    if ndim == 3 and not volume and shape[2] < 5:
        raise ValueError(f"the input has shape {shape}, which looks like an image with {shape[2]} channels; pass "
                         "--channel C to segment one of them, or --volume if it is a stack of slices")
    if ndim not in (3, 4):
        raise ValueError(f"the input has shape {shape}; auto reads a 2D image, RGB(A) or (H, W, C) with --channel, "
                         "or a volume (Z, Y, X) or (Z, Y, X, C) with --channel")
    if not -3 <= axis < 3:
        raise ValueError(f"--axis {axis} is not one of the volume's 3 spatial axes (0, 1 or 2)")
    if ndim == 4 and channel is None:
        raise ValueError(f"the input has shape {shape}, a volume with {shape[3]} channels; pass --channel C to "
                         "segment one of them")
    if channel is not None and (ndim != 4 or not -shape[3] <= channel < shape[3]):
        have = "no channel axis" if ndim != 4 else f"{shape[3]} channels (0-{shape[3] - 1})"
        raise ValueError(f"--channel {channel} does not fit the volume, shape {shape}: it has {have}")
    return "volume", shape[:3]


def check_volume(shape: tuple[int, ...], *, axis: int, channel: int | None, path) -> tuple[int, int]:
    """``axis`` and ``channel`` against a volume's ``shape``, before the model loads. Returns the
    axis (0-2) and the number of slices along it."""
    if len(shape) not in (3, 4):
        raise ValueError(f"{path} has shape {tuple(shape)}; give a volume (Z, Y, X) or (Z, Y, X, C), or use "
                         "`napari-segany segment` for a 2D image")
    if not -3 <= axis < 3:
        raise ValueError(f"--axis {axis} is not one of the volume's 3 spatial axes (0, 1 or 2)")
    if channel is not None and (len(shape) != 4 or not 0 <= channel < shape[3]):
        have = "no channel axis" if len(shape) != 4 else f"{shape[3]} channels (0-{shape[3] - 1})"
        raise ValueError(f"--channel {channel} does not fit {path}, shape {tuple(shape)}: it has {have}")
    return axis % 3, int(shape[axis % 3])

"""Reading images and writing results without ever leaving a partial file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .engine.userdata import folder_problem

TIFF_SUFFIXES = (".tif", ".tiff")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF (tifffile) or a PNG/JPEG/other common format (scikit-image)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"no image file at {str(p)!r}; check the path")
    try:
        if p.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            data = tifffile.imread(p)
        else:
            from skimage import io

            data = io.imread(p)
    except (OSError, ValueError, SyntaxError, KeyError, IndexError) as err:  # what the readers raise for bad files
        raise ValueError(f"{str(p)!r} could not be read as an image ({type(err).__name__}: {err}); the file is "
                         "damaged or not an image: check it, or save it again as TIFF or PNG") from err
    if np.asarray(data).size == 0:  # tifffile returns an empty array for a file whose pages it cannot find
        raise ValueError(f"{str(p)!r} holds no pixels (the file is damaged or empty): check it, or save it "
                         "again as TIFF or PNG")
    return data


def check_output_path(path: str | os.PathLike, what: str = "output") -> Path:
    """The file that writing ``path`` replaces or creates (a symbolic link's target: the link stays),
    refusing before any work a folder, and a path under a file or under a folder this user cannot
    write. Missing folders are fine: they are created when the file is written."""
    p = Path(path).expanduser()
    if p.is_symlink():
        p = Path(os.path.realpath(p))
    if p.is_dir():
        raise IsADirectoryError(f"the {what} {str(p)!r} is a folder; give the name of a file (inside it)")
    problem = folder_problem(p.parent)  # missing folders below it are created
    if problem is not None and problem[1] is NotADirectoryError:
        raise NotADirectoryError(f"cannot write the {what} {str(p)!r}: {str(problem[0])!r} is a file, not a "
                                 "folder; choose another path")
    if problem is not None:
        raise PermissionError(f"cannot write the {what} {str(p)!r}: the folder {str(problem[0])!r} is not writable "
                              "for this user; choose another path")
    return p


def _check_suffix(path: Path, endings: tuple[str, ...], kind: str) -> None:
    if path.suffix.lower() not in endings:
        raise ValueError(f"{str(path)!r} would hold {kind}; give it a name ending in {' or '.join(endings)}")


def _atomic_write(path: Path, write) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``; never leaves a partial file."""
    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600; give the file its usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _file_mode(path: Path) -> int:
    """The mode of the file being replaced, else what the umask gives a new file."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_labels(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write a label image (integer ids, or bool) as a compressed TIFF, atomically; ``path`` must
    end in .tif or .tiff."""
    import tifffile

    if not isinstance(labels, np.ndarray):
        raise TypeError(f"labels must be a numpy array of integer ids, got {type(labels).__name__}")
    if labels.dtype != bool and not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must hold integer ids (or bool), got dtype {labels.dtype}; convert them first, "
                        "e.g. labels.astype(np.uint16)")
    _check_suffix(Path(path), TIFF_SUFFIXES, "a TIFF")
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    # minisblack: a stack of 3 or 4 slices would otherwise be stored as one RGB(A) picture
    return _atomic_write(Path(path), lambda tmp: tifffile.imwrite(tmp, labels, compression="zlib",
                                                                  photometric="minisblack"))


def write_label_pages(path: str | os.PathLike, pages, shape: tuple[int, ...], dtype) -> Path:
    """Write a label stack of ``shape`` and integer ``dtype`` from an iterator of its 2D pages
    (first axis), as :func:`write_labels` does, without holding the stack in memory."""
    import tifffile

    if not np.issubdtype(np.dtype(dtype), np.integer):
        raise TypeError(f"labels must hold integer ids, got dtype {np.dtype(dtype)}")
    _check_suffix(Path(path), TIFF_SUFFIXES, "a TIFF")
    return _atomic_write(Path(path), lambda tmp: tifffile.imwrite(tmp, data=pages, shape=tuple(shape), dtype=dtype,
                                                                  compression="zlib", photometric="minisblack"))


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an RGB(A) uint8 image as PNG, atomically."""
    import imageio.v3 as iio

    _check_suffix(Path(path), (".png",), "a PNG")
    return _atomic_write(Path(path), lambda tmp: iio.imwrite(tmp, rgb, extension=".png"))


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """An RGB uint8 picture of ``image`` (2D or RGB, windowed 1-99.8 %) with
    each label in its own colour and its outline drawn opaque."""
    from skimage.color import label2rgb
    from skimage.segmentation import find_boundaries

    from .engine.preprocess import as_2d_channels, intensity_window, to_unit_range

    data = as_2d_channels(image)
    unit = to_unit_range(data, intensity_window(data))
    base = np.repeat(unit, 3, axis=-1) if unit.shape[-1] == 1 else unit
    if labels.max() == 0:
        return (base * 255).astype(np.uint8)
    rgb = label2rgb(labels, image=base, alpha=alpha, bg_label=0, image_alpha=1.0)
    edges = find_boundaries(labels, mode="inner")
    colours = label2rgb(labels, bg_label=0)
    rgb[edges] = colours[edges]
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def write_csv(path: str | os.PathLike, columns: list[str], rows: list[list]) -> Path:
    """Write a table as CSV with a header line (``columns``), atomically; ``path`` must end in .csv."""
    import csv

    _check_suffix(Path(path), (".csv",), "a CSV table")

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(columns)
            out.writerows(rows)
    return _atomic_write(Path(path), write)

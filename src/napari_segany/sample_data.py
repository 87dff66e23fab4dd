"""Small real images shipped in the repository's ``sample_data/`` folder.

The files live next to the source tree (``src/napari_segany/../../sample_data``),
not inside the package, so they are available in a repository checkout or an
editable install but not in an installed wheel. Provenance and licences are in
``sample_data/README.md``; ``tools/make_sample_data.py`` rebuilds the files.

Names
-----
``nuclei2d``         (512, 512) uint16, fluorescent nuclei (DSB 2018, via StarDist)
``nuclei2d_labels``  (512, 512) uint16, 125 labelled nuclei
``nuclei3d``         (60, 256, 256) uint16 (z, y, x), nuclei (skimage ``cells3d``)
``nuclei3d_labels``  (60, 256, 256) uint16, 20 labelled nuclei
``mri_t1``           (89, 108, 90) uint16 (z, y, x), 2 mm T1 head (MRIcron ch2)

This module does not import napari.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["SAMPLE_NAMES", "sample_path", "load_sample", "voxel_size", "voxel_unit"]

SAMPLE_NAMES: tuple[str, ...] = (
    "nuclei2d",
    "nuclei2d_labels",
    "nuclei3d",
    "nuclei3d_labels",
    "mri_t1",
)

# Spacing per axis of the stored array, in the unit named alongside.
# nuclei3d: skimage.data.cells3d docstring, (0.29, 0.26, 0.26) micrometre (z, y, x).
# mri_t1: MRIcron ch2 is 1 mm isotropic; downsampled 2x -> 2 mm.
# nuclei2d: the DSB 2018 release gives no pixel size.
_VOXEL_SIZES: dict[str, tuple[tuple[float, ...], str] | None] = {
    "nuclei2d": None,
    "nuclei2d_labels": None,
    "nuclei3d": ((0.29, 0.26, 0.26), "um"),
    "nuclei3d_labels": ((0.29, 0.26, 0.26), "um"),
    "mri_t1": ((2.0, 2.0, 2.0), "mm"),
}


def _sample_dir() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "sample_data"


def _check_name(name: str) -> None:
    if name not in SAMPLE_NAMES:
        raise ValueError(
            f"name={name!r} is not a known sample; choose one of {', '.join(SAMPLE_NAMES)}."
        )


def sample_path(name: str) -> Path:
    """Path of a sample TIFF in the repository's ``sample_data/`` folder.

    Parameters
    ----------
    name : str
        One of :data:`SAMPLE_NAMES`.

    Returns
    -------
    pathlib.Path
        ``<repo>/sample_data/<name>.tif``.

    Raises
    ------
    ValueError
        If ``name`` is not a known sample.
    FileNotFoundError
        If the file is not there, e.g. when napari-segany was installed from a
        wheel, which does not include ``sample_data/``.
    """
    _check_name(name)
    path = _sample_dir() / f"{name}.tif"
    if not path.is_file():
        raise FileNotFoundError(
            f"Sample file {path} was not found. The sample data ships with the "
            "napari-segany source repository, not with the installed package: "
            "clone the repository and install it with `pip install -e .`, or "
            "rebuild the files with tools/make_sample_data.py."
        )
    return path


def load_sample(name: str) -> np.ndarray:
    """Load a sample image or label array.

    Parameters
    ----------
    name : str
        One of :data:`SAMPLE_NAMES`.

    Returns
    -------
    numpy.ndarray
        The stored array with its stored dtype (all samples are uint16);
        3D samples are in (z, y, x) order.
    """
    import tifffile

    return tifffile.imread(sample_path(name))


def voxel_size(name: str) -> tuple[float, ...] | None:
    """Spacing of the sample's axes, or None when the source gives none.

    Parameters
    ----------
    name : str
        One of :data:`SAMPLE_NAMES`.

    Returns
    -------
    tuple of float or None
        ``(dz, dy, dx)``: micrometres for ``nuclei3d``/``nuclei3d_labels``,
        millimetres for ``mri_t1``; None for the 2D nuclei. Use
        :func:`voxel_unit` for the unit.
    """
    _check_name(name)
    entry = _VOXEL_SIZES[name]
    return None if entry is None else entry[0]


def voxel_unit(name: str) -> str | None:
    """Unit of :func:`voxel_size` (``"um"`` or ``"mm"``), or None."""
    _check_name(name)
    entry = _VOXEL_SIZES[name]
    return None if entry is None else entry[1]

"""Sample-data hooks for the napari manifest: LayerData tuples, no napari import.

The files live in the repository's ``sample_data/`` folder (see
:mod:`napari_segany.sample_data`); the labels come as a Labels layer, and the
3D samples carry their voxel size as the layers' scale.
"""

from __future__ import annotations

from ..sample_data import load_sample, voxel_size, voxel_unit


def _meta(name: str, **extra) -> dict:
    meta = {"name": name, **extra}
    scale = voxel_size(name)
    if scale is not None:
        meta["scale"] = scale
        meta["units"] = voxel_unit(name)
    return meta


def _with_labels(name: str) -> list[tuple]:
    return [
        (load_sample(name), _meta(name), "image"),
        (load_sample(f"{name}_labels"), _meta(f"{name}_labels", opacity=0.4, visible=False), "labels"),
    ]


def nuclei2d() -> list[tuple]:
    """2D fluorescent nuclei (512 x 512, uint16) and their 125 labels."""
    return _with_labels("nuclei2d")


def nuclei3d() -> list[tuple]:
    """3D nuclei stack (60 x 256 x 256, uint16, 0.29/0.26/0.26 um) and 20 labels."""
    return _with_labels("nuclei3d")


def mri_t1() -> list[tuple]:
    """T1 MRI head (89 x 108 x 90, uint16, 2 mm voxels)."""
    return [(load_sample("mri_t1"), _meta("mri_t1", colormap="gray"), "image")]

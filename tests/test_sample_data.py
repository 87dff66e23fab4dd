"""The real images in sample_data/ load, have the documented shapes, dtypes and
metadata, and their labels sit on the bright nuclei."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segany.sample_data import (
    SAMPLE_NAMES,
    load_sample,
    sample_path,
    voxel_size,
    voxel_unit,
)

EXPECTED = {
    "nuclei2d": ((512, 512), np.uint16),
    "nuclei2d_labels": ((512, 512), np.uint16),
    "nuclei3d": ((60, 256, 256), np.uint16),
    "nuclei3d_labels": ((60, 256, 256), np.uint16),
    "mri_t1": ((89, 108, 90), np.uint16),
}


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_shape_and_dtype(name):
    shape, dtype = EXPECTED[name]
    arr = load_sample(name)
    assert arr.shape == shape
    assert arr.dtype == dtype
    assert arr.max() > arr.min()


@pytest.mark.parametrize(
    ("image", "labels", "n_objects"),
    [("nuclei2d", "nuclei2d_labels", 125), ("nuclei3d", "nuclei3d_labels", 20)],
)
def test_labels_count_and_alignment(image, labels, n_objects):
    img = load_sample(image).astype(np.float64)
    lab = load_sample(labels)
    ids = np.unique(lab)
    assert ids[0] == 0
    assert len(ids) - 1 == n_objects
    inside = img[lab > 0].mean()
    outside = img[lab == 0].mean()
    assert inside > 1.5 * outside
    # Each object, not just the union, is brighter than the background.
    sums = np.bincount(lab.ravel(), weights=img.ravel())
    counts = np.bincount(lab.ravel())
    means = sums[ids[1:]] / counts[ids[1:]]
    assert (means > outside).all()


def test_mri_head_is_centred_and_background_dark():
    vol = load_sample("mri_t1").astype(np.float64)
    z, y, x = (s // 2 for s in vol.shape)
    centre = vol[z - 5 : z + 5, y - 5 : y + 5, x - 5 : x + 5].mean()
    corners = np.mean([vol[-3:, :3, :3].mean(), vol[-3:, -3:, -3:].mean()])
    assert centre > 40 and corners < 5


def test_voxel_sizes_match_tiff_metadata():
    assert voxel_size("nuclei2d") is None and voxel_unit("nuclei2d") is None
    assert voxel_size("mri_t1") == (2.0, 2.0, 2.0) and voxel_unit("mri_t1") == "mm"
    assert voxel_size("nuclei3d") == (0.29, 0.26, 0.26) and voxel_unit("nuclei3d") == "um"
    for name in ("mri_t1", "nuclei3d", "nuclei3d_labels"):
        dz, dy, dx = voxel_size(name)
        with tifffile.TiffFile(sample_path(name)) as tif:
            meta = tif.imagej_metadata
            tags = tif.pages[0].tags
            xres = tags["XResolution"].value
            yres = tags["YResolution"].value
        assert meta["unit"] == voxel_unit(name)
        assert meta["spacing"] == pytest.approx(dz)
        assert xres[1] / xres[0] == pytest.approx(dx, rel=1e-3)
        assert yres[1] / yres[0] == pytest.approx(dy, rel=1e-3)


def test_unknown_name_raises():
    with pytest.raises(ValueError, match="nuclei2d"):
        sample_path("cells")
    with pytest.raises(ValueError):
        voxel_size("cells")


def test_missing_file_message(monkeypatch, tmp_path):
    import napari_segany.sample_data as sd

    monkeypatch.setattr(sd, "_sample_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="source repository"):
        sd.load_sample("nuclei2d")

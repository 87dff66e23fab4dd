"""Zarr arrays (format 2 and 3) and OME-Zarr images as inputs of ``auto``: read lazily, in our axis
order, and segmented as the same pixels in a TIFF are."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_segany import GridSettings
from napari_segany.batch import run_auto
from napari_segany.batch.inputs import expand_inputs
from napari_segany.batch.zarr_input import open_zarr
from napari_segany.sample_data import load_sample


def _ome(path, data, axes, *, version="0.4", zarr_format=2, levels=("0", "1")):
    """An OME-Zarr image: ``data`` at level "0", a 2x coarser copy at "1", and the multiscales metadata."""
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    for step, name in enumerate(levels):
        cut = tuple(slice(None, None, 2 ** step) if a[1] == "space" else slice(None) for a in axes)
        level = np.ascontiguousarray(data[cut])
        group.create_array(name, shape=level.shape, dtype=level.dtype)[...] = level
    meta = [{"version": version, "axes": [{"name": n, "type": t} for n, t in axes],
             "datasets": [{"path": name} for name in levels]}]
    if version == "0.5":
        group.attrs["ome"] = {"version": "0.5", "multiscales": meta}
    else:
        group.attrs["multiscales"] = meta
    return path


def test_zarr_arrays_and_ome_zarr_are_segmented_as_the_tiff(tmp_path):
    image = load_sample("nuclei2d")[0:160, 0:160]
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "tif.tif", image)
    zarr.create_array(str(inputs / "v3.zarr"), shape=image.shape, dtype=image.dtype, chunks=(64, 64),
                      zarr_format=3)[...] = image
    _ome(inputs / "ome.ome.zarr", image[None, None], [("t", "time"), ("c", "channel"), ("y", "space"),
                                                        ("x", "space")])
    results = run_auto(inputs, tmp_path / "out", settings=GridSettings(points_per_side=6), progress=False)
    assert [r["path"].rsplit("/", 1)[1] for r in results] == ["ome.ome.zarr", "tif.tif", "v3.zarr"]
    assert [r["status"] for r in results] == ["segmented"] * 3 and all(r["kind"] == "image" for r in results)
    labels = {n: tifffile.imread(tmp_path / "out" / f"{n}_labels.tif") for n in ("ome", "tif", "v3")}
    assert labels["tif"].max() > 0
    np.testing.assert_array_equal(labels["v3"], labels["tif"])
    np.testing.assert_array_equal(labels["ome"], labels["tif"])
    tables = {n: (tmp_path / "out" / f"{n}_objects.csv").read_text() for n in ("ome", "tif", "v3")}
    assert tables["v3"] == tables["tif"] == tables["ome"]
    again = run_auto(inputs, tmp_path / "out", settings=GridSettings(points_per_side=6), progress=False)
    assert [r["status"] for r in again] == ["skipped"] * 3


def test_ome_axes_become_ours_and_are_read_lazily(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (2, 3, 20, 24), dtype=np.uint16)  # (c, z, y, x)
    axes = [("c", "channel"), ("z", "space"), ("y", "space"), ("x", "space")]
    view = open_zarr(_ome(tmp_path / "cz.ome.zarr", data, axes, version="0.5", zarr_format=3))
    ours = data.transpose(1, 2, 3, 0)  # (Z, Y, X, C)
    assert view.shape == ours.shape and view.ndim == 4 and view.dtype == np.uint16
    np.testing.assert_array_equal(view[1], ours[1])
    np.testing.assert_array_equal(view[:, 5], ours[:, 5])
    np.testing.assert_array_equal(view[..., 1], ours[..., 1])
    np.testing.assert_array_equal(view[0, 2:9, ::3, 0], ours[0, 2:9, ::3, 0])
    np.testing.assert_array_equal(np.asarray(view), ours)

    plain = zarr.create_array(str(tmp_path / "v2.zarr"), shape=(3, 20, 24), dtype="f4", zarr_format=2)
    plain[...] = data[0]
    assert np.asarray(open_zarr(tmp_path / "v2.zarr")).tolist() == data[0].tolist()

    with pytest.raises(ValueError, match="3 time points"):
        open_zarr(_ome(tmp_path / "t.ome.zarr", data[:1].repeat(3, 0), [("t", "time")] + axes[1:]))
    group = zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    group.create_array("labels", shape=(4, 4), dtype="u2")
    with pytest.raises(ValueError, match="without the array '0'.*labels"):
        open_zarr(tmp_path / "empty.zarr")


def test_a_folder_of_zarr_arrays_and_files(tmp_path):
    zarr.create_array(str(tmp_path / "b.zarr"), shape=(8, 8), dtype="u1")
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    (tmp_path / "notes.zarr").mkdir()  # a folder named .zarr that holds no array is not an input
    assert [s.path.name for s in expand_inputs([str(tmp_path)])] == ["a.tif", "b.zarr"]
    assert [s.path.name for s in expand_inputs([str(tmp_path / "*.zarr")])] == ["b.zarr"]
    assert [s.path.name for s in expand_inputs([str(tmp_path / "b.zarr")])] == ["b.zarr"]

"""``napari-segany auto`` on the real sample data with the included model, through main().

Grids are coarse (8 points per side) to keep the runs short; what is checked is what the command
promises: the files, their shapes and types, a table that agrees with the labels, resuming,
--overwrite, many inputs with a bad one among them, inputs never overwritten, volumes."""

from __future__ import annotations

import csv
import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_segany.cli import main
from napari_segany.batch.inputs import expand_inputs, layout
from napari_segany.sample_data import load_sample, sample_path

GRID = ["--points-per-side", "8"]


def _run(capsys, argv):
    """(exit status, the JSON summary, stderr) of ``napari-segany auto ARGV --json``."""
    rc = main(["auto", *argv, *GRID, "--json"])
    out, err = capsys.readouterr()
    return rc, json.loads(out), err


def _table(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_table_matches_labels(labels, rows, *, volume=False):
    """One row per object, with the object's own pixel count and box."""
    ids = sorted(int(r["id"]) for r in rows)
    assert ids == [int(i) for i in np.unique(labels) if i]
    for r in rows:
        mine = labels == int(r["id"])
        assert int(r["voxels" if volume else "area"]) == np.count_nonzero(mine)
        where = np.nonzero(mine)
        names = ("z", "y", "x") if volume else ("row", "col")
        assert [int(r[f"bbox_min_{n}"]) for n in names] == [int(w.min()) for w in where]
        assert [int(r[f"bbox_max_{n}"]) for n in names] == [int(w.max()) for w in where]
        assert [float(r[f"centroid_{n}"]) for n in names] == pytest.approx([w.mean() for w in where], abs=0.01)


def test_an_image_is_segmented_then_skipped_then_redone(tmp_path, capsys):
    out = tmp_path / "out"
    rc, summary, _ = _run(capsys, [str(sample_path("nuclei2d")), "--output-dir", str(out)])
    assert rc == 0 and summary["segmented"] == 1 and summary["failed"] == 0
    assert summary["model"] == "segany_vit_t_512" and summary["precision"] == "fp32"
    done = summary["inputs"][0]
    assert done["status"] == "segmented" and done["kind"] == "image" and done["seconds"] > 0
    labels_path, table_path = out / "nuclei2d_labels.tif", out / "nuclei2d_objects.csv"
    assert done["outputs"] == {"labels": str(labels_path), "objects": str(table_path)}
    labels = tifffile.imread(labels_path)
    assert labels.shape == (512, 512) and labels.dtype == np.uint16
    rows = _table(table_path)
    assert done["objects"] == len(rows) >= 5
    _check_table_matches_labels(labels, rows)
    assert all(float(r["predicted_iou"]) >= 0.58 and float(r["stability"]) >= 0.5 for r in rows)
    assert all(int(r["area"]) >= 20 for r in rows)
    # the objects are nuclei: most of their pixels lie on the annotated nuclei
    truth = load_sample("nuclei2d_labels")
    assert np.count_nonzero(truth[labels > 0]) / np.count_nonzero(labels) > 0.8

    # a second run finds the outputs complete: nothing is loaded or written
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    rc, again, _ = _run(capsys, [str(sample_path("nuclei2d")), "--output-dir", str(out)])
    assert rc == 0 and again["skipped"] == 1 and again["inputs"][0]["objects"] == len(rows)
    assert again["model"] is None
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps

    # the picture asked for later is drawn from the labels, without segmenting again
    rc, pic, _ = _run(capsys, [str(sample_path("nuclei2d")), "--output-dir", str(out), "--overlay"])
    assert rc == 0 and pic["skipped"] == 1 and pic["model"] is None
    png = iio.imread(out / "nuclei2d_overlay.png")
    assert png.shape == (512, 512, 3) and png.dtype == np.uint8
    assert len(np.unique(png.reshape(-1, 3), axis=0)) > 20  # the image and coloured objects, not one colour

    # --overwrite segments again, with the same result (ids are deterministic)
    rc, redo, _ = _run(capsys, [str(sample_path("nuclei2d")), "--output-dir", str(out), "--overwrite"])
    assert rc == 0 and redo["segmented"] == 1
    assert labels_path.stat().st_mtime_ns != stamps[labels_path]
    np.testing.assert_array_equal(tifffile.imread(labels_path), labels)

    # a run killed after the table was written (the labels come last) is redone
    labels_path.unlink()
    table_path.write_text("id,area\n1,")  # a stale table
    rc, resumed, _ = _run(capsys, [str(sample_path("nuclei2d")), "--output-dir", str(out)])
    assert rc == 0 and resumed["segmented"] == 1
    assert len(_table(table_path)) == len(rows)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "a temporary file was left behind"


def test_outputs_that_are_not_a_complete_result_are_kept(tmp_path, capsys):
    """A labels file of another shape, or one without its table, may be someone's work: the input
    fails with a sentence naming --overwrite, and the files stay as they were (no model loaded)."""
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "nuclei2d_labels.tif"
    tifffile.imwrite(mine, np.ones((10, 10), np.uint16))
    before = mine.read_bytes()
    rc = main(["auto", str(sample_path("nuclei2d")), "-d", str(out), "-m", str(tmp_path / "absent.pth")])
    err = capsys.readouterr().err
    assert rc == 1 and "(10, 10)" in err and "--overwrite" in err and "absent.pth" not in err
    assert mine.read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["nuclei2d_labels.tif"]
    tifffile.imwrite(mine, np.ones((512, 512), np.uint16))
    before = mine.read_bytes()
    rc = main(["auto", str(sample_path("nuclei2d")), "-d", str(out), "-m", str(tmp_path / "absent.pth")])
    err = capsys.readouterr().err
    assert rc == 1 and "nuclei2d_objects.csv is missing" in err and "--overwrite" in err
    assert mine.read_bytes() == before


def _crops(folder):
    """Three small images cut from the real nuclei: a 16-bit TIFF, an 8-bit grayscale PNG, an RGB PNG."""
    image = load_sample("nuclei2d")
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", image[:256, :256])
    eight = (np.clip(image[256:, :256] / np.percentile(image, 99.8), 0, 1) * 255).astype(np.uint8)
    iio.imwrite(folder / "b.png", eight)
    iio.imwrite(folder / "c.png", np.repeat(eight[:200, :240, None], 3, axis=-1))
    return {"a": (256, 256), "b": (256, 256), "c": (200, 240)}


def test_a_folder_with_a_bad_file_among_good_ones(tmp_path, capsys):
    folder = tmp_path / "plate"
    shapes = _crops(folder)
    (folder / "bad.tif").write_text("not an image")
    (folder / "notes.txt").write_text("not an input")
    # the outputs go into the input folder: the next run must not take them for inputs
    rc, summary, err = _run(capsys, [str(folder), "-d", str(folder), "--overlay"])
    assert rc == 1
    assert [r["path"] for r in summary["inputs"]] == [str(folder / n) for n in ("a.tif", "b.png", "bad.tif", "c.png")]
    assert [r["status"] for r in summary["inputs"]] == ["segmented", "segmented", "failed", "segmented"]
    bad = summary["inputs"][2]
    assert "bad.tif" in bad["error"] and "could not be read as an image" in bad["error"]
    assert "bad.tif" in err and "1 of 4 inputs failed" in err
    assert not (folder / "bad_labels.tif").exists() and not (folder / "bad_objects.csv").exists()
    for name, shape in shapes.items():
        labels = tifffile.imread(folder / f"{name}_labels.tif")
        assert labels.shape == shape and labels.dtype == np.uint16 and labels.max() > 0
        _check_table_matches_labels(labels, _table(folder / f"{name}_objects.csv"))
        assert iio.imread(folder / f"{name}_overlay.png").shape == (*shape, 3)

    rc, again, err = _run(capsys, [str(folder), "-d", str(folder), "--overlay"])
    assert rc == 1 and len(again["inputs"]) == 4  # not the labels, tables and pictures of the first run
    assert [r["status"] for r in again["inputs"]] == ["skipped", "skipped", "failed", "skipped"]
    assert again["model"] is None and "bad.tif" in err


def test_inputs_are_named_by_files_folders_and_patterns(tmp_path):
    folder = tmp_path / "plate"
    _crops(folder)
    (folder / ".hidden.tif").write_bytes(b"")
    names = lambda specs: [s.path.name for s in expand_inputs(specs)]  # noqa: E731
    assert names([str(folder)]) == ["a.tif", "b.png", "c.png"]
    assert names([str(folder / "*.png")]) == ["b.png", "c.png"]
    assert names([str(folder / "c.png"), str(folder)]) == ["c.png", "a.tif", "b.png"]  # each once
    for spec, says in ((str(folder / "*.jpg"), "matches no image"), (str(tmp_path / "none.tif"), "no image file"),
                       (str(tmp_path / "empty"), "no image file")):
        with pytest.raises(FileNotFoundError, match=says):
            expand_inputs([spec])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no image files"):
        expand_inputs([str(tmp_path / "empty")])


def test_what_is_an_image_and_what_is_a_volume():
    def kind(shape, volume=False, channel=None):
        plan = layout(np.zeros(shape, np.uint8), volume=volume, channel=channel, axis=0)
        return plan.kind, plan.shape

    assert kind((64, 80)) == ("image", (64, 80))
    assert kind((64, 80, 3)) == ("image", (64, 80))  # RGB
    assert kind((64, 80, 4)) == ("image", (64, 80))  # RGBA
    assert kind((64, 80, 6), channel=2) == ("image", (64, 80))
    assert kind((5, 64, 80)) == ("volume", (5, 64, 80))
    assert kind((64, 80, 3), volume=True) == ("volume", (64, 80, 3))
    assert kind((5, 64, 80, 2), channel=1) == ("volume", (5, 64, 80))
    for shape, options, says in (((64, 80, 2), {}, "--channel C"), ((5, 64, 80, 2), {}, "--channel C"),
                                 ((64, 80), {"volume": True}, "leave --volume out"),
                                 ((64, 80, 3), {"channel": 3}, "--channel 3"),
                                 ((5, 64, 80), {"volume": True, "channel": 0}, "--channel 0"),
                                 ((2, 3, 4, 5, 6), {}, "(2, 3, 4, 5, 6)")):
        with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
            kind(shape, **options)


def test_inputs_are_never_overwritten(tmp_path, capsys):
    """Refused before the model loads (``-m`` names a file that does not exist)."""
    absent = ["-m", str(tmp_path / "absent.pth")]
    image = tmp_path / "cells.tif"
    shutil.copy(sample_path("nuclei2d"), image)
    other = tmp_path / "cells_labels.tif"
    shutil.copy(sample_path("nuclei2d_labels"), other)
    png = tmp_path / "cells.png"
    iio.imwrite(png, np.zeros((8, 8), np.uint8))
    before = {p: p.read_bytes() for p in (image, other, png)}
    cases = [
        (["auto", str(image), "-o", str(image), "--overwrite"], ["cells.tif", "itself", "never overwritten"]),
        (["auto", str(image), str(other), "-d", str(tmp_path), "--overwrite"], ["cells_labels.tif", "never"]),
        (["auto", str(image), "-o", str(tmp_path / "cells.tif"), "--overlay"], ["never overwritten"]),
        (["auto", str(image), "-o", str(tmp_path / "x.tif"), "--existing", str(tmp_path / "x.tif")],
         ["x.tif", "never overwritten"]),
        (["auto", str(image), str(png), "-d", str(tmp_path / "out")], ["cells.tif", "cells.png", "same name"]),
        (["auto", str(image), str(other), "-o", str(tmp_path / "o.tif")], ["2 inputs", "--output-dir"]),
        (["auto", str(image), "-o", str(tmp_path / "o.png")], ["-o", ".tif"]),
        (["auto", str(image), str(png), "-d", str(tmp_path / "out2"), "--existing", str(other)],
         ["--existing", "2 inputs"]),
    ]
    for argv, says in cases:
        assert main(argv + absent) == 1, argv
        out, err = capsys.readouterr()
        assert out == "" and "absent.pth" not in err, argv
        for word in says:
            assert word in err, (argv, err)
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "out").exists() and not (tmp_path / "o.csv").exists()


def test_a_volume_gives_3d_labels_with_ids_across_slices(tmp_path, capsys):
    volume = tmp_path / "stack.tif"
    tifffile.imwrite(volume, load_sample("nuclei3d")[28:32, 64:192, 64:192], photometric="minisblack")
    rc, summary, _ = _run(capsys, [str(volume), "-o", str(tmp_path / "stack_labels.tif"), "--overlay"])
    assert rc == 0 and summary["inputs"][0]["kind"] == "volume"
    labels = tifffile.imread(tmp_path / "stack_labels.tif")
    assert labels.shape == (4, 128, 128) and labels.dtype == np.uint16
    with tifffile.TiffFile(tmp_path / "stack_labels.tif") as tif:  # 4 grey pages, not one RGBA picture
        assert len(tif.pages) == 4 and tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK
    rows = _table(tmp_path / "stack_labels.csv")
    assert summary["inputs"][0]["objects"] == len(rows) > 0
    _check_table_matches_labels(labels, rows, volume=True)
    for r in rows:
        slices = np.flatnonzero((labels == int(r["id"])).any(axis=(1, 2)))
        assert (int(r["first_slice"]), int(r["last_slice"])) == (slices.min(), slices.max())
    assert any(int(r["last_slice"]) > int(r["first_slice"]) for r in rows), "no object spans two slices"
    assert iio.imread(tmp_path / "stack_labels.png").shape == (128, 128, 3)  # the middle slice


def test_existing_labels_are_kept_and_the_rest_segmented(tmp_path, capsys):
    image, truth = load_sample("nuclei2d")[:256, :256], load_sample("nuclei2d_labels")[:256, :256]
    tifffile.imwrite(tmp_path / "cells.tif", image)
    kept = np.where(np.isin(truth, np.unique(truth)[1::2]), truth, 0).astype(np.uint16)  # half the nuclei
    tifffile.imwrite(tmp_path / "drawn.tif", kept)
    rc, summary, _ = _run(capsys, [str(tmp_path / "cells.tif"), "-d", str(tmp_path / "out"),
                                   "--existing", str(tmp_path / "drawn.tif")])
    assert rc == 0
    labels = tifffile.imread(tmp_path / "out" / "cells_labels.tif")
    np.testing.assert_array_equal(labels[kept > 0], kept[kept > 0])  # the drawn objects, untouched
    rows = _table(tmp_path / "out" / "cells_objects.csv")
    assert summary["inputs"][0]["objects"] == len(rows) > 0
    new = [int(r["id"]) for r in rows]
    assert min(new) > kept.max() and set(np.unique(labels[kept == 0])) - {0} == set(new)
    for r in rows:
        assert int(r["area"]) == np.count_nonzero(labels == int(r["id"]))


def test_the_mode_picks_the_prompts_and_head_mode_needs_a_head(tmp_path, capsys, tiny_model_path):
    """``--mode head`` with the included model prompts from its instance head (recorded in the
    summary; the objects are nuclei); ``--mode head`` with a model without a head fails that input
    with what to do instead; without ``--mode`` a grid density asked for gives the grid."""
    image = str(sample_path("nuclei2d"))
    rc = main(["auto", image, "-o", str(tmp_path / "head.tif"), "--mode", "head", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["settings"]["mode"] == "head" and summary["inputs"][0]["objects"] >= 60
    labels = tifffile.imread(tmp_path / "head.tif")
    truth = load_sample("nuclei2d_labels")
    assert np.count_nonzero(truth[labels > 0]) / np.count_nonzero(labels) > 0.8

    rc = main(["auto", image, "-o", str(tmp_path / "none.tif"), "--mode", "head", "--model", str(tiny_model_path),
               "--json"])
    out, err = capsys.readouterr()
    failed = json.loads(out)["inputs"][0]
    assert rc == 1 and failed["status"] == "failed" and "no instance head" in failed["error"]
    assert "mode='grid'" in failed["error"] and not (tmp_path / "none.tif").exists()

    rc, summary, _ = _run(capsys, [image, "-o", str(tmp_path / "grid.tif")])
    assert rc == 0 and summary["settings"]["mode"] == "auto" and summary["settings"]["points_per_side"] == 8

"""``napari-segany propagate VOLUMES... --output-dir DIR`` (issue 31): the objects drawn in each
volume's seeds file propagated through it, in this process and on a real LocalCluster of 2 worker
processes, with the included model on crops of the real 3D nuclei; resuming, a bad volume among
good ones, and outputs never over an input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_segany.cli import main
from napari_segany.sample_data import load_sample

pytest.importorskip("distributed")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    """Two volumes of 12 slices with their nuclei drawn on their middle slice (from the annotation),
    and the truth."""
    folder = tmp_path_factory.mktemp("stacks")
    volume, truth = load_sample("nuclei3d")[24:36], load_sample("nuclei3d_labels")[24:36]
    crops = {"left": (slice(None), slice(64, 192), slice(0, 128)), "right": (slice(None), slice(64, 192), slice(128, 256))}
    truths = {}
    for name, box in crops.items():
        tifffile.imwrite(folder / f"{name}.tif", volume[box])
        seeds = np.zeros(truth[box].shape, np.uint16)
        seeds[6] = truth[box][6]
        tifffile.imwrite(folder / f"{name}_seeds.tif", seeds)
        truths[name] = truth[box]
    return folder, truths


def _run(capsys, argv):
    rc = main(["propagate", *argv, "--json"])
    out, err = capsys.readouterr()
    return rc, json.loads(out), err


@pytest.fixture(scope="module")
def single(stacks, tmp_path_factory):
    """The run in this process: (exit status, its JSON summary, the output folder)."""
    import contextlib
    import io

    folder, _ = stacks
    out = tmp_path_factory.mktemp("single")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["propagate", str(folder), "-d", str(out), "--json"])  # the folder: its seeds are not inputs
    return rc, json.loads(printed.getvalue()), out


def test_drawn_objects_are_propagated_in_each_volume_then_skipped(stacks, single, capsys):
    folder, truths = stacks
    rc, summary, out = single
    assert rc == 0 and summary["propagated"] == 2 and summary["failed"] == 0
    assert [Path(v["path"]).name for v in summary["volumes"]] == ["left.tif", "right.tif"]
    for v in summary["volumes"]:
        name = Path(v["path"]).stem
        labels = tifffile.imread(out / f"{name}_labels.tif")
        truth = truths[name]
        assert labels.shape == truth.shape
        ids = [int(i) for i in np.unique(truth[6]) if i]
        assert v["objects"] == len(ids) and sorted(map(int, v["reached"])) == ids
        np.testing.assert_array_equal(labels[6], truth[6])  # the drawn slice as drawn
        # each object went beyond its slice and stayed on its nucleus (mean IoU over the slices it reached)
        spans = [v["reached"][str(i)] for i in ids]
        assert sum(last - first >= 4 for first, last in spans) >= len(ids) // 2
        scores = [np.mean([_iou(labels[z] == i, truth[z] == i) for z in range(first, last + 1)])
                  for i, (first, last) in zip(ids, spans)]
        assert np.mean(scores) > 0.6, scores

    rc, again, _ = _run(capsys, [str(folder / "left.tif"), str(folder / "right.tif"), "-d", str(out)])
    assert rc == 0 and again["skipped"] == 2 and again["model"] is None  # nothing loaded


def test_a_bad_volume_among_good_ones_and_outputs_never_over_inputs(stacks, single, tmp_path, capsys):
    folder, truths = stacks
    odd = tmp_path / "odd"
    odd.mkdir()
    tifffile.imwrite(odd / "odd.tif", np.zeros((12, 64, 64), np.uint8))
    tifffile.imwrite(odd / "odd_seeds.tif", np.zeros((12, 32, 32), np.uint16))  # not its shape
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "left_labels.tif").write_bytes((single[2] / "left_labels.tif").read_bytes())
    rc, summary, err = _run(capsys, [str(folder / "left.tif"), str(odd / "odd.tif"), "-d", str(tmp_path / "o")])
    assert rc == 1 and [v["status"] for v in summary["volumes"]] == ["skipped", "failed"]
    assert "odd_seeds.tif have shape (12, 32, 32)" in summary["volumes"][1]["error"]
    assert not (tmp_path / "o" / "odd_labels.tif").exists()

    (odd / "lone.tif").write_bytes((odd / "odd.tif").read_bytes())  # no seeds file: refused before any work
    assert main(["propagate", str(odd / "lone.tif"), "-d", str(tmp_path / "o")]) == 1
    assert "lone.tif has no seeds file" in capsys.readouterr().err
    # the output folder is the input folder: an earlier run's outputs there are not inputs
    for name in ("left", "right"):
        (folder / f"{name}_labels.tif").write_bytes((single[2] / f"{name}_labels.tif").read_bytes())
    rc, summary, _ = _run(capsys, [str(folder), "-d", str(folder)])
    assert rc == 0 and summary["skipped"] == 2 and len(summary["volumes"]) == 2
    from napari_segany.batch import plan_propagations
    from napari_segany.batch.inputs import expand_inputs

    with pytest.raises(ValueError, match="would replace an input"):  # seeds named like the output
        plan_propagations(expand_inputs([str(folder / "left.tif")]), folder, seeds_suffix="_labels")
    for name in ("left", "right"):
        (folder / f"{name}_labels.tif").unlink()
    assert main(["propagate", str(folder / "left.tif"), "-d", str(tmp_path / "x"), "--slice", "3"]) == 1
    assert "leave out --slice" in capsys.readouterr().err


def test_a_local_cluster_writes_what_one_process_writes(stacks, single, tmp_path, capsys):
    folder, _ = stacks
    one, two = single[2], tmp_path / "two"
    rc, summary, _ = _run(capsys, [str(folder), "-d", str(two), "--cluster", "local:2"])
    assert rc == 0 and summary["propagated"] == 2 and summary["model"] == "segany_vit_t_512"
    for name in ("left", "right"):
        np.testing.assert_array_equal(tifffile.imread(one / f"{name}_labels.tif"),
                                      tifffile.imread(two / f"{name}_labels.tif"))

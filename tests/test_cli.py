"""The command line on the real sample image, through a real subprocess-free main()."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_segany.cli import build_parser, main
from napari_segany.sample_data import sample_path


def test_segment_writes_labels_and_overlay(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "labels.tif"
    png = tmp_path / "overlay.png"
    rc = main(["segment", str(sample_path("nuclei2d")), "--model", str(tiny_model_path),
               "--point", "346,70", "--point", "10,10,0", "-o", str(out), "--overlay", str(png),
               "--label-id", "7", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    labels = tifffile.imread(out)
    assert labels.shape == (512, 512) and labels.dtype == np.uint16
    assert set(np.unique(labels)) <= {0, 7}
    assert summary["area_px"] == int((labels == 7).sum())
    assert png.stat().st_size > 0
    # "auto" is the default precision; the suite pins it to fp32 (SEGANY_PRECISION) and the summary says so
    assert build_parser().parse_args(["segment", "x.tif", "--point", "1,1", "-o", "y.tif"]).precision == "auto"
    assert summary["precision"] == "fp32"


def test_segment_one_slice_of_a_volume(tiny_model_path, tmp_path):
    out = tmp_path / "vol.tif"
    rc = main(["segment", str(sample_path("nuclei3d")), "--model", str(tiny_model_path),
               "--slice", "30", "--box", "100,100,140,150", "-o", str(out)])
    assert rc == 0
    labels = tifffile.imread(out)
    assert labels.shape == (60, 256, 256)
    written = np.flatnonzero(labels.reshape(60, -1).any(axis=1))
    assert set(written) <= {30}


def test_refuses_to_overwrite_and_reports_errors(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "exists.tif"
    out.write_bytes(b"precious")
    rc = main(["segment", str(sample_path("nuclei2d")), "--model", str(tiny_model_path),
               "--point", "3,3", "-o", str(out)])
    assert rc == 1 and out.read_bytes() == b"precious"
    assert "--overwrite" in capsys.readouterr().err
    rc = main(["segment", str(sample_path("nuclei2d")), "--model", str(tiny_model_path),
               "--point", "900,3", "-o", str(tmp_path / "new.tif")])
    assert rc == 1 and "outside" in capsys.readouterr().err
    assert not (tmp_path / "new.tif").exists()
    rc = main(["segment", str(sample_path("nuclei3d")), "--model", str(tiny_model_path),
               "--point", "3,3", "-o", str(tmp_path / "v.tif")])
    assert rc == 1 and "--slice" in capsys.readouterr().err
    rc = main(["segment", str(tmp_path / "missing.tif"), "--model", str(tiny_model_path),
               "--point", "3,3", "-o", str(tmp_path / "m.tif")])
    assert rc == 1 and "no image file" in capsys.readouterr().err


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as e:
        main(["segment", "x.tif", "-o", "y.tif", "--point", "1;2"])
    assert e.value.code == 2


def test_models_lists_registry(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGANY_CACHE", str(tmp_path))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("vit_b", "vit_l", "vit_h", "vit_t", "medsam_vit_b", "vit_b_lm"):
        assert name in out


def test_console_script_is_installed():
    res = subprocess.run([sys.executable, "-m", "napari_segany.cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and "napari-segany" in res.stdout


def test_core_imports_without_napari_or_qt():
    """The engine, the CLI and the volume tools import with GUI packages blocked."""
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'superqt', 'vispy'}:
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import napari_segany, napari_segany.cli, napari_segany.weights.load, napari_segany.labels, napari_segany.files
import importlib.util
if importlib.util.find_spec('napari_segany.volume'):
    import napari_segany.volume
napari_segany.cli.build_parser()
print('ok')
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_outputs_get_normal_file_permissions(tiny_model_path, tmp_path):
    """Atomic writes go through a private temporary file; the result must
    still get the permissions a normal new file gets (umask), not 0600."""
    import os

    out, png = tmp_path / "perm.tif", tmp_path / "perm.png"
    rc = main(["segment", str(sample_path("nuclei2d")), "--model", str(tiny_model_path),
               "--point", "346,70", "-o", str(out), "--overlay", str(png)])
    assert rc == 0
    umask = os.umask(0)
    os.umask(umask)
    for f in (out, png):
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_fractional_point_label_is_refused_not_truncated():
    import argparse

    from napari_segany.cli.args import point

    with pytest.raises(argparse.ArgumentTypeError, match="1 or 0"):
        point("3,4,0.5")
    assert point("3,4,0") == (3.0, 4.0, 0) and point("3,4") == (3.0, 4.0, 1)


def test_outputs_never_replace_an_input_or_an_unnamed_file(tiny_model_path, tmp_path, capsys):
    """Checked before any work: the input is never an output (not even with --overwrite), the
    overlay is not written over an existing file without --overwrite, and a file's ending says
    what is written in it."""
    import shutil

    image = tmp_path / "cells.tif"
    shutil.copy(sample_path("nuclei2d"), image)
    original = image.read_bytes()
    precious = tmp_path / "notes.png"
    precious.write_bytes(b"precious")
    base = ["segment", str(image), "--model", str(tiny_model_path), "--point", "346,70"]
    cases = [
        (["-o", str(image), "--overwrite"], "input"),
        (["-o", str(tmp_path / "out.tif"), "--overlay", str(precious)], "--overwrite"),
        (["-o", str(tmp_path / "out.tif"), "--overlay", str(image), "--overwrite"], "PNG"),
        (["-o", str(tmp_path / "out.png")], "TIFF"),
    ]
    for extra, says in cases:
        assert main(base + extra) == 1
        assert says in capsys.readouterr().err
    assert image.read_bytes() == original and precious.read_bytes() == b"precious"
    assert not (tmp_path / "out.tif").exists() and not (tmp_path / "out.png").exists()
    volume = tmp_path / "stack.tif"
    shutil.copy(sample_path("nuclei3d"), volume)
    rc = main(["propagate", str(volume), "--model", str(tiny_model_path), "--slice", "30", "--point", "100,100",
               "-o", str(volume), "--overwrite"])
    assert rc == 1 and "input" in capsys.readouterr().err


def test_gui_without_a_display_says_what_to_do(capsys):
    """Without a display Qt aborted the process (SIGABRT) with only its own messages."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "-m", "napari_segany.cli", "gui"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "xvfb-run" in proc.stderr, proc.stderr[-500:]
    from napari_segany.cli.gui import check_display

    check_display({"DISPLAY": ":0"}, "linux")
    check_display({}, "darwin")


def test_damaged_images_and_unknown_architectures_get_a_sentence(tmp_path, capsys):
    """A damaged PNG and `bench --arch vit_q` ended in tracebacks; a damaged TIFF in advice about volumes."""
    png, tif = tmp_path / "bad.png", tmp_path / "bad.tif"
    png.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    tif.write_bytes(b"II*\x00garbage")
    for path, says in ((png, "could not be read"), (tif, "holds no pixels")):
        assert main(["segment", str(path), "--point", "1,1", "-o", str(tmp_path / "out.tif")]) == 1
        assert says in capsys.readouterr().err
    assert main(["bench", "--arch", "vit_q"]) == 1
    assert "choose among" in capsys.readouterr().err


def test_slice_on_a_2d_image_is_refused_not_ignored(capsys, tmp_path):
    """--slice 3 on a 2D image was ignored but reported as used in the JSON."""
    rc = main(["segment", str(sample_path("nuclei2d")), "--point", "346,70", "--slice", "3",
               "-o", str(tmp_path / "o.tif")])
    assert rc == 1 and "--slice" in capsys.readouterr().err and not (tmp_path / "o.tif").exists()

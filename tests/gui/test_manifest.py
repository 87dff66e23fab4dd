"""The npe2 manifest, the sample-data contributions and the `gui` command."""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MANIFEST = Path(__file__).resolve().parents[2] / "src" / "napari_segany" / "napari.yaml"


def test_npe2_validate():
    npe2 = shutil.which("npe2", path=str(Path(sys.executable).parent)) or shutil.which("npe2")
    assert npe2, "npe2 is not installed (pip install npe2)"
    for target in ("napari-segany", str(MANIFEST)):
        out = subprocess.run([npe2, "validate", target], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "valid" in out.stdout


def test_widget_opens_from_the_plugin_menu(make_napari_viewer):
    from napari_segany._widget import SegmentAnythingWidget

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-segany", "Segment Anything")
    assert isinstance(widget, SegmentAnythingWidget)
    assert "C</b>: commit" in widget.toolTip() and "<b>T</b>" in widget.toolTip()
    # the included model is preselected and shown as needing no download
    panel = widget.model_panel
    assert panel.source == "segany_vit_t_512"
    assert panel.model_combo.currentText().startswith("segany_vit_t_512 (included)")


@pytest.mark.parametrize(
    "key, shapes, scale",
    [
        ("nuclei2d", [(512, 512), (512, 512)], (1.0, 1.0)),
        ("nuclei3d", [(60, 256, 256), (60, 256, 256)], (0.29, 0.26, 0.26)),
        ("mri_t1", [(89, 108, 90)], (2.0, 2.0, 2.0)),
    ],
)
def test_sample_data(make_napari_viewer, key, shapes, scale):
    from napari.layers import Image, Labels

    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-segany", key)
    assert [lay.data.shape for lay in layers] == shapes
    assert isinstance(layers[0], Image)
    if len(layers) > 1:
        assert isinstance(layers[1], Labels) and layers[1].data.max() > 0
    for lay in layers:
        np.testing.assert_allclose(lay.scale, scale)


def test_gui_command_opens_image_widget_and_model(qtbot, tmp_path, nuclei2d, fast_model_paths):
    import tifffile

    from napari_segany._widget.launch import open_gui
    from napari_segany.cli import gui as cli_gui

    parser = argparse.ArgumentParser()
    cli_gui.register(parser.add_subparsers())
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, nuclei2d[0][:128, :128])
    args = parser.parse_args(["gui", str(path), "--model", str(fast_model_paths[0]), "--device", "cpu"])
    assert args.func is cli_gui.run and args.image == str(path)
    viewer, widget = open_gui(args.image, args.model, args.device, show=False)
    try:
        assert viewer.layers[0].name == "img" and widget.state.image_layer.unique_id == viewer.layers[0].unique_id
        qtbot.waitUntil(lambda: widget.state.embedding_ready, timeout=120_000)
        assert widget.state.model_label == "fast_vit_t_1"
        # precision "auto" is the default; the suite pins what it means to fp32 (SEGANY_PRECISION)
        assert widget.model_panel.precision_combo.currentText() == "auto"
        assert widget.state.predictor.precision == "fp32"
    finally:
        qtbot.waitUntil(lambda: not widget.controller.is_busy, timeout=60_000)
        widget.close_widget()
        viewer.close()


def test_gui_command_reports_a_missing_file(tmp_path):
    from napari_segany._widget.launch import open_gui

    with pytest.raises(FileNotFoundError, match="check the path"):
        open_gui(str(tmp_path / "nope.tif"), show=False)


def test_core_and_cli_import_without_napari():
    code = (
        "import sys, napari_segany, napari_segany.cli as c; c.build_parser(); "
        "bad = [m for m in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'magicgui') if m in sys.modules]; "
        "assert not bad, bad"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

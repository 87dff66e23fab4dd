"""``napari-segany gui [IMAGE] [--model M]``: open napari with the widget docked.

napari is imported inside the handler only, so the command line (and the
core library) work without napari installed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

INSTALL_HINT = (
    "The gui command needs napari: install it with  pip install 'napari-segany[napari]'  "
    "(or pip install napari[pyqt6])."
)


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "gui",
        help="open napari with the Segment Anything widget",
        description="Open napari with the Segment Anything widget docked, optionally with an image "
        "and a model loaded.",
    )
    parser.add_argument("image", nargs="?", help="image file to open (TIFF, PNG, ...)")
    parser.add_argument("--model", "-m", default=None,
                        help="registry name or checkpoint file to load at start "
                        "(default: the included segany_vit_t_512)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    parser.set_defaults(func=run)
    return parser


def check_display(environ=None, platform: str | None = None) -> None:
    """On Linux, napari needs an X or Wayland display; without one Qt aborts the process with its
    own messages only. Raise a sentence that says what to do instead."""
    import os
    import sys

    env = os.environ if environ is None else environ
    if (platform or sys.platform) != "linux" or env.get("QT_QPA_PLATFORM"):
        return
    if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        raise RuntimeError("napari needs a display and none is set (DISPLAY or WAYLAND_DISPLAY): run the gui "
                           "command on a desktop, over ssh -X, or under a virtual display (xvfb-run "
                           "napari-segany gui ...); the segment and propagate commands need none.")


def open_gui(image: str | None = None, model: str | None = None, device: str = "auto", show: bool = True):
    """Create the viewer, open ``image``, dock the widget and start loading ``model``.

    Returns ``(viewer, widget)``; the caller runs the event loop.
    """
    try:
        import napari
    except ImportError as err:
        raise RuntimeError(INSTALL_HINT) from err
    check_display()
    from ._widget._compat import guard_triton

    if image is not None and not Path(image).expanduser().is_file():
        raise FileNotFoundError(f"No image file at {image!r}; check the path.")
    viewer = napari.Viewer(show=show)
    guard_triton()
    if image is not None:
        viewer.open(str(Path(image).expanduser()), plugin="napari")
    _, widget = viewer.window.add_plugin_dock_widget("napari-segany", "Segment Anything")
    if model is not None:
        panel = widget.model_panel
        if panel.model_combo.findData(model) < 0:
            panel.add_local_model(str(Path(model).expanduser()))
        else:
            panel.model_combo.setCurrentIndex(panel.model_combo.findData(model))
        panel.device_combo.setCurrentText(device)
        widget.controller.load_model(panel.source, device, panel.precision_combo.currentText())
    return viewer, widget


def run(args: argparse.Namespace) -> int:
    from .registry import DEFAULT_MODEL

    viewer, _ = open_gui(args.image, args.model or DEFAULT_MODEL, args.device)
    import napari

    napari.run()
    return 0

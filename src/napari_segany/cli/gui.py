"""``napari-segany gui [IMAGE] [--model M]``: open napari with the widget docked.

napari and Qt are imported only in :mod:`napari_segany._widget.launch`, when the command runs, so
the command line and the core library work without napari installed.
"""

from __future__ import annotations

import argparse

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


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..weights.load import resolve_device
    from ..weights.registry import DEFAULT_MODEL

    if args.image is not None and not Path(args.image).expanduser().exists():
        raise FileNotFoundError(f"no image file or folder at {args.image!r}; check the path")
    resolve_device(args.device)  # before napari opens
    check_display()
    try:
        from .._widget.launch import open_gui, run_event_loop
    except ImportError as err:
        raise RuntimeError(INSTALL_HINT) from err
    open_gui(args.image, args.model or DEFAULT_MODEL, args.device)
    run_event_loop()
    return 0

"""Open napari with the widget docked: what ``napari-segany gui`` runs once a display is known
to be there (:mod:`napari_segany.cli.gui` checks)."""

from __future__ import annotations

from pathlib import Path


def open_gui(image: str | None = None, model: str | None = None, device: str = "auto", show: bool = True):
    """Create the viewer, open ``image``, dock the widget and start loading ``model``.

    Returns ``(viewer, widget)``; the caller runs the event loop.
    """
    import napari

    from ._compat import guard_triton

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


def run_event_loop() -> None:
    """Run napari's event loop until the user closes the window."""
    import napari

    napari.run()

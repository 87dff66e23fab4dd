"""The widget's keyboard shortcuts and its life in napari's dock: bound when it opens, released
and torn down when its dock is closed (napari takes the widget out of the dock without a close
event) or its viewer is, so nothing of it keeps running or answering keys."""

from __future__ import annotations

from napari.utils.key_bindings import coerce_keybinding
from qtpy.QtCore import QEvent, QTimer

from .committing import UNDO_KEY

SHORTCUTS = (
    ("click", "add a point (Points layer 'SAM points' in add mode)"),
    ("T", "toggle positive/negative for the next point (and the selected points in select mode)"),
    ("R", "draw a box (on the 'SAM boxes' layer)"),
    ("1 / 2 / 3", "choose candidate 1, 2 or 3"),
    ("C", "commit the chosen candidate to the target labels layer"),
    ("X", "clear the prompts on this slice"),
    ("Delete", "delete the selected points (select mode: S)"),
    ("Shift+P", "propagate the target layer's selected label through the volume from the slice on screen"),
    ("Ctrl+Z", "undo the last commit or propagation (with the target labels layer or a prompt layer "
               "selected)"),
)

HELP = (
    "<b>Segment Anything</b><br>"
    "Click on an object, pick a candidate, press C (the included model loads when the widget opens).<br>"
    + "<br>".join(f"<b>{key}</b>: {what}" for key, what in SHORTCUTS)
    + "<br>In the prompt layers, T/1/2/3/C/X replace napari's own keys for those layers;"
    " use P (add) and S (select) to switch modes."
)


def _deleted_with_the_viewer(controller, runners, closed, _obj=None) -> None:
    """Drop the work of a widget that Qt deleted without closing it (its viewer closed): the
    controller's and that of ``runners`` (propagation, segment everything, training)."""
    if not closed[0]:
        closed[0] = True
        for runner in runners:
            runner.close()
        controller.close()



class LifecycleMixin:
    """Key bindings and teardown of :class:`~napari_segany._widget.widget.SegmentAnythingWidget`
    (they use its ``viewer``, ``controller``, ``propagator``, ``everything``, ``training``, ``model_panel``
    and flags)."""

    KEYS = {"t": "toggle_polarity", "c": "commit", "x": "clear_prompts", "Shift-P": "propagate",
            "1": ("choose", 0), "2": ("choose", 1), "3": ("choose", 2)}
    PROMPT_KEYS = {UNDO_KEY: "undo_last"}  # on the prompt layers only (Labels layers have their own)

    def _key_action(self, action):
        def run(_layer_or_viewer=None):
            if isinstance(action, tuple):
                getattr(self.controller, action[0])(action[1])
            elif action == "toggle_polarity":
                self.toggle_polarity()
            elif action == "propagate":
                self.propagator.start()
            else:
                getattr(self.controller, action)()
        run.segany_widget = id(self)  # to release only our own bindings
        return run

    def _bind_keys(self, layers=None) -> None:
        """Bind the shortcuts on the viewer and on the prompt layers (where they win
        over the layers' own keys, e.g. Points' 1/2/3 and Shapes' T/X)."""
        for key, action in self.KEYS.items():
            fn = self._key_action(action)
            self.viewer.bind_key(key, fn, overwrite=True)
            for layer in layers or ():
                layer.bind_key(key, fn, overwrite=True)
        for key, action in self.PROMPT_KEYS.items():
            for layer in layers or ():
                layer.bind_key(key, self._key_action(action), overwrite=True)

    def _release_keys(self) -> None:
        """Unbind the shortcuts this widget bound (on the viewer and on the prompt layers)."""
        owners = [(self.viewer, self.KEYS)] + [(layer, {**self.KEYS, **self.PROMPT_KEYS})
                                               for layer in self.controller.prompts.layers()]
        for owner, keys in owners:
            for key in keys:
                fn = owner.keymap.get(coerce_keybinding(key))
                if getattr(fn, "segany_widget", None) == id(self):
                    owner.bind_key(key, None)

    def _bind_prompt_layers(self) -> None:
        self._bind_keys(self.controller.prompts.layers())

    def close_widget(self) -> None:
        """Tear down: release the key bindings (viewer and prompt layers), disconnect from the
        viewer's and the layers' events, drop running work, remove the preview. The prompt layers
        stay, for a widget opened again to reuse. Safe to call more than once."""
        c = self.controller
        if c is None:
            return
        self._closed[0] = True
        self._thumb_timer.stop()
        self._release_keys()
        layers = self.viewer.layers.events
        for ev in (layers.inserted, layers.removed):
            ev.disconnect(self.refresh_targets)
            ev.disconnect(self.training_panel.refresh)
        self.model_panel.close_panel()
        self.propagator.close()
        self.everything.close()
        self.training.close()
        c.release_undo_keys()
        c.prompts.close()
        c.close()
        c.preview.close()
        self.controller = None

    def event(self, event) -> bool:  # noqa: N802 (Qt name)
        # napari closes a dock (its x button, or Window.remove_dock_widget) by taking the widget out
        # of it (setParent(None)) and deleting the dock: no closeEvent reaches the widget
        if event.type() == QEvent.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif getattr(self, "_docked", False):
                self.close_widget()
        return super().event(event)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        if not self._view_reset:  # the dock took room from the canvas: show the whole image again
            self._view_reset = True
            QTimer.singleShot(0, self._reset_view)

    def _reset_view(self) -> None:
        if self.controller is not None and len(self.viewer.layers):
            self.viewer.reset_view()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.close_widget()
        super().closeEvent(event)

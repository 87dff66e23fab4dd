"""The controller's commit side: which labels layer receives objects, editing an
existing object, and writing the chosen candidate into it.
"""

from __future__ import annotations

from napari.utils.key_bindings import coerce_keybinding
from napari.utils.notifications import show_info, show_warning

from .commit import autosave_path, check_target, commit_to_layer, new_labels_data
from .layers import find_layer, has_layer, layer_id, same_layer
from .prompts import ROLE

UNDO_KEY = "Control-Z"


class CommitMixin:
    """Commit methods of :class:`~napari_segany._widget.controller.Controller`.

    They use the controller's ``viewer``, ``state``, ``autosaver``, ``_targets``
    (image layer id -> target layer id) and ``_watched_target``, its ``status`` /
    ``target_changed`` / ``target_deleted`` / ``committed`` signals and its
    ``schedule_predict`` and ``clear_prompts``.
    """

    @property
    def target_layer(self):
        """The labels layer that receives the commits on the current image (each image has its own;
        None: a new one is made at the first commit)."""
        return find_layer(self.viewer, self._targets.get(layer_id(self.state.image_layer)))

    def set_target(self, layer) -> None:
        """Use ``layer`` (a Labels layer, or None for a new one) for commits on the current image."""
        image = layer_id(self.state.image_layer)
        if layer is None:
            self._targets.pop(image, None)
        else:
            self._targets[image] = layer.unique_id
        self._follow_target()

    def _follow_target(self) -> None:
        """Listen to the selected label of the current target (and no longer to a previous one)."""
        new, old = self.target_layer, self._watched_target
        if layer_id(new) == layer_id(old):
            return
        if old is not None:
            old.events.selected_label.disconnect(self._selected_label_changed)
        if new is not None:
            new.events.selected_label.connect(self._selected_label_changed)
        self._watched_target = new
        if self.state.options.edit_selected:
            self._selected_label_changed()

    def target_removed(self, layer) -> None:
        """``layer`` was deleted from the viewer: no image commits to it any more, and a running
        propagation into it stops without writing."""
        self._targets = {k: v for k, v in self._targets.items() if v != layer.unique_id}
        if same_layer(layer, self._watched_target):
            self._watched_target = None
        self._follow_target()
        self.target_deleted.emit(layer.unique_id)
        self.target_changed.emit()

    def _selected_label_changed(self, event=None) -> None:
        if self.state.options.edit_selected:
            self.state.forget_prediction()
            self.schedule_predict()

    def edit_target(self):
        """(labels layer, label id) when editing an existing object, else None."""
        layer = self.target_layer
        if not self.state.options.edit_selected or layer is None:
            return None
        return (layer, int(layer.selected_label)) if int(layer.selected_label) > 0 else None

    def ensure_target(self):
        s = self.state
        layer = self.target_layer
        if layer is None:
            img = s.image_layer
            active = self.viewer.layers.selection.active
            layer = self.viewer.add_labels(new_labels_data(img), name=f"{img.name} labels", scale=img.scale,
                                           translate=img.translate, metadata={ROLE: "target"})
            layers = self.viewer.layers
            if has_layer(self.viewer, img):  # just above the image, under the preview and the prompts
                layers.move(layers.index(layer), layers.index(img) + 1)
            if has_layer(self.viewer, active):
                self.viewer.layers.selection.active = active
            self.set_target(layer)
            self.target_changed.emit()
        return layer

    def commit(self):
        """Write the chosen candidate into the target labels layer (one undo step)."""
        s = self.state
        mask = s.chosen_mask()
        if mask is None or s.plane is None:
            show_info("Nothing to commit yet: add a point or a box on the image first.")
            return None
        edit = self.edit_target()
        if not mask.any():  # never commit nothing: in edit mode that would delete the object
            self._refuse(f"Object {edit[1]} left as it is: the mask for these prompts is empty. Add a "
                         "positive point inside the object, or clear the prompts (X)." if edit is not None
                         else "Nothing committed: the chosen mask is empty. Add a positive point on the "
                         "object, draw a box around it, or choose another candidate (1/2/3).")
            return None
        try:
            target = self.ensure_target()
            check_target(target, s.image_layer)
            if edit is not None:
                label_id, replace = edit[1], True
                if not self._edit_keeps_pixels(target, label_id, mask):
                    self._refuse(f"Object {label_id} left as it is: the new mask lies entirely on other "
                                 "objects. Tick 'Overwrite other objects' to let it take their pixels.")
                    return None
            elif s.options.use_selected_label and int(target.selected_label) > 0:
                label_id, replace = int(target.selected_label), False
            else:
                label_id, replace = None, False
            result = commit_to_layer(target, s.plane, mask, label_id,
                                     overwrite=s.options.overwrite, replace=replace)
        except (ValueError, TypeError) as err:
            show_warning(str(err))
            return None
        if result.n_pixels == 0:  # nothing written: the prompts stay, to change an option and commit again
            self._refuse(f"Object {result.label_id} unchanged: the mask is what it already is." if replace
                         else "Nothing committed: every pixel of the mask belongs to another object. Tick "
                         "'Overwrite other objects' to let it take them, or choose another candidate.")
            return None
        target.selected_label = result.label_id
        s.last_commit = result
        self.clear_prompts()
        self._bind_undo(target)
        self.prompts.activate_points()  # the next click adds a point, whichever layer was selected
        self.status.emit(f"Committed object {result.label_id} ({result.n_pixels} pixels changed) "
                         f"to '{target.name}'. Ctrl+Z undoes it.")
        self._autosave(target)
        self.committed.emit(result)
        return result

    def _edit_keeps_pixels(self, target, label_id: int, mask) -> bool:
        """Whether editing ``label_id`` with ``mask`` leaves it any pixel on this slice (pixels of other
        objects are not taken unless 'Overwrite other objects' is ticked)."""
        if self.state.options.overwrite:
            return True
        work = self.state.plane.extract(target.data)
        return bool((mask & ((work == 0) | (work == label_id))).any())

    def _refuse(self, message: str) -> None:
        """Say why nothing was written, in the status line and as a notification."""
        show_info(message)
        self.status.emit(message)

    # -- undo -----------------------------------------------------------------
    def undo_last(self) -> None:
        """Undo the last change of the target labels layer (a commit or a propagation), from the
        prompt layers: the points stay selected."""
        target = self.target_layer
        if target is None:
            self.status.emit("Nothing to undo: no labels layer received a commit yet.")
            return
        target.undo()
        self.prompts.activate_points()
        self.status.emit(f"Undid the last change of '{target.name}'.")

    def _bind_undo(self, target) -> None:
        """Ctrl+Z on ``target`` undoes as napari does, then selects the prompt points again unless
        the layer is being painted on, so that the next click adds a point."""
        bound = self._undo_bound
        if target.unique_id in bound:
            return

        def undo(layer):
            layer.undo()
            if str(layer.mode) == "pan_zoom":
                self.prompts.activate_points()

        target.bind_key(UNDO_KEY, undo, overwrite=True)
        bound[target.unique_id] = undo

    def release_undo_keys(self) -> None:
        """Give the labels layers their own Ctrl+Z back (the widget is closing)."""
        bound, self._undo_bound = self._undo_bound, {}
        for uid, fn in bound.items():
            layer = find_layer(self.viewer, uid)
            if layer is not None and layer.keymap.get(coerce_keybinding(UNDO_KEY)) is fn:
                layer.bind_key(UNDO_KEY, None)

    def _autosave(self, target) -> None:
        path = autosave_path(self.state.image_layer, target)
        if self.state.options.autosave and path is not None:
            self.autosaver.save(path, target.data)

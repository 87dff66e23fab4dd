"""The controller's prompt side: prompts on screen -> a request answered in a worker
(:mod:`.decoding`) -> the preview, the candidates, and what is still being refined.

Answers arrive progressively: first on what is ready (the slice with one view while the mirrored
views are computed; the whole slice while a zoomed crop is), then again when more is. An answer is
shown only if it is for the slice on screen and the prompts on screen.
"""

from __future__ import annotations

from .cache import one_view, slice_of
from .commit import label_mask
from .decoding import DecodeRequest


class PredictMixin:
    """Prediction methods of :class:`~napari_segany._widget.controller.Controller` (they use its
    ``state``, ``prompts``, ``preview``, ``zoom``, ``decoder``, timers and signals)."""

    def schedule_predict(self) -> None:
        self._predict_timer.start()

    def predict_now(self) -> None:
        """Ask for the answer to the prompts on screen (in a worker; the newest request wins)."""
        s = self.state
        usable = s.usable()
        if usable is None or s.plane is None:
            return
        key, emb = usable
        prompts = self.prompts.read(s.image_layer, s.plane)
        if prompts.empty:
            self._forget()
            return
        sig = prompts.signature
        mask_input = mask_window = None  # mask_window: the crop the logits live in (None: the slice)
        if (s.prediction is not None and s.prediction_key is not None and s.prompt_signature
                and one_view(s.prediction_key) == one_view(key) and s.prompt_signature < sig):
            mask_input = s.prediction.logits[min(s.chosen, len(s.prediction) - 1)]
            mask_window = s.prediction.window
        elif (edit := self.edit_target()) is not None:
            existing = label_mask(edit[0], s.plane, edit[1])
            if existing.any():
                mask_input = s.predictor.mask_prompt(existing, embedding=emb)
        multimask = len(prompts.points) == 1 and prompts.box is None and mask_input is None
        has_points = len(prompts.points) > 0
        request = DecodeRequest(
            key, emb, sig,
            {"points": prompts.points if has_points else None, "labels": prompts.labels if has_points else None,
             "box": prompts.box, "mask_input": mask_input, "mask_window": mask_window, "multimask": multimask},
            prompter=self.zoom.prompter(key, emb) if s.options.zoom else None, predictor=s.predictor,
        )
        self.decoder.submit(request)

    def _current(self, request: DecodeRequest) -> bool:
        """Whether ``request`` is still for the slice and the prompts on screen."""
        s = self.state
        if s.wanted is None or s.plane is None or one_view(slice_of(request.key)) != one_view(s.wanted):
            return False
        return self.prompts.read(s.image_layer, s.plane).signature == request.signature

    def _answered(self, request: DecodeRequest, prediction) -> None:
        s = self.state
        if not self._current(request):
            self._next()
            return  # for another slice or other prompts: newer ones are on their way
        s.prediction, s.prediction_key, s.chosen, s.prompt_signature = (prediction, request.key, 0,
                                                                        request.signature)
        s.refining = bool(request.missing) or request.key.views < s.wanted.views
        self.preview.show(s.plane, s.image_layer, prediction.mask(0))
        self.prediction_changed.emit()
        if request.missing:
            self.zoom.want(request.missing[0])  # the zoomed crop, computed in a worker; then again
        self._next()  # what waited for this answer: more views, a crop
        if s.refining:
            self.status.emit("Refining the mask (zoomed view or mirrored views under way); C commits the mask "
                             "on screen now.")
        elif s.embedding_ready:
            self.status.emit(f"Ready: click on {self._where()} (T toggles positive/negative).")

    def _candidates_made(self, request: DecodeRequest, prediction) -> None:
        """The other candidates' masks of an answer are made: the thumbnails can show them if it is
        on screen; the work that waited for the decoder (more views, a crop) can start."""
        if self.state.prediction is prediction:
            self.prediction_changed.emit()
        self._next()

    def _answer_failed(self, request: DecodeRequest, exc: Exception) -> None:
        if self._current(request):
            self._fail(f"Could not segment these prompts: {exc}")
        self._next()

    def choose(self, index: int) -> None:
        s = self.state
        if s.prediction is None or not 0 <= index < len(s.prediction):
            return
        s.chosen = index
        self.preview.show(s.plane, s.image_layer, s.prediction.mask(index))
        self.chosen_changed.emit(index)

    def toggle_polarity(self) -> bool:
        positive = self.prompts.toggle_polarity()
        self.status.emit(f"Next point: {'positive (object)' if positive else 'negative (background)'}.")
        return positive

    def clear_prompts(self) -> None:
        s = self.state
        if s.image_layer is not None:
            self.prompts.clear(s.image_layer, s.plane)
        self._forget()

    def _forget(self) -> None:
        self.state.forget_prediction()
        self.decoder.forget()
        self._predict_timer.stop()
        self.preview.clear()
        self.prediction_changed.emit()

"""Long work runs in workers: the viewer stays responsive, and switching the model
or the image while an embedding is computed neither crashes nor mixes results."""

import threading
import time

import numpy as np
from gui_helpers import wait_ready


class StallMeter:
    """A QTimer ticking every 10 ms; records the longest gap between ticks."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.gaps = []
        self.last = None
        self.timer = QTimer(interval=10)
        self.timer.timeout.connect(self._tick)

    def _tick(self):
        now = time.perf_counter()
        if self.last is not None:
            self.gaps.append(now - self.last)
        self.last = now

    def start(self):
        self.last = None
        self.timer.start()

    def stop(self):
        self.timer.stop()
        return max(self.gaps) if self.gaps else float("inf")


def test_viewer_stays_responsive_while_embedding(widget_factory, qtbot, nuclei2d, tiny_model_path):
    """Real model (vit_t at the published 1024 input), loaded with the Load
    button; the encoder runs in a worker while the GUI thread keeps ticking."""
    image, _ = nuclei2d
    viewer, _, widget = widget_factory(image)
    panel = widget.model_panel
    panel.add_local_model(str(tiny_model_path))
    assert panel.source == str(tiny_model_path)
    panel.load_button.click()
    assert panel.cancel_button.isEnabled()  # loading is cancellable
    qtbot.waitUntil(lambda: widget.state.job is not None, timeout=120_000)  # model loaded, embedding started
    meter = StallMeter()
    meter.start()
    started = time.perf_counter()
    while not widget.state.embedding_ready:
        qtbot.wait(5)
        assert time.perf_counter() - started < 120, "embedding did not finish"
    took = time.perf_counter() - started
    worst = meter.stop()
    print(f"embedding took {took:.2f} s; longest event-loop stall {worst * 1000:.0f} ms over {len(meter.gaps)} ticks")
    assert took > 1.0, "the embedding was too quick to measure responsiveness"
    assert len(meter.gaps) > 20
    assert worst < 0.2
    assert not panel.cancel_button.isEnabled()
    assert "fp32" in panel.model_label.text()


def test_cancel_and_recompute(widget_factory, qtbot, nuclei2d, tiny_model):
    image, _ = nuclei2d
    viewer, _, widget = widget_factory(image, tiny_model)
    job = widget.state.job
    assert job is not None and widget.model_panel.cancel_button.isEnabled()
    widget.model_panel.cancel_button.click()
    assert job.cancelled
    qtbot.waitUntil(lambda: widget.state.job is None, timeout=60_000)
    assert not widget.state.embedding_ready
    assert widget.status_label.text().startswith("Cancelled.")
    assert not widget.model_panel.cancel_button.isEnabled()
    widget.model_panel.recompute_button.click()
    wait_ready(qtbot, widget, timeout=120_000)


def test_switching_model_mid_embedding(widget_factory, qtbot, nuclei2d, fast_models):
    from napari_segany import Predictor

    image, _ = nuclei2d
    viewer, _, widget = widget_factory(image, fast_models[0])
    first = widget.state.job
    assert first is not None and first.what.model_id == widget.state.predictor.model_id
    old_id = widget.state.predictor.model_id
    second = Predictor(fast_models[1])
    assert second.model_id != old_id
    widget.controller.set_predictor(second, "second")  # while the first embedding runs
    assert first.cancelled
    wait_ready(qtbot, widget)
    qtbot.waitUntil(lambda: not first.running, timeout=60_000)
    qtbot.wait(50)  # let any late result of the first job arrive
    assert widget.state.ready.model_id == second.model_id
    assert widget.state.embedding().model_id == second.model_id
    widget.controller.prompts.points.add([[200, 200]])
    qtbot.waitUntil(lambda: widget.state.prediction is not None)
    # switching back to the first model is again a clean switch
    widget.controller.set_predictor(Predictor(fast_models[0]), "first")
    wait_ready(qtbot, widget)
    assert widget.state.embedding().model_id == old_id


def test_switching_image_mid_embedding(widget_factory, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    viewer, layer_a, widget = widget_factory(image, fast_models[0], name="a")
    layer_b = viewer.add_image(image[:300, :200], name="b")
    job_a = widget.state.job
    assert job_a is not None and job_a.what.layer_id == layer_a.unique_id
    widget.model_panel.set_image_layer(layer_b)
    assert widget.state.image_layer.unique_id == layer_b.unique_id and job_a.cancelled
    wait_ready(qtbot, widget)
    qtbot.waitUntil(lambda: not job_a.running, timeout=60_000)
    qtbot.wait(50)
    assert widget.state.ready.layer_id == layer_b.unique_id
    assert widget.state.embedding().original_size == (300, 200)
    points = widget.controller.prompts.points
    points.add([[150, 100]])
    qtbot.waitUntil(lambda: widget.state.prediction is not None)
    assert widget.state.chosen_mask().shape == (300, 200)
    # and back to the first image, mid-embedding of nothing: a clean embedding of a
    widget.model_panel.set_image_layer(layer_a)
    wait_ready(qtbot, widget)
    assert widget.state.embedding().original_size == (512, 512)
    # removing the image layer while its embedding is computed is harmless
    widget.controller.request_embedding(force=True)
    viewer.layers.remove(layer_a)
    assert widget.state.image_layer.unique_id == layer_b.unique_id
    wait_ready(qtbot, widget)
    assert widget.state.embedding().original_size == (300, 200)
    assert np.isfinite(widget.state.embedding().features).all()


def test_scrubbing_slices_ends_on_the_slice_shown(widget_factory, qtbot, fast_models):
    """Each slice change cancels the running embedding; only one runs at a time
    (a cancelled encoder must not stop the next one), and the last slice wins."""
    volume = np.random.default_rng(1).integers(0, 4000, (6, 80, 120), dtype=np.uint16)
    viewer, layer, widget = widget_factory(volume, fast_models[0])
    started = []
    real = widget.state.predictor.encode
    widget.state.predictor.encode = lambda image, **k: started.append(image) or real(image, **k)
    for z in (0, 5, 1, 4):
        viewer.dims.set_current_step(0, z)
        qtbot.wait(200)  # longer than the slider debounce
    wait_ready(qtbot, widget)
    qtbot.waitUntil(lambda: widget.state.job is None, timeout=60_000)
    assert widget.state.ready.plane == (1, 2, ((0, 4),))
    np.testing.assert_array_equal(widget.state.image2d, volume[4])
    np.testing.assert_array_equal(started[-1], volume[4])
    widget.controller.prompts.points.add([[4, 40, 60]])
    qtbot.waitUntil(lambda: widget.state.prediction is not None)
    assert widget.state.chosen_mask().shape == (80, 120)


def test_a_job_runs_until_its_result_is_delivered(qtbot):
    """The worker thread ends before its queued result reaches the GUI thread; a
    job counts as running until then, so that whoever waits for ``not running``
    (e.g. closing the widget) never sees the result arrive afterwards."""
    from napari.qt.threading import thread_worker

    from napari_segany._widget.workers import Job, launch

    got, computed = [], threading.Event()

    def work():
        computed.set()
        return 42

    job = launch(Job("x"), thread_worker(work)(), lambda j, v: got.append(v), lambda j, e: got.append(e))
    assert computed.wait(30)
    started = time.perf_counter()
    while job.worker.is_running:  # no Qt events are processed in this loop
        time.sleep(0.005)
        assert time.perf_counter() - started < 30
    assert job.running and got == []  # computed, not delivered
    qtbot.waitUntil(lambda: not job.running, timeout=10_000)
    assert got == [42]


def test_closing_the_widget_drops_late_results(widget_factory, qtbot, nuclei2d, fast_models):
    """An embedding that finishes after the widget closed touches nothing: no
    preview layer, no error from a viewer that may be closing."""
    image, _ = nuclei2d
    viewer, _, widget = widget_factory(image, fast_models[0])
    wait_ready(qtbot, widget)
    widget.controller.prompts.points.add([[256, 256]])
    qtbot.waitUntil(lambda: widget.state.prediction is not None)
    viewer.layers.remove(widget.controller.preview.layer)
    names = [layer.name for layer in viewer.layers]
    real = widget.state.predictor.encode  # one past its last check for cancellation
    widget.state.predictor.encode = lambda image, **k: real(image, **{**k, "should_stop": lambda: False})
    widget.controller.request_embedding(force=True)
    job = widget.state.job
    assert job is not None
    widget.close_widget()
    assert job.dropped and job.cancelled
    qtbot.waitUntil(lambda: not job.running, timeout=60_000)
    qtbot.wait(50)
    assert [layer.name for layer in viewer.layers] == names

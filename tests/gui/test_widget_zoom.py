"""The widget segments small objects again on an enlarged crop, computed in a worker."""

import threading

import numpy as np
import pytest
from geometry_helpers import bbox, tiled
from gui_helpers import click, show_target, wait_prediction, wait_ready
from qt_events import landing

from napari_segany import Predictor
from napari_segany._widget.zoom import crop_key
from napari_segany.engine.zoom import ZoomPredictor


@pytest.fixture(scope="module")
def included_model():
    from napari_segany import load_model

    return load_model(device="cpu")


def test_small_nucleus_is_refined_on_a_crop_off_the_gui_thread(widget_factory, qtbot, nuclei2d, included_model):
    image, labels = nuclei2d
    viewer, layer, widget = widget_factory(image, included_model, zoom=True)
    wait_ready(qtbot, widget)
    state, ctrl = widget.state, widget.controller
    threads = []
    encode = state.predictor.encode
    state.predictor.encode = lambda *a, **k: threads.append(threading.get_ident()) or encode(*a, **k)
    shown = []
    ctrl.prediction_changed.connect(lambda: shown.append(state.prediction))

    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    gt = labels == ids[np.argsort(areas)[len(ids) // 4]]  # a small nucleus
    rr, cc = np.nonzero(gt)
    point = (float(np.median(rr)), float(np.median(cc)))
    point = tuple(click(ctrl.prompts.points, point))
    qtbot.waitUntil(lambda: state.prediction is not None and state.prediction.window is not None, timeout=30_000)
    qtbot.waitUntil(lambda: not ctrl.is_busy, timeout=30_000)

    assert shown[0].window is None  # the whole slice answered at once
    assert threads and threading.main_thread().ident not in threads  # the crop was encoded in a worker
    window = state.prediction.window
    assert state.cache.get(crop_key(state.ready, window)) is not None
    np.testing.assert_array_equal(ctrl.preview.layer.data.astype(bool), state.prediction.mask(0))

    # the same click through the library's ZoomPredictor gives the same mask (contrast from the layer)
    headless = ZoomPredictor(Predictor(included_model))
    headless.set_image(image, contrast_limits=tuple(layer.contrast_limits))
    expected = headless.predict(points=[point])
    assert expected.window == window
    np.testing.assert_array_equal(state.prediction.mask(0), expected.mask(0))

    # a second click inside the crop refines there, from the previous logits
    click(ctrl.prompts.points, (point[0] + 1, point[1] + 1))
    wait_prediction(qtbot, widget)
    assert state.prediction.window == window and len(state.prediction) == 1

    widget.zoom_box.setChecked(False)  # off: the whole slice only
    wait_prediction(qtbot, widget)
    assert state.prediction.window is None


def test_editing_an_object_zoomed_replaces_only_it(widget_factory, qtbot, nuclei2d, included_model):
    image, labels = nuclei2d
    viewer, _, widget = widget_factory(image, included_model, zoom=True)
    target = viewer.add_labels(labels.copy(), name="gt")
    widget.set_target_layer(target)
    wait_ready(qtbot, widget)
    state, ctrl = widget.state, widget.controller
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    obj = int(ids[np.argsort(areas)[len(ids) // 3]])
    target.selected_label = obj
    widget.edit_box.setChecked(True)
    rows, cols = np.nonzero(labels == obj)
    ctrl.prompts.points.add([[np.median(rows), np.median(cols)]])
    # the object's own mask is the mask prompt, carried into the crop when it arrives
    qtbot.waitUntil(lambda: state.prediction is not None and state.prediction.window is not None, timeout=30_000)
    qtbot.waitUntil(lambda: not ctrl.is_busy, timeout=30_000)
    new_mask = state.chosen_mask()
    assert new_mask.shape == labels.shape and new_mask[int(np.median(rows)), int(np.median(cols))]
    before = target.data.copy()
    assert ctrl.commit().label_id == obj
    expected = before.copy()
    expected[(before == obj) & ~new_mask] = 0
    expected[new_mask & (before == 0)] = obj
    np.testing.assert_array_equal(target.data, expected)  # other objects untouched, no new id


def test_a_closer_crop_is_fetched_in_the_background_too(widget_factory, qtbot, nuclei2d, included_model):
    """On a large slice the first crop can be set by a blob of many nuclei; the widget then fetches
    the closer crop the library asks for, in a worker as well, and ends on the library's answer."""
    image, labels = nuclei2d
    big, big_labels = tiled(image, labels, 4)
    viewer, layer, widget = widget_factory(big, included_model, zoom=True)
    wait_ready(qtbot, widget)
    state, ctrl = widget.state, widget.controller
    headless = ZoomPredictor(Predictor(included_model))
    headless.set_image(big, contrast_limits=tuple(layer.contrast_limits))
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    for i in ids[np.argsort(areas)][4:9]:  # small nuclei; for some the whole slice's mask is a blob
        rr, cc = np.nonzero(big_labels == i)
        point = landing(viewer, (float(np.median(rr)), float(np.median(cc))))[-2:]  # where a click lands
        blob = headless.predictor.predict(points=[point], embedding=headless.embedding).mask(0)  # the whole slice's answer
        blob[int(point[0]), int(point[1])] = True
        first = headless.window_for(bbox(blob))
        expected = headless.predict(points=[point])
        if expected.window is not None and expected.window != first:
            break
    else:
        pytest.fail("no nucleus needed a closer crop")
    np.testing.assert_allclose(click(ctrl.prompts.points, point), point)
    qtbot.waitUntil(lambda: state.prediction is not None and state.prediction.window == expected.window,
                    timeout=60_000)
    qtbot.waitUntil(lambda: not ctrl.is_busy, timeout=30_000)
    assert state.cache.get(crop_key(state.ready, first)) is not None  # both crops came from workers
    assert state.cache.get(crop_key(state.ready, expected.window)) is not None
    np.testing.assert_array_equal(state.prediction.mask(0), expected.mask(0))


@pytest.mark.parametrize("zoom", [True, False])
def test_propagation_in_large_slices_follows_the_zoom_checkbox(widget_factory, qtbot, included_model, zoom):
    from napari_segany.sample_data import load_sample

    volume = np.tile(load_sample("nuclei3d")[28:33], (1, 4, 4))  # 1024 px slices
    truth = np.zeros(volume.shape, np.uint32)
    truth[:, 512:768, 512:768] = load_sample("nuclei3d_labels")[28:33]  # the middle tile's nuclei
    viewer, layer, widget = widget_factory(volume, included_model, zoom=zoom)
    ids, counts = np.unique(truth[2][truth[2] > 0], return_counts=True)
    seed_id = int(ids[np.argmax(counts)])
    start = np.zeros_like(truth)
    start[2][truth[2] == seed_id] = seed_id
    target = show_target(qtbot, viewer, widget, start, seed_id, 2)
    assert widget.propagator.start(), widget.status_label.text()
    qtbot.waitUntil(lambda: widget.propagator.job is None, timeout=120_000)
    store = widget.propagator._store_obj
    assert (store.stats["crops_encoded"] > 0) == zoom  # crops only with the checkbox on, made in the worker
    # the same labels as the library's propagate with the same intensity window
    import napari_segany as sg

    alone = sg.EmbeddingStore(Predictor(included_model), volume, contrast_limits=store.window, prefetch=0)
    expected = sg.propagate(volume, labels=start, ids=[seed_id], seed_slices=[2], store=alone, zoom=zoom).labels
    np.testing.assert_array_equal(np.asarray(target.data), expected)
    assert (expected[[1, 3]] == seed_id).any()  # it went on to the neighbouring slices

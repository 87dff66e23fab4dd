"""nD images (any slider position), RGB, layer scale/translate, and the slice cache."""

import numpy as np
from gui_helpers import click, predict_calls, wait_prediction, wait_ready
from qt_events import landing


def test_3d_slice_17_writes_only_slice_17(widget_factory, qtbot, fast_models):
    from napari_segany.sample_data import load_sample, voxel_size

    volume = load_sample("nuclei3d")
    viewer, layer, widget = widget_factory(volume, fast_models[0], scale=voxel_size("nuclei3d"))
    viewer.dims.set_current_step(0, 17)
    qtbot.waitUntil(lambda: widget.state.plane is not None and widget.state.plane.fixed == ((0, 17),))
    wait_ready(qtbot, widget)
    points = widget.controller.prompts.points
    assert points.ndim == 3
    calls = predict_calls(widget.state.predictor)
    placed = click(points, viewer.dims.point[:1] + (128 * 0.26, 100 * 0.26))
    wait_prediction(qtbot, widget)
    np.testing.assert_allclose(placed, [17, 128, 100], atol=1.0)  # within a canvas pixel of the aim
    assert placed[0] == 17
    np.testing.assert_allclose(calls[-1]["points"], [placed[1:]])
    mask = widget.state.chosen_mask()
    preview = widget.controller.preview.layer
    assert preview.data.shape == (1, 256, 256)
    np.testing.assert_allclose(preview.translate, (17 * 0.29, 0, 0))
    widget.controller.commit()
    target = widget.controller.target_layer
    assert target.data.shape == volume.shape
    others = np.delete(target.data, 17, axis=0)
    assert not others.any()
    np.testing.assert_array_equal(target.data[17], mask.astype(target.data.dtype))
    target.undo()
    assert not target.data.any()


def test_revisiting_a_slice_reuses_its_embedding(widget_factory, qtbot, fast_models):
    volume = np.random.default_rng(0).integers(0, 1000, (4, 96, 96), dtype=np.uint16)
    viewer, layer, widget = widget_factory(volume, fast_models[0])
    for z in (1, 2):
        viewer.dims.set_current_step(0, z)
        qtbot.waitUntil(lambda z=z: widget.state.plane is not None and widget.state.plane.fixed == ((0, z),))
        wait_ready(qtbot, widget)
    assert len(widget.state.cache) == 2
    encodes = []
    real = widget.state.predictor.encode
    widget.state.predictor.encode = lambda *a, **k: encodes.append(1) or real(*a, **k)
    viewer.dims.set_current_step(0, 1)
    qtbot.waitUntil(lambda: widget.state.plane.fixed == ((0, 1),))
    assert widget.state.embedding_ready and not encodes  # instant: from the cache
    # replacing the image data invalidates its embeddings
    layer.data = volume + 1
    qtbot.waitUntil(lambda: len(encodes) == 1, timeout=10_000)
    wait_ready(qtbot, widget)


def test_scaled_translated_layer_maps_prompts(widget_factory, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    viewer, layer, widget = widget_factory(image, fast_models[0], scale=(0.25, 2.0), translate=(10.0, -30.0))
    wait_ready(qtbot, widget)
    calls = predict_calls(widget.state.predictor)
    row, col = 200, 300
    world = (10.0 + 0.25 * row, -30.0 + 2.0 * col)
    lands = landing(viewer, world)  # a click lands on a whole canvas pixel (a few data rows here)
    placed = click(widget.controller.prompts.points, world)
    wait_prediction(qtbot, widget)
    np.testing.assert_allclose(placed, [(lands[0] - 10.0) / 0.25, (lands[1] + 30.0) / 2.0])
    np.testing.assert_allclose(calls[-1]["points"], [placed])
    # a box drawn in world coordinates arrives in pixels
    corners = np.array([[10 + 0.25 * 100, -30 + 2 * 50], [10 + 0.25 * 150, -30 + 2 * 120]])
    boxes = widget.controller.prompts.boxes
    boxes.add_rectangles(np.array([boxes.world_to_data(c) for c in corners]))
    wait_prediction(qtbot, widget)
    np.testing.assert_allclose(calls[-1]["box"], (100, 50, 150, 120))
    preview = widget.controller.preview.layer
    np.testing.assert_allclose(preview.scale, (0.25, 2.0))
    np.testing.assert_allclose(preview.translate, (10.0, -30.0))


def test_rgb_image(widget_factory, qtbot, nuclei2d, fast_models):
    image, _ = nuclei2d
    gray = (image / image.max() * 255).astype(np.uint8)
    rgb = np.stack([gray, gray // 2, 255 - gray], axis=-1)
    viewer, layer, widget = widget_factory(rgb, fast_models[0], rgb=True)
    assert layer.rgb
    wait_ready(qtbot, widget)
    assert widget.state.embedding().window == (0.0, 255.0)  # full uint8 range for RGB
    widget.controller.prompts.points.add([[256, 256]])
    wait_prediction(qtbot, widget)
    mask = widget.state.chosen_mask()
    widget.controller.commit()
    target = widget.controller.target_layer
    assert target.data.shape == (512, 512)
    np.testing.assert_array_equal(target.data > 0, mask)

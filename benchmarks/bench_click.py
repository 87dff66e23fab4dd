"""Click-to-preview latency of the napari widget, with the embedding ready.

For each model (random weights, CPU), the real widget runs in a real napari
window on the 2D nuclei sample. Each of N clicks adds one point to the
"SAM points" layer (through napari's own add-mode mouse callback) and the time
is taken until the canvas has drawn the new preview: it includes the debounce,
reading the prompts, the prompt encoder and mask decoder, upscaling the mask
and napari's redraw. Prompts are cleared between clicks (untimed), so every
click is a first click with 3 candidates.

Run under a display, e.g.
``xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_click.py``.
Prints a table and, last, one JSON line; ``--json PATH`` also writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def _wait(app, cond, timeout=600.0):
    t0 = time.perf_counter()
    while not cond():
        app.processEvents()
        time.sleep(0.0005)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("timed out")


def click_points(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` nucleus centres (row, col) from the sample's labels."""
    ids = np.random.default_rng(seed).choice(np.unique(labels[labels > 0]), n, replace=n > labels.max())
    return np.array([np.argwhere(labels == i).mean(axis=0) for i in ids])


def bench_model(arch: str, n_clicks: int, app, image, points) -> dict:
    import napari
    import torch

    from napari_segany import Predictor
    from napari_segany._widget import SegmentAnythingWidget
    from napari_segany.model import build_sam

    torch.manual_seed(0)
    model = build_sam(arch).eval()
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)  # the canvas must have a size to draw
    viewer.add_image(image, name="nuclei2d")
    widget = SegmentAnythingWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment Anything")
    ctrl = widget.controller
    t0 = time.perf_counter()
    ctrl.set_predictor(Predictor(model), f"{arch} (random)")
    _wait(app, lambda: widget.state.embedding_ready)
    embed_s = time.perf_counter() - t0

    canvas = viewer.window._qt_viewer.canvas._scene_canvas  # the vispy canvas
    marks: dict[str, float] = {}
    ctrl.prediction_changed.connect(lambda: marks.setdefault("pred", time.perf_counter()))
    canvas.events.draw.connect(lambda e: marks.setdefault("draw", time.perf_counter()) if "pred" in marks else None)
    real_predict = widget.state.predictor.predict

    def timed_predict(*a, **k):
        t = time.perf_counter()
        out = real_predict(*a, **k)
        out.mask(0)
        marks["decode_s"] = time.perf_counter() - t
        return out

    widget.state.predictor.predict = timed_predict
    pts = ctrl.prompts.points
    total, decode = [], []
    for i, (r, c) in enumerate(points[: n_clicks + 3]):
        ctrl.clear_prompts()
        _wait(app, lambda: widget.state.prediction is None and not ctrl._predict_timer.isActive())
        for _ in range(3):
            app.processEvents()
        marks.clear()
        start = time.perf_counter()
        pts.add([[r, c]])
        try:
            _wait(app, lambda: "draw" in marks, timeout=20)
        except TimeoutError:
            raise TimeoutError(f"no redraw after the click: {marks}, {widget.state.prediction}, {widget.status_label.text()}")
        if i >= 3:  # the first clicks warm up caches and allocators
            total.append(marks["draw"] - start)
            decode.append(marks["decode_s"])
    widget.close_widget()
    viewer.close()
    ms = np.array(total) * 1000
    return {
        "model": arch, "clicks": len(ms), "embedding_s": round(embed_s, 2),
        "median_ms": round(float(np.median(ms)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "max_ms": round(float(ms.max()), 1),
        "decoder_median_ms": round(float(np.median(decode) * 1000), 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["vit_t", "vit_b"])
    parser.add_argument("--clicks", type=int, default=50)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    import torch
    from qtpy.QtWidgets import QApplication

    from napari_segany.sample_data import load_sample

    app = QApplication.instance() or QApplication([])
    image, labels = load_sample("nuclei2d"), load_sample("nuclei2d_labels")
    points = click_points(labels, args.clicks + 3)
    rows = [bench_model(arch, args.clicks, app, image, points) for arch in args.models]
    env = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "torch": torch.__version__, "machine": platform.machine(),
           "load_avg_1min": round(os.getloadavg()[0], 2), "image": "nuclei2d 512x512 uint16"}
    print(f"\nclick -> preview drawn, CPU, {args.clicks} clicks, embedding ready")
    print(f"{'model':<8}{'median ms':>11}{'p95 ms':>9}{'max ms':>9}{'decoder ms':>12}{'embedding s':>13}")
    for r in rows:
        print(f"{r['model']:<8}{r['median_ms']:>11}{r['p95_ms']:>9}{r['max_ms']:>9}"
              f"{r['decoder_median_ms']:>12}{r['embedding_s']:>13}")
    result = {"benchmark": "click_to_preview", "env": env, "results": rows}
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Side-by-side speed and accuracy of our predictor and the reference one.

One process, one run: both implementations get the same seeded random weights
(saved in the official checkpoint schema and loaded through our real loader)
and the same real image. Needs the reference packages (``segment-anything``,
``mobilesam-mirror`` for vit_t), which the ``test`` extra installs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def randomise_weights(model: torch.nn.Module, seed: int = 0) -> None:
    """Seeded random weights: matrices with std 1/sqrt(fan_in), and random values
    for every tensor that default initialisation leaves constant."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or t.numel() < 2:
                continue
            if t.ndim >= 2 and name.endswith("weight") and "gaussian" not in name:
                fan_in = t[0].numel() if t.ndim > 2 else t.shape[1]
                t.copy_(torch.randn(t.shape, generator=gen) / fan_in**0.5)
            elif float(t.std()) == 0.0:
                noise = torch.randn(t.shape, generator=gen) * 0.1
                t.copy_(1.0 + noise.abs() if name.endswith("running_var") else t + noise)


def reference_model(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if arch == "vit_t":
            from mobile_sam import SamPredictor, sam_model_registry
        else:
            from segment_anything import SamPredictor, sam_model_registry
    model = sam_model_registry[arch]()
    randomise_weights(model, seed)
    model.eval()  # MobileSAM caches its attention biases in eval(): after setting weights
    model.predictor_class = SamPredictor
    return model


def _status_mb(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_reset() -> float:
    """Reset the kernel's peak-RSS counter of this process (Linux); returns the current RSS in MB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_mb("VmRSS")


def peak_rss_mb(baseline: float) -> float:
    """Peak RSS above ``baseline`` since :func:`peak_rss_reset`, in MB."""
    return _status_mb("VmHWM") - baseline


def _timed(fn, repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


def click_points(labels: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Interior points of up to ``n`` labelled objects (deterministic)."""
    from scipy import ndimage as ndi

    pts = []
    for i in np.unique(labels[labels > 0]):
        m = np.pad(labels == i, 1)
        d = ndi.distance_transform_edt(m)[1:-1, 1:-1]
        pts.append(tuple(int(v) for v in np.unravel_index(np.argmax(d), d.shape)))
    return [pts[k % len(pts)] for k in range(n)]


def bench_arch(arch: str, rgb: np.ndarray, points, precisions, repeats: int, device: str) -> list[dict]:
    """Rows for the reference (fp32) and ours at each precision."""
    from ..engine.predictor import Predictor
    from ..weights.load import load_model

    ref_model = reference_model(arch).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"random_{arch}.pth"
        torch.save(ref_model.state_dict(), path)
        ours_model = load_model(path, device=device)

    rows = []
    ref = ref_model.predictor_class(ref_model)
    base = peak_rss_reset()
    enc_t, _ = _timed(lambda: ref.set_image(rgb), repeats)
    ref_mem = peak_rss_mb(base)
    dec_t = []
    for r, c in points:
        t0 = time.perf_counter()
        ref.predict(point_coords=np.array([[c, r]], float), point_labels=np.array([1]))
        dec_t.append(time.perf_counter() - t0)
    rows.append(_row(arch, "reference", "fp32", enc_t, dec_t, ref_mem))

    # Accuracy oracle: the reference model on exactly our resized input, so
    # the columns measure the model arithmetic, not the two resize routines
    # (the reference resizes a uint8 PIL image, we resize in float32).
    from ..engine.preprocess import Geometry, resized_input

    geometry = Geometry.for_image(rgb.shape[:2], ours_model.image_size)
    with torch.no_grad():
        ref.set_torch_image(resized_input(rgb / 255.0, geometry, torch.device(device)).float() * 255.0,
                            rgb.shape[:2])
    ref_emb = ref.features[0].float().cpu().numpy()
    ref_out = []
    for r, c in points:
        masks, scores, logits = ref.predict(point_coords=np.array([[c, r]], float), point_labels=np.array([1]))
        k = int(np.argmax(scores))
        ref_out.append((masks[k], logits[k]))

    measured = set()
    for precision in precisions:
        pred = Predictor(ours_model, precision=precision)  # timed as users run it (prompted regions)
        if pred.precision in measured:  # "auto" came out as a mode already measured
            continue
        measured.add(pred.precision)
        raw = Predictor(ours_model, precision=pred.precision, regions="all")  # masks as the reference returns them
        pred.encode(rgb)  # warm-up (first-call allocations, kernel selection)
        base = peak_rss_reset()
        enc_t, _ = _timed(lambda: pred.set_image(rgb), repeats)
        mem = peak_rss_mb(base)
        raw.set_embedding(pred.embedding)
        dec_t, ious, logit_err = [], [], []
        for (r, c), (ref_mask, ref_logits) in zip(points, ref_out):
            t0 = time.perf_counter()
            res = pred.predict(points=[(r, c)], labels=[1])
            res.mask(0)  # full resolution for the shown candidate only
            dec_t.append(time.perf_counter() - t0)
            ious.append(_iou(raw.predict(points=[(r, c)], labels=[1]).mask(0), ref_mask))
            logit_err.append(_rel(res.logits[0], ref_logits))
        row = _row(arch, "ours", pred.precision, enc_t, dec_t, mem)
        row.update(embedding_rel_l2=_rel(pred.embedding.features, ref_emb),
                   logits_rel_l2_median=statistics.median(logit_err), mask_iou_mean=float(np.mean(ious)))
        rows.append(row)
    return rows


def _row(arch, impl, precision, enc_t, dec_t, mem) -> dict:
    dec_ms = sorted(1e3 * t for t in dec_t)
    return {
        "arch": arch, "impl": impl, "precision": precision,
        "encoder_s_median": statistics.median(enc_t), "encoder_s_all": enc_t,
        "decoder_ms_median": statistics.median(dec_ms),
        "decoder_ms_p95": dec_ms[min(len(dec_ms) - 1, int(round(0.95 * (len(dec_ms) - 1))))],
        "first_mask_s": statistics.median(enc_t) + dec_ms[0] / 1e3,
        "peak_rss_mb": mem,
    }


def encoder_throughput(arch: str, batch: int, precision: str, device: str, repeats: int = 3) -> dict:
    """Images/s of the bare encoder at ``batch`` (GPU measurements): reference fp32 vs ours."""
    from ..model import build_sam
    from ..engine.precision import autocast_context, resolve_precision

    ref = reference_model(arch).to(device)
    ours = build_sam(arch).to(device)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(batch, 3, 1024, 1024, device=device)
    precision = resolve_precision(precision, torch.device(device), ours)

    def run(model, ctx):
        with torch.inference_mode(), ctx:
            model.image_encoder(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    import contextlib

    out = {"arch": arch, "batch": batch}
    for name, model, ctx in (("reference_fp32", ref, contextlib.nullcontext()),
                             (f"ours_{precision}", ours, autocast_context(precision, torch.device(device)))):
        run(model, ctx)
        times, _ = _timed(lambda: run(model, ctx), repeats)
        out[name + "_img_per_s"] = batch / statistics.median(times)
    return out

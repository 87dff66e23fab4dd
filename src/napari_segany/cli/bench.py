"""``napari-segany bench``: our predictor against the reference, side by side."""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date

from . import args as cli_args
from ..files import check_output_path


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure speed and accuracy against the reference implementation",
                       description="Build the reference SamPredictor and ours with the same random weights, run "
                       "both on a real sample image, and print encoder/decoder timings, peak memory and accuracy. "
                       "Needs the reference packages (pip install 'napari-segany[test]').")
    p.add_argument("--arch", default="vit_b,vit_t", help="comma-separated architectures (default vit_b,vit_t)")
    p.add_argument("--precisions", default="fp32,bf16",
                   help="our precisions to measure (default fp32,bf16); 'auto' is what the random-weight model "
                   "measures to on this machine")
    p.add_argument("--repeats", type=cli_args.count(1), default=3, help="encoder runs per row (median reported)")
    p.add_argument("--clicks", type=cli_args.count(1), default=50, help="single-point clicks per row")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch", type=cli_args.count(0), default=0,
                   help="also measure bare-encoder throughput at this batch size (GPU measurements)")
    p.add_argument("--json", dest="json_path", default=None, help="write all results to this JSON file")
    p.set_defaults(func=run)


def _machine(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from . import benchmark
    from ..engine.precision import PRECISIONS
    from ..engine.preprocess import intensity_window, to_unit_range
    from ..sample_data import load_sample

    # every option is checked before anything is built or measured (a row takes minutes)
    precisions = list(dict.fromkeys(p.strip() for p in args.precisions.split(",") if p.strip()))
    if not precisions or set(precisions) - set(PRECISIONS):
        raise ValueError(f"--precisions {args.precisions!r}: choose among {', '.join(PRECISIONS)} (comma-separated)")
    from ..model.sam import ARCHITECTURES

    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown or not archs:
        raise ValueError(f"--arch {args.arch!r}: choose among {', '.join(ARCHITECTURES)} (comma-separated)")
    from ..weights.load import resolve_device

    resolve_device(args.device)
    if args.json_path:
        check_output_path(args.json_path, "--json file")
    image, labels = load_sample("nuclei2d"), load_sample("nuclei2d_labels")
    unit = to_unit_range(image, intensity_window(image[..., None]))
    rgb = np.repeat((unit * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
    points = benchmark.click_points(labels, args.clicks)
    rows = []
    for arch in archs:
        rows += benchmark.bench_arch(arch, rgb, points, precisions, args.repeats, args.device)
    import os

    result = {"date": date.today().isoformat(), "machine": _machine(args.device), "torch": torch.__version__,
              "load_average_1min_at_end": os.getloadavg()[0],
              "image": f"sample_data/nuclei2d.tif {image.shape[0]}x{image.shape[1]}", "clicks": args.clicks,
              "rows": rows}
    if args.batch:
        result["throughput"] = [benchmark.encoder_throughput(a.strip(), args.batch, p, args.device)
                                for a in args.arch.split(",") for p in precisions]
    print(format_table(result))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def format_table(result: dict) -> str:
    lines = [f"{result['date']} | {result['machine']} | torch {result['torch']} | {result['image']} | "
             f"load average at end {result.get('load_average_1min_at_end', float('nan')):.1f}", "",
             "| arch | impl | precision | encoder s (median) | vs ref | decoder ms median / p95 | vs ref "
             "| encoder peak MB | embedding rel L2 | logits rel L2 | mask IoU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    refs = {r["arch"]: r for r in result["rows"] if r["impl"] == "reference"}
    for r in result["rows"]:
        ref = refs[r["arch"]]
        acc = (f"{r['embedding_rel_l2']:.1e} | {r['logits_rel_l2_median']:.1e} | {r['mask_iou_mean']:.4f}"
               if "embedding_rel_l2" in r else "(oracle) | | ")
        lines.append(
            f"| {r['arch']} | {r['impl']} | {r['precision']} | {r['encoder_s_median']:.2f} | "
            f"{ref['encoder_s_median'] / r['encoder_s_median']:.2f}x | "
            f"{r['decoder_ms_median']:.1f} / {r['decoder_ms_p95']:.1f} | "
            f"{ref['decoder_ms_median'] / r['decoder_ms_median']:.2f}x | {r['peak_rss_mb']:.0f} | {acc} |")
    for t in result.get("throughput", []):
        lines.append(f"throughput {t}")
    return "\n".join(lines)

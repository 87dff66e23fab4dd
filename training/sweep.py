"""Compare training-recipe variants side by side on one accelerator, at equal CPU cost.

    python -m training.sweep training/sweeps/NAME.json --out DIR [--device cuda] [--budget-s 840]

The reference recipe is the CPU one (:mod:`training.train`), and one CPU run
is all that fits in its 90-minute budget, so recipe choices are tried here
first: every variant of the sweep file runs at once on the device, each as a
``python -m training.train`` process, for the number of steps that costs what
the reference's steps cost on the CPU (``reference_steps / cpu_cost``, the
variant's measured CPU seconds per step relative to the reference). If the
device cannot finish them all within ``--budget-s``, every step count is
scaled down by the same factor (measured from a short probe of all variants
at once) and the factor is recorded, so the variants stay comparable with one
another, though no longer with a full CPU run. Each result is then evaluated
by :mod:`training.evaluate` on the real sample data and held-out synthetic
scenes, and ``DIR/summary.json`` collects the numbers.

Sweep file: ``{"reference_steps": 6921, "variants": [{"name": "ref", "args": [],
"cpu_cost": 1.0}, ...]}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PROBE_STEPS = 40


def _train(variant: dict, steps: int, out: Path, device: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "training.train", "--out", str(out / f"{variant['name']}.pt"),
           "--steps", str(steps), "--device", device, "--threads", "1", "--log-every", "20",
           "--save-every-min", "1000", *variant["args"]]
    return subprocess.Popen(cmd, stdout=(out / f"{variant['name']}.stdout").open("w"), stderr=subprocess.STDOUT)


def _seconds_per_step(log: Path) -> float:
    """Seconds per step between the first and last logged record (start-up excluded)."""
    recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    (a, b) = recs[0], recs[-1]
    return (b["s"] - a["s"]) / max(1, b["step"] - a["step"])


def plan_steps(spec: dict, seconds_per_step: dict, budget_s: float) -> tuple[dict, float]:
    """Steps per variant at equal CPU cost (``reference_steps / cpu_cost``), all scaled by one
    factor (<= 1) so that the slowest variant ends within ``budget_s``; returns (steps, factor)."""
    steps = {v["name"]: spec["reference_steps"] / v["cpu_cost"] for v in spec["variants"]}
    scale = min(1.0, budget_s / max(seconds_per_step[n] * s for n, s in steps.items()))
    return {n: max(PROBE_STEPS, round(s * scale)) for n, s in steps.items()}, scale


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--budget-s", type=float, default=840.0, help="wall-clock budget for the training runs")
    p.add_argument("--synthetic", type=int, default=6, help="held-out synthetic images per evaluation")
    args = p.parse_args(argv)
    spec = json.loads(args.sweep.read_text())
    variants = spec["variants"]
    args.out.mkdir(parents=True, exist_ok=True)
    probe_dir = args.out / "probe"
    probe_dir.mkdir(exist_ok=True)
    for proc in [_train(v, PROBE_STEPS, probe_dir, args.device) for v in variants]:
        proc.wait()
    rate = {v["name"]: _seconds_per_step(probe_dir / f"{v['name']}.log.jsonl") for v in variants}
    steps, scale = plan_steps(spec, rate, args.budget_s)
    print(json.dumps({"seconds_per_step": rate, "scale": scale, "steps": steps}), flush=True)

    t0 = time.perf_counter()
    procs = {v["name"]: _train(v, steps[v["name"]], args.out, args.device) for v in variants}
    codes = {n: proc.wait() for n, proc in procs.items()}
    print(json.dumps({"trained_s": round(time.perf_counter() - t0), "exit_codes": codes}), flush=True)

    evals = {}
    for v in variants:
        if codes[v["name"]] == 0:
            evals[v["name"]] = subprocess.Popen(
                [sys.executable, "-m", "training.evaluate", "--model", str(args.out / f"{v['name']}.pt"),
                 "--threads", "2", "--synthetic", str(args.synthetic), "--out", str(args.out / f"{v['name']}_eval")],
                stdout=subprocess.DEVNULL, stderr=(args.out / f"{v['name']}_eval.err").open("w"))
    summary = {"scale": scale, "steps": steps, "seconds_per_step": rate, "results": {}}
    for name, proc in evals.items():
        if proc.wait() != 0:
            summary["results"][name] = {"error": f"evaluation failed, see {name}_eval.err"}
            continue
        res = json.loads((args.out / f"{name}_eval.json").read_text())
        model = next(v for k, v in res.items() if k.startswith("model"))
        summary["results"][name] = {"click": model["2d"]["click"], "box": model["2d"]["box"],
                                    "after_clicks": model["2d"]["after_clicks"],
                                    "3d": model["3d"]["propagate"], "synthetic": model.get("synthetic")}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary["results"], indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

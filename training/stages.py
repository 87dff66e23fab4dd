"""What the later training stages (the boundary refiner, the candidate scorer, the instance head)
share: their command line, their optimiser loop, and how each adds its net to the model's file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch


def save_atomically(obj: dict, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def stage_parser(prog: str, description: str, part: str, scenes: int, steps: int) -> argparse.ArgumentParser:
    """The arguments of a stage that trains ``part`` on a model's file and exports the file with it."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--model", required=True, type=Path, help="the model's file (our format)")
    p.add_argument("--export", required=True, type=Path, help=f"file to write: the model with its {part}")
    p.add_argument("--scenes", type=int, default=scenes)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--packed", type=float, default=None,
                   help="fraction of packed nuclei in the stage's scenes (default: as the model was trained)")
    return p


#: The generator's options a model's training records (``config["training"]``), as
#: :func:`training.synth.generate` takes them.
SCENE_OPTIONS = ("nucleus_diameter", "brightness_sigma", "bright_fraction", "packed")


def stage_scenes(args: argparse.Namespace) -> dict:
    """The generator's options for a stage's scenes: those the model's own training recorded in its
    file (a model trained on packed nuclei is refined on packed nuclei too), ``--packed`` overriding;
    a file that records none gets the generator's defaults."""
    recorded = torch.load(args.model, map_location="cpu", weights_only=True)["config"].get("training", {})
    options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in recorded.items() if k in SCENE_OPTIONS}
    if args.packed is not None:
        options["packed"] = args.packed
    return options


def export_part(model_path: Path, prefix: str, key: str, net: torch.nn.Module, dest: Path, training: dict) -> str:
    """The model's file with ``net`` added (float16 weights under ``prefix``, its settings and
    ``training`` under ``config[key]``, replacing any there), written atomically; returns its sha256."""
    from napari_segany.weights.hashing import file_hash

    ckpt = torch.load(model_path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in ckpt["model"].items() if not k.startswith(prefix)}
    state.update({prefix + k: v.detach().half().contiguous() for k, v in net.state_dict().items()})
    config = {**ckpt["config"], key: {**net.config, "training": training}}
    save_atomically({"model": state, "config": config}, dest)
    return file_hash(dest, "sha256")


def start_stage(args: argparse.Namespace, part: str):
    """Threads set, the model's file loaded without its ``part`` (the stage trains a new one on
    the model's own answers); returns (model, start time)."""
    import time

    from napari_segany.weights.load import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = load_model(args.model, device="cpu")
    setattr(model, part, None)
    return model, started


def finish_stage(args: argparse.Namespace, net: torch.nn.Module, prefix: str, part: str, started: float,
                 counted: dict) -> int:
    """Exports the model's file with the trained ``net`` and says so; ``counted``: how many
    examples it learnt from, recorded with the seed, scenes, steps, time and torch version."""
    import time

    seconds = round(time.perf_counter() - started, 1)
    training = {"seed": args.seed, "scenes": args.scenes, "steps": args.steps, **counted,
                "seconds": seconds, "torch": str(torch.__version__)}
    digest = export_part(args.model, prefix, part, net, args.export, training)
    print(f"{part} trained in {seconds:.0f} s; exported {args.export}, sha256 {digest}", flush=True)
    return 0


def cosine_steps(net: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, lr: float, step_loss, log,
                 every: int) -> torch.nn.Module:
    """``steps`` optimiser steps on ``step_loss()`` (a fresh batch's loss each call) with the
    learning rate on a cosine from ``lr`` to 0, logging the mean loss every ``every`` steps and at
    the end; returns ``net`` in eval mode."""
    import json

    import numpy as np

    recent = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        loss = step_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        recent.append(float(loss.detach()))
        if (step + 1) % every == 0 or step + 1 == steps:
            log(json.dumps({"step": step + 1, "loss": round(float(np.mean(recent)), 4)}))
            recent = []
    return net.eval()

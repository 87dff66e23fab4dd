"""``napari-segany finetune``: adapt a model to annotated images (:func:`napari_segany.finetune`),
with a time estimate first, a progress bar, and Ctrl+C that stops the training and keeps the best
weights so far (checked and saved under the usual rule: only when the held-out score improved)."""

from __future__ import annotations

import argparse
import json
import math
import sys

from . import args as cli_args
from .finetune_inputs import find_pairs

STAGES = {"embedding": "embeddings (pictures)", "training": "training (steps)"}


def register(sub) -> None:
    p = sub.add_parser(
        "finetune", help="adapt a model to your annotated images (prompt encoder and mask decoder)",
        description="Fine-tune a model's prompt encoder and mask decoder on annotated images (the image "
        "encoder frozen, each picture encoded once), hold part of the data out to measure the result, and save "
        "the new model only when its held-out score improved. Pairs: --pair IMAGE LABELS, or images and "
        "folders whose labels are <name>_labels.tif (the files `napari-segany auto` writes) beside them or in "
        "--labels-dir. Ctrl+C stops the training early and keeps the best weights so far.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="an image or volume file with its <name>_labels.tif beside it, or a folder (or quoted "
                   "pattern) of such images; images without labels there are left out")
    p.add_argument("--pair", nargs=2, action="append", default=[], metavar=("IMAGE", "LABELS"),
                   help="an image (or volume) file and its labels file (repeatable)")
    p.add_argument("--labels-dir", metavar="DIR", help="look for <name>_labels.tif here instead of beside each "
                   "image (e.g. the --output-dir of `napari-segany auto`)")
    p.add_argument("-o", "--output", required=True, metavar="NAME|FILE.pt",
                   help="a name (letters, digits, - and _): saved among your own models, loaded with --model "
                   "NAME; or a file ending in .pt or .pth")
    p.add_argument("--model", "-m", default=None, help="the model to start from: registry name, one of your "
                   "own, or a checkpoint file (default: the included segany_vit_t_512)")
    p.add_argument("--axis", type=int, default=0, help="axis of a volume whose slices are the examples (default 0)")
    p.add_argument("--held-out", type=_fraction, default=0.25, metavar="F",
                   help="share of the images (or blocks of slices, or quarters of one image) held out to measure "
                   "the result (default 0.25)")
    p.add_argument("--max-minutes", type=_minutes, default=5.0, metavar="M",
                   help="time budget for everything, embeddings included (default 5; 0: no limit, give --steps)")
    p.add_argument("--steps", type=cli_args.count(0), default=None, metavar="N",
                   help="number of training steps (default: as many as the time budget allows; the budget "
                   "still applies)")
    p.add_argument("--lr", type=_positive, default=1e-4, help="learning rate (default 1e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split and the prompts (default 0)")
    p.add_argument("--save", choices=("improved", "always"), default="improved",
                   help="save only when the held-out score improved (default), or always")
    p.add_argument("--cache", metavar="DIR", default=None, help="disk cache for the embeddings of volume slices")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model of that name or file")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the report")
    p.set_defaults(func=run)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    return value if math.isfinite(value) else math.nan


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1 (e.g. 0.25), got {text!r}")
    return value


def _minutes(text: str) -> float | None:
    value = _number(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be minutes (0 for no limit), got {text!r}")
    return value or None


def _positive(text: str) -> float:
    value = _number(text)
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


class Progress:
    """``progress(stage, done, total)`` for :func:`napari_segany.finetune`, on stderr: a tqdm bar for
    the embeddings and the training steps, a line for each held-out check."""

    def __init__(self) -> None:
        self.stage, self.bar = None, None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage == self.stage:
            if self.bar is None:
                return
            self.bar.total = max(total, done)
            self.bar.n = done
            self.bar.refresh()
            return
        self.close()
        self.stage = stage
        if stage in ("before", "after"):
            cli_args.note(f"checking the held-out objects ({stage} training)...")
            return
        self.bar = tqdm(total=max(total, done), initial=done, desc=STAGES.get(stage, stage), file=sys.stderr,
                        leave=False, bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.stage, self.bar = None, None


def _check_pairs(pairs, axis: int) -> None:
    """Every pair readable, of matching shapes, with whole-number labels holding objects: refused
    with a sentence before the model loads."""
    from ..finetune.data import read_pairs

    for image, labels in pairs:
        (source,) = read_pairs([(image, labels)], axis)
        if not source.labels.any():
            raise ValueError(f"{str(labels)!r} holds no objects (every pixel is 0): annotate objects in it, or "
                             f"leave {str(image)!r} out")


def run(args: argparse.Namespace) -> int:
    import napari_segany as sg

    from ..finetune import save as saving
    from ..weights import user_models
    from ..weights.load import load_model

    if not -3 <= args.axis < 3:
        raise ValueError(f"--axis {args.axis} is not one of a volume's 3 axes (0, 1 or 2)")
    if args.max_minutes is None and args.steps is None:
        raise ValueError("--max-minutes 0 means no time limit: give --steps N as well")
    try:
        saving.check_output(args.output, args.overwrite)  # before any work
    except FileExistsError:
        what = f"you already have a model called {args.output!r}" if user_models.is_name(args.output) else \
            f"{args.output} exists"
        raise FileExistsError(f"{what}; pass --overwrite to replace it, or choose another -o") from None
    cache = None if args.cache is None else cli_args.check_cache_folder(args.cache)
    pairs = find_pairs(args.inputs, args.pair, args.labels_dir, note=cli_args.note)
    _check_pairs(pairs, args.axis)
    model = load_model(args.model, device="cpu")
    common = dict(axis=args.axis, held_out=args.held_out, max_minutes=args.max_minutes, steps=args.steps,
                  seed=args.seed)
    estimate = sg.finetune.estimate(model, pairs, **common)
    cli_args.note(f"{len(pairs)} pair{'s' * (len(pairs) != 1)}, starting from {model.info.name}: {estimate}")
    cli_args.note("Ctrl+C stops the training early and keeps the best weights so far.")
    bars = Progress()
    try:
        result = sg.finetune(model, pairs, args.output, lr=args.lr, save=args.save, overwrite=args.overwrite,
                             cache_dir=cache, progress=bars, **common)
    except KeyboardInterrupt:  # before the training, or while checking its result: nothing to keep
        bars.close()
        cli_args.note("interrupted before the result was checked: nothing was saved")
        return 130
    bars.close()
    report = result.report
    if args.json:
        print(json.dumps({"model": result.trained.info.name, "base": model.info.name,
                          "improved": result.improved, "saved": None if result.path is None else str(result.path),
                          "estimate": vars(estimate), "report": report.as_dict()}))
        return 0
    print(report)
    if result.path is not None:
        how = "" if result.improved else " although it did not improve (--save always)"
        use = f"--model {args.output}" if user_models.is_name(args.output) else f"--model {result.path}"
        print(f"Saved {result.trained.info.name!r} to {result.path}{how}; use it with {use}.")
    else:
        print(f"Nothing was saved: the held-out score did not improve, so keep using {model.info.name}.")
    return 0

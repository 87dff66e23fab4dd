"""Parsers for the small value formats used on the command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def note(text: str) -> None:
    """A line for the person at the terminal (stderr, so it never mixes with a command's output)."""
    print(text, file=sys.stderr, flush=True)


def numbers(text: str, count: tuple[int, ...], what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in count:
        raise argparse.ArgumentTypeError(f"{what} must be {' or '.join(map(str, count))} comma-separated numbers, got {text!r}")
    return values


def point(text: str) -> tuple[float, float, int]:
    """ROW,COL or ROW,COL,LABEL (LABEL 1 foreground, 0 background)."""
    v = numbers(text, (2, 3), "--point")
    label = v[2] if len(v) == 3 else 1
    if label not in (0, 1):  # 0.5 is refused, never truncated to a background click
        raise argparse.ArgumentTypeError(f"the LABEL of --point must be 1 or 0, got {text!r}")
    return v[0], v[1], int(label)


def box(text: str) -> tuple[float, float, float, float]:
    """MIN_ROW,MIN_COL,MAX_ROW,MAX_COL."""
    return numbers(text, (4,), "--box")


def limits(text: str) -> tuple[float, float]:
    return numbers(text, (2,), "--contrast-limits")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default=None,
                        help="registry name (see `napari-segany models`) or checkpoint file "
                        "(default: the included segany_vit_t_512)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="arithmetic of the model: auto (default) takes bf16 where it was measured faster "
                        "than fp32 on this machine with logits within 2 %%, else fp32; fp32 reproduces the "
                        "reference implementation")
    parser.add_argument("--regions", default="prompted", choices=("prompted", "all"),
                        help="'prompted' (default) keeps the connected regions under the prompts and drops "
                        "islands elsewhere; 'all' keeps every region the decoder returns")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(args: argparse.Namespace, inputs: list[str]) -> Path:
    """Refuse, before any work: an output that is one of the ``inputs`` (never, even with
    --overwrite), an existing output without --overwrite, two outputs naming one file, and a file
    name whose ending says another format than the one written (``-o`` is a TIFF, ``--overlay`` a
    PNG). Returns the ``-o`` path."""
    out = Path(args.output)
    outputs = [("-o", out, (".tif", ".tiff"), "a TIFF")]
    if getattr(args, "overlay", None):
        outputs.append(("--overlay", Path(args.overlay), (".png",), "a PNG"))
    for flag, path, endings, kind in outputs:
        if path.suffix.lower() not in endings:
            raise ValueError(f"{flag} {path}: the file is written as {kind}; give it a name ending in "
                             f"{' or '.join(endings)}")
        for source in inputs:
            if _same_file(path, Path(source)):
                raise ValueError(f"{flag} {path} is the input {source}: an input is never overwritten; "
                                 "choose another path")
        if path.exists() and not args.overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it, or choose another {flag} path")
    if len(outputs) == 2 and _same_file(outputs[0][1], outputs[1][1]):
        raise ValueError("-o and --overlay name the same file; give each its own path")
    return out


def check_output_and_prompts(args: argparse.Namespace, inputs: list[str]) -> Path:
    """:func:`check_outputs`; and require a prompt (--point or --box) and a --label-id that fits
    the uint16 output. Returns the output path."""
    out = check_outputs(args, inputs)
    if not args.point and args.box is None:
        raise ValueError("give at least one prompt: --point ROW,COL[,LABEL] (repeatable) or --box R0,C0,R1,C1")
    if not 0 < args.label_id <= 65535:
        raise ValueError("--label-id must be between 1 and 65535")
    return out

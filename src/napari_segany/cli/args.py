"""Parsers for the small value formats used on the command line."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path

from ..files import check_output_path


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
    if not all(math.isfinite(v) for v in values):  # nan, inf
        raise argparse.ArgumentTypeError(f"{what} must be finite numbers, got {text!r}")
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
    r0, c0, r1, c1 = numbers(text, (4,), "--box")
    if r1 <= r0 or c1 <= c0:
        raise argparse.ArgumentTypeError(f"--box {text} is inverted or has zero area; give MIN_ROW,MIN_COL,MAX_ROW,"
                                         "MAX_COL with MAX_ROW > MIN_ROW and MAX_COL > MIN_COL")
    return r0, c0, r1, c1


def limits(text: str) -> tuple[float, float]:
    lo, hi = numbers(text, (2,), "--contrast-limits")
    if hi <= lo:
        raise argparse.ArgumentTypeError(f"--contrast-limits {text}: give LO,HI with LO below HI (the intensities "
                                         "shown as black and as white)")
    return lo, hi


def spacing(text: str) -> tuple[float, float, float]:
    """DZ,DY,DX voxel sizes, each positive."""
    values = numbers(text, (3,), "--spacing")
    if min(values) <= 0:
        raise argparse.ArgumentTypeError(f"--spacing {text}: each voxel size must be above 0")
    return values


def iou_threshold(text: str) -> float:
    value = _number(text, "--iou-threshold")
    if math.isnan(value) or value > 1:  # NaN compares False: it switched the stop off
        raise argparse.ArgumentTypeError(f"--iou-threshold must be a predicted IoU of at most 1 (-inf accepts "
                                         f"every slice), got {text!r}")
    return value


def area_change(text: str) -> float:
    value = _number(text, "--area-change")
    if math.isnan(value) or value < 1:
        raise argparse.ArgumentTypeError(f"--area-change must be a factor of at least 1 (e.g. 2.5; inf allows any "
                                         f"change), got {text!r}")
    return value


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None


def count(least: int):
    """An argparse type: a whole number >= ``least``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {least}, got {text!r}")
        return value
    return parse


NUMBER_LISTS = ("--point", "--box", "--contrast-limits", "--spacing")


def attach_negative_lists(argv: list[str]) -> list[str]:
    """``--point -5,10`` as ``--point=-5,10``: argparse takes a value starting with '-' that is not one
    plain number for an option and said "expected one argument"."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return out + argv[i:]
        if token in NUMBER_LISTS and i + 1 < len(argv) and re.match(r"-[\d.]", argv[i + 1]):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


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
        check_output_path(path, f"{flag} file")  # a folder, or under a file or an unwritable folder
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


def check_prompts_fit(args: argparse.Namespace, size: tuple[int, int], where: str = "image") -> None:
    """Every --point inside, and the --box not entirely outside, an H x W ``size``: checked before the
    model loads (the predictor checks them again, in its own words)."""
    h, w = size
    for r, c, _ in args.point:
        if not (-0.5 <= r <= h - 0.5 and -0.5 <= c <= w - 0.5):
            raise ValueError(f"--point {r:g},{c:g} lies outside the {h} x {w} {where} (rows 0-{h - 1}, columns "
                             f"0-{w - 1}); points are ROW,COL in pixels")
    if args.box is not None:
        r0, c0, r1, c1 = args.box
        if r1 < 0 or c1 < 0 or r0 > h - 1 or c0 > w - 1:
            raise ValueError(f"--box {r0:g},{c0:g},{r1:g},{c1:g} lies entirely outside the {h} x {w} {where}; "
                             "the box is MIN_ROW,MIN_COL,MAX_ROW,MAX_COL in pixels")


def check_cache_folder(path: str) -> Path:
    """--cache: a folder, or one that can be made (not a file, nor under a file)."""
    from ..engine.userdata import folder_problem

    p = Path(path).expanduser()
    problem = folder_problem(p)
    if problem is not None and problem[1] is NotADirectoryError:
        raise NotADirectoryError(f"--cache {p}: {str(problem[0])!r} is a file, not a folder; pass a folder for the "
                                 "embedding cache")
    if problem is not None:
        raise PermissionError(f"--cache {p}: the folder {str(problem[0])!r} is not writable for this user; pass "
                              "another folder")
    return p


def check_volume_options(args: argparse.Namespace, shape: tuple[int, ...], path: str) -> tuple[int, int]:
    """--axis and --channel against a volume's ``shape``, before the model loads. Returns the axis and
    the number of slices along it."""
    from ..batch.inputs import check_volume

    return check_volume(tuple(shape), axis=args.axis, channel=args.channel, path=path)


def add_cluster_options(parser: argparse.ArgumentParser, what: str = "input") -> None:
    """--cluster local[:N] and --scheduler ADDRESS (one task per ``what`` on dask.distributed)."""
    place = parser.add_argument_group("where it runs (default: in this process, one after the other)")
    run_on = place.add_mutually_exclusive_group()
    run_on.add_argument("--cluster", type=local_cluster, default=None, metavar="local[:N]",
                        help=f"one task per {what} on a dask LocalCluster of N worker processes on this machine "
                        "(default one per two cores), each loading the model once and using its share of the "
                        "cores; needs dask.distributed (pip install 'napari-segany[cluster]')")
    run_on.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help=f"one task per {what} on the dask cluster whose scheduler is at ADDRESS (e.g. "
                        "tcp://host:8786, started by dask-jobqueue on SLURM, PBS or LSF); the files and the "
                        "model file must have the same paths on its workers")


def local_cluster(text: str) -> int | bool:
    """--cluster: ``local`` (True: the default size) or ``local:N`` (N workers)."""
    name, _, n = text.partition(":")
    if name == "local" and not n:
        return True
    if name == "local":
        try:
            if int(n) >= 1:
                return int(n)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"give local or local:N (N worker processes on this machine, at least 1), "
                                     f"got {text!r}; for a cluster started elsewhere pass --scheduler ADDRESS")


def client_for(args: argparse.Namespace):
    """The dask client of --cluster or --scheduler (a context manager; None without them); without
    dask.distributed, a RuntimeError that says how to install it."""
    import contextlib

    from ..batch import connect

    @contextlib.contextmanager
    def opened():
        try:
            with connect(local=args.cluster, scheduler=args.scheduler) as client:
                yield client
        except ImportError as err:  # the sentence says what to do
            raise RuntimeError(str(err)) from None
    return opened()

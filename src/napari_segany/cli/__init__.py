"""The ``napari-segany`` command.

Each sub-command lives in a module of this package exposing ``register(subparsers)``,
which adds its parser and sets ``func`` to a handler returning an exit code.

Exit codes: 0 success; 1 the command could not do its job (bad input file,
model not available, prompt outside the image...; the message says what to
do); 2 the command line itself is wrong (argparse usage error).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "napari_segany.cli.segment",
    "napari_segany.cli.auto",
    "napari_segany.cli.finetune",
    "napari_segany.cli.models",
    "napari_segany.cli.volume",
    "napari_segany.cli.gui",
    "napari_segany.cli.bench",
)
#: Commands that open napari: they leave its allocator as napari has it.
INTERACTIVE = ("gui",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-segany",
        description="Promptable segmentation (Segment Anything family) for microscopy and MRI.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _version() -> str:
    from .. import __version__

    return f"napari-segany {__version__}"


def main(argv: list[str] | None = None) -> int:
    from .args import attach_negative_lists

    parser = build_parser()
    args = parser.parse_args(attach_negative_lists(sys.argv[1:] if argv is None else list(argv)))
    if args.command not in INTERACTIVE:
        from ..batch.environ import keep_freed_memory

        keep_freed_memory()  # a model run in this process faults its memory in once, not per image
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

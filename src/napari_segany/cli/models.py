"""``napari-segany models`` and ``napari-segany download``."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("models", help="list the known models and whether they are cached",
                       description="List registry models with size and cache state, or import a local file "
                       "under a registry name (for machines without internet).")
    p.add_argument("--import", dest="import_file", metavar="FILE", help="place FILE in the cache under --name")
    p.add_argument("--name", help="registry name for --import")
    p.add_argument("--no-verify", action="store_true",
                   help="with --import: accept a file whose hash differs from the registry's (it must still load)")
    p.set_defaults(func=run_models)
    d = sub.add_parser("download", help="download (and verify) a registry model into the cache")
    d.add_argument("name", help="registry name, see `napari-segany models`")
    d.set_defaults(func=run_download)


def run_models(args: argparse.Namespace) -> int:
    from ..weights import registry

    if args.import_file:
        if not args.name:
            raise ValueError("--import needs --name NAME (one of: " + ", ".join(registry.model_names()) + ")")
        path = registry.import_model(args.import_file, args.name, verify=not args.no_verify)
        print(f"imported {args.import_file} as {args.name}: {path}")
        return 0
    if args.name:
        raise ValueError("--name is only used with --import FILE")
    print(f"cache: {registry.cache_dir()}")
    rows = [("name", "arch", "size", "cached", "description")]
    for name in registry.model_names():
        spec = registry.get_spec(name)
        size = f"{spec.size_bytes / 1e6:.0f} MB" if spec.size_bytes else "?"
        where = "included" if spec.bundled else ("yes" if registry.is_cached(name) else "no")
        rows.append((name, spec.arch, size, where, spec.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r[:4], widths)) + "  " + r[4])
    return 0


def run_download(args: argparse.Namespace) -> int:
    from ..weights import registry

    path = registry.fetch(args.name, progress=True)
    print(f"{args.name}: {path}")
    return 0

"""``napari-segany models`` and ``napari-segany download``."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("models", help="list the known models, whether they are cached, and your own models",
                       description="List registry models with size and cache state and your own (fine-tuned) "
                       "models with their base model, date and held-out scores, or import a local file "
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
    _table(rows)
    _print_own_models()
    return 0


def _table(rows: list[tuple[str, ...]]) -> None:
    """Columns as wide as their longest entry; the last one as it is."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r[:-1], widths)) + "  " + r[-1])


def _print_own_models() -> None:
    """The user's own models (fine-tuned, saved by name): base, date and held-out scores."""
    from ..weights import user_models

    found = user_models.list_models()
    print()
    print(f"your own models: {user_models.folder()}")
    if not found:
        print("  none yet: `napari-segany finetune ... -o NAME` saves one there, and --model NAME loads it")
        return
    rows = [("name", "arch", "base", "date", "held-out IoU before -> after")]
    for m in found:
        if m.problem:
            rows.append((m.name, "?", "?", "?", f"unreadable: {m.problem}"))
        else:
            rows.append((m.name, m.arch or "?", m.base or "?", m.date[:10] or "?", m.scores or "not recorded"))
    _table(rows)


def run_download(args: argparse.Namespace) -> int:
    from ..weights import registry

    path = registry.fetch(args.name, progress=True)
    print(f"{args.name}: {path}")
    return 0

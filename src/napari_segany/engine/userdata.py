"""Where napari-segany keeps what it remembers between runs (downloaded weights, the precision
measured on this machine), and how such small records are written without ever leaving half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """``$SEGANY_CACHE`` when set, else the operating system's per-user cache folder
    (``pooch.os_cache("napari-segany")``)."""
    env = os.environ.get("SEGANY_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("napari-segany"))


def folder_problem(folder: Path) -> tuple[Path, type[OSError]] | None:
    """Why files cannot be written into ``folder`` (created first if missing): the folder at fault
    and NotADirectoryError (it is a file) or PermissionError (not writable for this user); None when
    nothing stands in the way that can be seen without writing."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:  # what a mkdir would start from
        existing = existing.parent
    if not existing.is_dir():
        return existing, NotADirectoryError
    if not os.access(existing, os.W_OK | os.X_OK):
        return existing, PermissionError
    return None


def write_json_atomically(path: Path, obj) -> None:
    """Write ``obj`` as JSON to a private temporary file beside ``path``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

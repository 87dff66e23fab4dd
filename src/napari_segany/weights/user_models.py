"""The user's own models: fine-tuned checkpoints saved by name (``finetune(..., "my-nuclei")``,
``napari-segany finetune -o my-nuclei``) into ``<cache>/user-models/<name>.pt``, where
:func:`napari_segany.load_model` finds them by that name (registry names first), the
``napari-segany models`` command lists them and the widget offers them.

A name is letters, digits, ``-`` and ``_`` (no dots, no slashes: anything with those is a path), and
never a registry name. What a listing shows (base model, date, held-out scores) is read from each
file's stored config; the weights are memory-mapped, never built into a model.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..engine.userdata import cache_root
from .known import REGISTRY

#: The folder under the cache folder (``$SEGANY_CACHE`` or the user cache) that holds them.
FOLDER = "user-models"
SUFFIX = ".pt"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

__all__ = ["FOLDER", "UserModel", "check_name", "find", "folder", "is_name", "list_models", "names", "path_for", "read"]


def folder() -> Path:
    """Where the user's own models live: ``<cache>/user-models``."""
    return cache_root() / FOLDER


def is_name(text) -> bool:
    """Whether ``text`` is written as a model name (not a path): a str of letters, digits, - and _."""
    return isinstance(text, str) and NAME.fullmatch(text) is not None


def check_name(name: str) -> str:
    """``name`` if it can name a model of the user's; else a ValueError that says why."""
    if not is_name(name):
        raise ValueError(f"{name!r} cannot name a model: use letters, digits, - and _ (at most 64, starting with a "
                         "letter or digit), or give a file path ending in .pt or .pth")
    if name in REGISTRY:
        raise ValueError(f"{name!r} is the name of a registry model; `load_model({name!r})` would load that one, "
                         f"not yours. Choose another name (e.g. {name}-mine) or give a file path ending in .pt")
    return name


def path_for(name: str) -> Path:
    """The file a model of the user's called ``name`` is (or would be) saved in."""
    return folder() / f"{check_name(name)}{SUFFIX}"


def find(name) -> Path | None:
    """The file of the user's model ``name``, or None when there is none (or ``name`` is no name)."""
    if not is_name(name) or name in REGISTRY:
        return None
    path = folder() / f"{name}{SUFFIX}"
    return path if path.is_file() else None


@dataclass(frozen=True)
class UserModel:
    """One of the user's models as a listing shows it (from the file's stored config).

    ``base``: the model it was fine-tuned from; ``date``: when (UTC, ISO 8601); ``before`` and
    ``after``: held-out mean IoU (mean of click, box and click + 2 corrections) before and after;
    ``problem``: why the file could not be read (then the rest is empty)."""

    name: str
    path: Path
    arch: str = ""
    base: str = ""
    date: str = ""
    before: float | None = None
    after: float | None = None
    objects: int | None = None
    problem: str = ""

    @property
    def scores(self) -> str:
        """'0.612 -> 0.671 on 25 held-out objects', or '' when the file records none."""
        if self.before is None or self.after is None:
            return ""
        on = f" on {self.objects} held-out objects" if self.objects else ""
        return f"{self.before:.3f} -> {self.after:.3f}{on}"

    def describe(self) -> str:
        """One line: base model, date and scores (or the problem)."""
        if self.problem:
            return f"unreadable: {self.problem}"
        parts = [f"from {self.base}" if self.base else "base unknown"]
        if self.date:
            parts.append(self.date[:10])
        if self.scores:
            parts.append(f"held-out IoU {self.scores}")
        return ", ".join(parts)


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read(path: Path) -> UserModel:
    """What the file at ``path`` says of itself (its config; the weights are memory-mapped, not read)."""
    from .checkpoint import read_checkpoint

    name = path.name[: -len(SUFFIX)]
    try:
        config = read_checkpoint(path).config
    except (OSError, ValueError, RuntimeError) as err:
        return UserModel(name, path, problem=str(err))
    ft = config.get("finetune") if isinstance(config.get("finetune"), dict) else {}
    base = ft.get("base") if isinstance(ft.get("base"), dict) else {}
    before = ft.get("before") if isinstance(ft.get("before"), dict) else {}
    after = ft.get("after") if isinstance(ft.get("after"), dict) else {}
    objects = after.get("objects")
    return UserModel(name, path, arch=str(config.get("arch", "")), base=str(base.get("name", "")),
                     date=str(ft.get("date", "")), before=_number(before.get("mean")),
                     after=_number(after.get("mean")), objects=int(objects) if isinstance(objects, int) else None)


def names() -> list[str]:
    """The names of the user's models, sorted (files ``<name>.pt`` in :func:`folder`; partial and
    hidden files, and names that :func:`load_model` would not find, are left out)."""
    where = folder()
    if not where.is_dir():
        return []
    stems = (e.name[: -len(SUFFIX)] for e in os.scandir(where) if e.name.endswith(SUFFIX))
    return sorted(s for s in stems if find(s) is not None)


def list_models() -> list[UserModel]:
    """The user's models with what their files say of themselves, by name."""
    return [read(folder() / f"{name}{SUFFIX}") for name in names()]

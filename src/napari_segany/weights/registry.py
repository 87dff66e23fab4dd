"""The known checkpoints (:mod:`napari_segany.weights.known`): where they are cached, how they
are downloaded and verified.

Every entry carries a hash that is checked before a download is given its final
name (:mod:`napari_segany.weights.transfer` streams into a part file beside it,
with a deadline and a minimum rate), so an interrupted, truncated or corrupt
download never sits under the name that :func:`fetch` returns.

The cache folder is ``$SEGANY_CACHE`` when set, else the per-user cache folder
of the operating system (``pooch.os_cache("napari-segany")``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path


from ..engine.predictor import Cancelled
from ..engine.userdata import cache_root, folder_problem
from .checkpoint import detect_architecture, read_checkpoint
from .hashing import file_hash, require_hash_support
from .known import DEFAULT_MODEL, REGISTRY, ModelSpec
from .transfer import Limits, download

__all__ = [
    "DEFAULT_MODEL", "REGISTRY", "ChecksumError", "DownloadError", "ModelSpec", "cache_dir", "cached_path",
    "fetch", "get_spec", "import_model", "imported_by_hand",
    "is_cached", "model_names",
]

_BUNDLED_DIR = Path(__file__).parent.parent / "_models"  # where bundled models ship


class DownloadError(ConnectionError):
    """A download failed before a complete file arrived (network, server, timeout)."""


class ChecksumError(ValueError):
    """A file's hash does not match the registry: it is corrupt, truncated or different."""


def model_names() -> list[str]:
    """Registry names, in registry order."""
    return list(REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` called ``name``; ValueError naming the choices if unknown."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown model name {name!r}. Registry names: {', '.join(REGISTRY)}; "
            "or pass the path of a checkpoint file."
        ) from None


def cache_dir() -> Path:
    """Folder for downloaded weights: ``$SEGANY_CACHE`` if set, else the user cache."""
    return cache_root()


def cached_path(name: str) -> Path:
    """Where the file of registry entry ``name`` lives once downloaded or imported
    (for a bundled model: its place inside the installed package)."""
    spec = get_spec(name)
    return (_BUNDLED_DIR if spec.bundled else cache_dir()) / spec.filename


def is_cached(name: str) -> bool:
    """Whether the file of ``name`` is on this machine (its hash is checked by :func:`fetch`)."""
    return cached_path(name).is_file()


def imported_by_hand(name: str) -> bool:
    """Whether the cached file of ``name`` came from ``import_model(..., verify=False)``."""
    return _marker(cached_path(name)).is_file()


def _matches(path: Path, known_hash: str) -> bool:
    alg = require_hash_support(known_hash)
    return file_hash(path, alg).lower() == known_hash.split(":")[-1].lower()


def _marker(dest: Path) -> Path:
    return dest.with_name(dest.name + ".imported.json")


def _accepted_import(dest: Path) -> bool:
    """Whether ``dest`` is a file the user imported with ``verify=False``, unchanged since."""
    try:
        record = json.loads(_marker(dest).read_text())
    except (OSError, ValueError):
        return False
    return record.get("sha256") == file_hash(dest, "sha256")


def fetch(name: str, progress=True, limits: Limits | None = None) -> Path:
    """Return the local path of registry entry ``name``, downloading it if needed.

    A cached file is used when its hash matches the registry (or when it was
    placed there by ``import_model(..., verify=False)`` and is unchanged).
    Otherwise the file is downloaded from the entry's URL, then its mirrors;
    a download only takes the final name after its hash matched.

    Parameters
    ----------
    name : str
        A registry name (see :func:`model_names`).
    progress : bool or tqdm-like, default True
        Show a progress bar (or drive the given one: it needs ``total``,
        ``update``, ``reset`` and ``close``).
    limits : Limits, optional
        The deadline and minimum rate of a download
        (:class:`napari_segany.weights.transfer.Limits`); default: from
        ``$SEGANY_DOWNLOAD_DEADLINE`` and ``$SEGANY_DOWNLOAD_MIN_RATE``, else
        4 hours and 10 kB/s over a minute.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ChecksumError
        (a ValueError) if a download arrived with the wrong hash.
    DownloadError
        (a ConnectionError) if no download completed.
    OSError
        if the cache folder is a file or cannot be written (named as such, not as a network problem).
    """
    spec = get_spec(name)
    require_hash_support(spec.known_hash)
    if spec.bundled:
        return _verified_bundled(spec)
    dest = cache_dir() / spec.filename
    if dest.is_file() and not dest.parent.is_file():
        if _matches(dest, spec.known_hash):
            return dest
        if _accepted_import(dest):
            warnings.warn(
                f"Using {dest}, imported by hand with verify=False; it is not the file the "
                f"registry lists for {name!r}.", stacklevel=2,
            )
            return dest
    check_cache_folder(dest.parent)
    limits = limits or Limits.from_environment()
    failures: list[tuple[str, Exception]] = []
    for url in (spec.url, *spec.mirrors):
        try:
            out = download(url, dest, spec.known_hash, progress=progress, limits=limits)
        except Cancelled:
            raise
        except OSError as err:
            if _cache_problem(err):
                raise
            failures.append((url, err))
        except Exception as err:  # requests errors, a ValueError for a bad hash
            failures.append((url, err))
        else:
            _marker(dest).unlink(missing_ok=True)
            return out
    raise _download_failure(spec, dest, failures)


def check_cache_folder(folder: Path) -> None:
    """Make sure downloads can be written into ``folder``; an OSError that names the cache (and
    ``$SEGANY_CACHE``) otherwise, before any network traffic."""
    where = (f"the cache folder {folder} (SEGANY_CACHE)" if os.environ.get("SEGANY_CACHE")
             else f"the cache folder {folder}")
    hint = "point SEGANY_CACHE at a folder you can write to, or unset it to use the default"
    problem = folder_problem(folder)
    if problem is not None and problem[1] is NotADirectoryError:
        raise NotADirectoryError(f"Cannot download into {where}: {problem[0]} is a file, not a folder; {hint}.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"Cannot create {where} ({err.strerror or err}); {hint}.") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"Cannot write to {where}: it is read-only for this user; {hint}.")


def _cache_problem(err: OSError) -> bool:
    """Whether ``err`` is about writing into the cache (disk full, permissions) rather than the network."""
    import errno

    from requests import RequestException

    if isinstance(err, (RequestException, ConnectionError)):
        return False
    return err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR)


def _verified_bundled(spec: ModelSpec) -> Path:
    """The package's own copy of a bundled model, after checking its hash."""
    path = cached_path(spec.name)
    if not path.is_file():
        raise ChecksumError(
            f"The model file {spec.name!r} that ships with napari-segany is missing ({path}). "
            "Reinstall napari-segany (pip install --force-reinstall napari-segany), or name "
            "another model."
        )
    if not _matches(path, spec.known_hash):
        raise ChecksumError(
            f"The model file {spec.name!r} that ships with napari-segany ({path}) does not match "
            f"its checksum {spec.known_hash}: it was damaged or modified, and is not used. "
            "Reinstall napari-segany, or name another model."
        )
    return path


def _download_failure(spec: ModelSpec, dest: Path, failures: list) -> Exception:
    from requests import RequestException

    bad_hash = [u for u, e in failures
                if isinstance(e, ValueError) and not isinstance(e, RequestException)]
    tried = "; ".join(f"{u}: {type(e).__name__}: {e}" for u, e in failures)
    kept = " The previously cached file was left as it was." if dest.is_file() else ""
    by_hand = (
        f"download the file in a browser and run napari_segany.weights.registry.import_model(path, "
        f"{spec.name!r})"
    )
    if bad_hash:
        return ChecksumError(
            f"The download of {spec.name!r} did not match its known checksum "
            f"({spec.known_hash}); it was deleted and nothing was saved under {dest}.{kept} "
            "The transfer may have been cut short or the server sent a different file: try "
            f"again later, or {by_hand}. Attempts: {tried}"
        )
    return DownloadError(
        f"Could not download {spec.name!r} ({spec.size_text}); nothing was saved under "
        f"{dest}.{kept} Check your internet connection or proxy and try again, or "
        f"{by_hand}. Attempts: {tried}"
    )


def _copy_into_cache(src: Path, dest: Path, before_replace=None) -> str:
    """Copy ``src`` to ``dest`` through a temporary file + os.replace; return its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            while chunk := inp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if before_replace is not None:
            before_replace(digest.hexdigest())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def import_model(path: str | os.PathLike, name: str, *, verify: bool = True) -> Path:
    """Place a local checkpoint file in the cache under registry name ``name``.

    Use this where downloads are blocked: fetch the file by other means, then
    import it once; ``load_model(name)`` finds it afterwards.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.
    name : str
        The registry entry it stands for.
    verify : bool, default True
        Require the file's hash to equal the registry's. With False, the file
        only has to load safely and hold weights of the entry's architecture;
        it is then kept (not re-downloaded) as long as it is unchanged.

    Returns
    -------
    pathlib.Path
        The file's path in the cache.
    """
    spec = get_spec(name)
    if spec.bundled:
        raise ValueError(f"{name!r} ships inside napari-segany and needs no import; load a "
                         "fine-tuned copy by its path with load_model(path).")
    src = Path(path).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"No file at {str(src)!r} to import; check the path.")
    dest = cache_dir() / spec.filename
    if verify:
        alg = require_hash_support(spec.known_hash)
        got = file_hash(src, alg)
        if got.lower() != spec.known_hash.split(":")[-1].lower():
            raise ChecksumError(
                f"{str(src)!r} is not the file the registry lists for {name!r}: its {alg} is "
                f"{got}, expected {spec.known_hash}. If it is a different version or a "
                "fine-tuned model, load it by path with load_model(path), or import it "
                "with verify=False."
            )
    else:
        arch, _ = detect_architecture(read_checkpoint(src))
        if arch != spec.arch:
            raise ValueError(
                f"{str(src)!r} holds {arch} weights but {name!r} is a {spec.arch} model; "
                "pick the matching registry name or load the file by path."
            )
    if dest.exists() and os.path.samefile(src, dest):
        return dest

    def record(sha256: str) -> None:
        marker = _marker(dest)
        if verify:
            marker.unlink(missing_ok=True)
            return
        tmp = marker.with_name(marker.name + ".part")
        tmp.write_text(json.dumps({"name": name, "sha256": sha256, "source": str(src)}))
        os.replace(tmp, marker)

    _copy_into_cache(src, dest, before_replace=record)
    return dest


"""Hashes of files, read in a streaming pass: sha256, md5 and xxh128 (with the ``xxhash``
package), named as pooch names them (``"sha256:..."``, ``"md5:..."``, or a bare sha256 hex string)."""

from __future__ import annotations

import hashlib
import os


def hash_algorithm(known_hash: str) -> str:
    """``"sha256"`` for ``"sha256:..."`` or a bare hex string, ``"md5"`` for ``"md5:..."``, ..."""
    return known_hash.split(":", 1)[0].lower() if ":" in known_hash else "sha256"


def require_hash_support(known_hash: str) -> str:
    """The algorithm of a pooch-style hash string; ValueError if it cannot be computed here."""
    alg = hash_algorithm(known_hash)
    if alg.startswith("xxh"):
        try:
            import xxhash  # noqa: F401
        except ImportError:
            raise ValueError(
                f"Verifying this file needs an {alg} checksum, which requires the xxhash "
                "package: pip install xxhash"
            ) from None
    return alg


def _hasher(alg: str):
    if alg.startswith("xxh"):
        import xxhash

        return getattr(xxhash, alg)()
    try:
        return hashlib.new(alg, usedforsecurity=False)
    except (ValueError, TypeError):
        raise ValueError(f"Unknown hash algorithm {alg!r}; use sha256, md5 or xxh128.") from None


def file_digests(path: str | os.PathLike, algs) -> dict[str, str]:
    """Hex digests of a file for several algorithms, in one streaming pass.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    algs : iterable of str
        Algorithm names such as ``"sha256"``, ``"md5"``, ``"xxh128"``.

    Returns
    -------
    dict of str to str
        Lower-case hex digest per algorithm.
    """
    hashers = {alg: _hasher(require_hash_support(f"{alg}:")) for alg in algs}
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            for h in hashers.values():
                h.update(chunk)
    return {alg: h.hexdigest().lower() for alg, h in hashers.items()}


def file_hash(path: str | os.PathLike, alg: str = "sha256") -> str:
    """Hex digest of a file, read in chunks (``sha256``, ``md5``, ``xxh128``, ...)."""
    return file_digests(path, [alg])[alg]

"""One HTTP download into the cache folder, with limits, written whole or not at all.

The bytes go to ``.NAME.PID.TOKEN.part`` beside the final file; only after the whole body arrived and
its hash matched is it renamed to ``NAME``. A transfer is given up when it takes longer than the
deadline, or when fewer than ``min_rate`` bytes per second arrived over the last
:data:`RATE_WINDOW_S` seconds (a server that trickles a byte every few seconds never trips the
per-read timeout alone). Both limits are arguments, or ``$SEGANY_DOWNLOAD_DEADLINE`` (seconds) and
``$SEGANY_DOWNLOAD_MIN_RATE`` (bytes per second). Parts left by a killed process are removed at the
next download of the same file.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .hashing import file_hash, hash_algorithm

DEADLINE_ENV = "SEGANY_DOWNLOAD_DEADLINE"
MIN_RATE_ENV = "SEGANY_DOWNLOAD_MIN_RATE"
RATE_WINDOW_S = 60.0
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0
CHUNK = 1 << 16


class TransferStopped(ConnectionError):
    """A download given up for being too slow or past its deadline."""


@dataclass(frozen=True)
class Limits:
    """``deadline_s``: the longest a whole transfer may take; ``min_rate``: bytes per second that
    must arrive, averaged over :data:`RATE_WINDOW_S` (0 turns the check off)."""

    deadline_s: float = 4 * 3600.0
    min_rate: float = 10_000.0

    def __post_init__(self):
        for name, value in (("deadline_s", self.deadline_s), ("min_rate", self.min_rate)):
            if not isinstance(value, (int, float)) or value != value or value < 0 or value == float("inf"):
                raise ValueError(f"download {name} must be a finite number >= 0, got {value!r}")
        if self.deadline_s == 0:
            raise ValueError("a download deadline of 0 s would stop every download: give seconds > 0")

    @classmethod
    def from_environment(cls) -> "Limits":
        values = {}
        for env, field in ((DEADLINE_ENV, "deadline_s"), (MIN_RATE_ENV, "min_rate")):
            text = os.environ.get(env, "").strip()
            if text:
                try:
                    values[field] = float(text)
                except ValueError:
                    raise ValueError(f"{env}={text!r} is not a number: give seconds for {DEADLINE_ENV} and "
                                     f"bytes per second for {MIN_RATE_ENV}, or unset it") from None
        try:
            return cls(**values)
        except ValueError as err:
            raise ValueError(f"{err} (from {DEADLINE_ENV} / {MIN_RATE_ENV})") from None


def download(url: str, dest: Path, known_hash: str, *, progress=True, limits: Limits | None = None) -> Path:
    """Fetch ``url`` into ``dest`` (verified against ``known_hash``, e.g. ``"sha256:..."``).

    Raises requests' errors for HTTP and connection failures, :class:`TransferStopped` when a
    limit was reached, and ValueError when the bytes arrived whole but their hash is wrong.
    """
    import requests

    limits = limits or Limits.from_environment()
    remove_stale_parts(dest)
    part = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        with requests.get(url, stream=True, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) as response:
            response.raise_for_status()
            total = int(response.headers.get("content-length") or 0)
            received = _receive(response, part, total, progress, limits)
        if total and received != total:
            raise ConnectionError(f"the server closed the connection after {received} of {total} bytes")
        alg, expected = hash_algorithm(known_hash), known_hash.split(":")[-1].lower()
        digest = file_hash(part, alg)
        if digest != expected:
            raise ValueError(f"the file arrived with {alg} {digest}, not the known {expected}")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def _receive(response, part: Path, total: int, progress, limits: Limits) -> int:
    bar = _progress_bar(progress, total)
    start = time.monotonic()
    seen = deque([(start, 0)])  # (time, bytes so far): the last RATE_WINDOW_S seconds and one before
    received = 0
    read = getattr(response.raw, "read1", None) or response.raw.read
    try:
        with open(part, "wb") as out:
            while True:
                chunk = read(CHUNK)  # read1: whatever arrived, so the limits are checked as bytes come
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                _check_limits(limits, start, received, seen)
            out.flush()
            os.fsync(out.fileno())
    finally:
        if bar is not None:
            bar.close()
    return received


def _check_limits(limits: Limits, start: float, received: int, seen: deque) -> None:
    now = time.monotonic()
    seen.append((now, received))
    while len(seen) > 2 and now - seen[1][0] >= RATE_WINDOW_S:
        seen.popleft()
    if now - start > limits.deadline_s:
        raise TransferStopped(f"the download took longer than its deadline of {limits.deadline_s:.0f} s "
                              f"({received} bytes received); raise {DEADLINE_ENV} for a slow connection")
    t0, b0 = seen[0]
    if limits.min_rate and now - t0 >= RATE_WINDOW_S and (received - b0) / (now - t0) < limits.min_rate:
        rate = (received - b0) / (now - t0)
        raise TransferStopped(f"the server sent {rate:.0f} bytes/s over the last {now - t0:.0f} s, below the "
                              f"minimum of {limits.min_rate:.0f} bytes/s; try again later, or lower "
                              f"{MIN_RATE_ENV}")


def _progress_bar(progress, total: int):
    if progress is True:
        from tqdm.auto import tqdm

        return tqdm(total=total or None, unit="B", unit_scale=True, ncols=79, leave=True)
    if progress:  # a tqdm-like object: total, reset, update, close
        progress.total = total
        progress.reset()
        return progress
    return None


_PART = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]+\.part$")


def remove_stale_parts(dest: Path) -> list[Path]:
    """Delete ``.NAME.PID.TOKEN.part`` files of ``dest`` whose process is gone (killed mid-download)."""
    removed = []
    for path in dest.parent.glob(f".{dest.name}.*.part"):
        match = _PART.match(path.name)
        if match and match["name"] == dest.name and not _alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

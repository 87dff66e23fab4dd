"""Downloads that misbehave, against the real HTTP server of test_download: a server that trickles,
one past the deadline, a process killed mid-download, and cache folders that cannot take the file.
Each is reported as what it is, and nothing is left half-written."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from napari_segany.weights import registry, transfer
from napari_segany.weights.registry import DownloadError, fetch
from napari_segany.weights.transfer import Limits
import test_download
from test_download import add_entry, names

server, cache = test_download.server, test_download.cache  # the same fixtures


def test_a_trickling_server_is_given_up_on(cache, server, monkeypatch):
    monkeypatch.setattr(transfer, "RATE_WINDOW_S", 0.5)
    add_entry(monkeypatch, server, "slow", os.urandom(5_000), mode="trickle")
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"bytes/s over the last .* below the minimum of 1000"):
        fetch("slow", progress=False, limits=Limits(min_rate=1000))
    assert time.monotonic() - start < 10
    assert names(cache) == []  # no part left behind


def test_a_download_past_its_deadline_stops(cache, server, monkeypatch):
    add_entry(monkeypatch, server, "long", os.urandom(5_000), mode="trickle")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="longer than its deadline of 1 s"):
        fetch("long", progress=False, limits=Limits(deadline_s=1.0, min_rate=0))
    assert 1.0 <= time.monotonic() - start < 10
    assert names(cache) == []


def test_limits_come_from_the_environment_and_are_checked(monkeypatch):
    monkeypatch.setenv(transfer.DEADLINE_ENV, "90")
    monkeypatch.setenv(transfer.MIN_RATE_ENV, "0")
    assert Limits.from_environment() == Limits(deadline_s=90.0, min_rate=0.0)
    monkeypatch.setenv(transfer.DEADLINE_ENV, "soon")
    with pytest.raises(ValueError, match="SEGANY_DOWNLOAD_DEADLINE='soon' is not a number"):
        Limits.from_environment()
    for bad in ("0", "-5", "nan", "inf"):
        monkeypatch.setenv(transfer.DEADLINE_ENV, bad)
        with pytest.raises(ValueError, match="deadline"):
            Limits.from_environment()


def test_a_cache_that_is_a_file_is_named_as_such(tmp_path, server, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine")
    monkeypatch.setenv("SEGANY_CACHE", str(blocker))
    add_entry(monkeypatch, server, "any", b"x" * 100)
    server.hits.clear()
    with pytest.raises(NotADirectoryError, match=r"SEGANY_CACHE.*is a file, not a folder"):
        fetch("any", progress=False)
    assert server.hits == [] and blocker.read_text() == "mine"  # nothing sent, nothing touched


def test_a_cache_that_cannot_be_created_is_named_as_such(server, monkeypatch):
    monkeypatch.setenv("SEGANY_CACHE", "/proc/segany-cache")  # not creatable, not even by root
    add_entry(monkeypatch, server, "any", b"x" * 100)
    server.hits.clear()
    with pytest.raises(PermissionError, match="Cannot create the cache folder /proc/segany-cache"):
        fetch("any", progress=False)
    assert server.hits == []


def test_a_download_killed_mid_way_is_cleaned_up_next_time(cache, server, monkeypatch):
    body = os.urandom(20_000)
    spec = add_entry(monkeypatch, server, "killed", body, mode="trickle")
    code = (f"from napari_segany.weights import registry\n"
            f"registry.REGISTRY['killed'] = registry.ModelSpec('killed', 'vit_b', {spec.url!r}, 'killed.pth', "
            f"{spec.known_hash!r}, {len(body)})\n"
            "registry.fetch('killed', progress=False)\n")
    child = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, SEGANY_CACHE=str(cache)))
    try:
        deadline = time.monotonic() + 60
        while not [n for n in names(cache) if n.endswith(".part")] and time.monotonic() < deadline:
            time.sleep(0.05)
        (part,) = [n for n in names(cache) if n.endswith(".part")]
        assert part.startswith(f".killed.pth.{child.pid}.")
    finally:
        child.kill()
        child.wait()
    assert part in names(cache)  # SIGKILL gives no chance to clean up
    mine = cache / ".killed.pth.notes"  # not ours to delete, even beside the file
    mine.write_text("keep")
    server.routes["/killed"] = (body, "ok")
    assert fetch("killed", progress=False).read_bytes() == body
    assert names(cache) == [".killed.pth.notes", "killed.pth"]


def test_a_cancelled_download_stays_a_cancellation(cache, server, monkeypatch):
    from napari_segany.engine.predictor import Cancelled

    add_entry(monkeypatch, server, "stop", os.urandom(300_000))

    class Bar:
        total = 0

        def reset(self):
            pass

        def update(self, n):
            raise Cancelled("download was cancelled")

        def close(self):
            pass

    with pytest.raises(Cancelled):
        fetch("stop", progress=Bar())
    assert names(cache) == [] and not registry.is_cached("stop")

"""Downloads, verification and the cache, against a real HTTP server on 127.0.0.1.

Temporary registry entries point at the local server; pooch and requests do
the real transfers. Checkpoints served here are real but tiny: every tensor
is a zero-stride view of one value, so a full vit_b file is a few hundred KB.
"""

from __future__ import annotations

import hashlib
import os
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pooch
import pytest
import torch

from napari_segany.weights import registry
from napari_segany.model import ARCHITECTURES, build_sam
from napari_segany.weights.registry import ChecksumError, DownloadError, fetch, import_model
from napari_segany.weights.load import load_model


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (body, mode)``; mode says how to misbehave."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.server.hits.append(self.path)
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        body, mode = self.server.routes[self.path]
        self.send_response(200)
        if mode == "trickle":  # a byte at a time, slowly: never idle long enough for a read timeout
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)):
                try:
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up
                    return
                time.sleep(self.server.trickle_delay)
            return
        if mode == "ok":
            self.send_header("Content-Length", str(len(body)))
        elif mode == "short":  # promises more bytes than it sends
            self.send_header("Content-Length", str(len(body) + 4096))
        self.end_headers()
        self.wfile.write(body if mode == "ok" else body[: len(body) // 2])
        self.close_connection = True  # "cut": no length, connection closed half way

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self):  # skip HTTPServer's reverse DNS lookup of the host name
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


@pytest.fixture(scope="module")
def server():
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.routes, srv.hits, srv.trickle_delay = {}, [], 0.02
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch, server) -> Path:
    monkeypatch.setenv("SEGANY_CACHE", str(tmp_path / "cache"))
    server.routes.clear()
    server.hits.clear()
    return tmp_path / "cache"


def add_entry(monkeypatch, server, name, body, *, mode="ok", known_hash=None, arch="vit_b",
              mirrors=()):
    """Register ``name`` in a temporary registry entry served by ``server``."""
    server.routes[f"/{name}"] = (body, mode)
    host, port = server.server_address
    spec = registry.ModelSpec(
        name, arch, f"http://{host}:{port}/{name}", f"{name}.pth",
        known_hash or "sha256:" + hashlib.sha256(body).hexdigest(), len(body),
        mirrors=tuple(mirrors),
    )
    monkeypatch.setitem(registry.REGISTRY, name, spec)
    return spec


def tiny_checkpoint(arch: str) -> bytes:
    """A loadable checkpoint of ``arch`` whose tensors are zero-stride views."""
    with torch.device("meta"):
        shapes = build_sam(arch).state_dict()
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"segany_tiny_{arch}_{os.getpid()}.pth"
    torch.save({k: torch.full((), 0.5, dtype=v.dtype).expand(v.shape) for k, v in shapes.items()},
               path)
    data = path.read_bytes()
    path.unlink()
    return data


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


# --- downloads ------------------------------------------------------------------------------


def test_good_download_lands_in_cache_once(cache, server, monkeypatch):
    body = os.urandom(300_000)
    add_entry(monkeypatch, server, "good", body)
    assert not registry.is_cached("good")
    path = fetch("good", progress=True)
    assert path == cache / "good.pth" == registry.cached_path("good")
    assert path.read_bytes() == body and names(cache) == ["good.pth"]
    assert fetch("good", progress=False) == path
    assert server.hits == ["/good"]  # the verified cached file was reused


@pytest.mark.parametrize(("mode", "error"), [("short", DownloadError), ("cut", ChecksumError)])
def test_truncated_download_leaves_nothing(cache, server, monkeypatch, mode, error):
    # "short": Content-Length larger than the body; "cut": no length, closed half way
    add_entry(monkeypatch, server, "trunc", os.urandom(200_000), mode=mode)
    with pytest.raises(error, match="nothing was saved under"):
        fetch("trunc", progress=False)
    assert names(cache) == []  # no final file, no temporary left behind


def test_wrong_hash_is_a_value_error_and_leaves_nothing(cache, server, monkeypatch):
    add_entry(monkeypatch, server, "bad", b"x" * 50_000, known_hash="sha256:" + "0" * 64)
    with pytest.raises(ValueError, match="did not match its known checksum") as err:
        fetch("bad", progress=False)
    assert isinstance(err.value, ChecksumError)
    assert names(cache) == []


def test_bad_download_does_not_replace_cached_file(cache, server, monkeypatch):
    new = os.urandom(100_000)
    add_entry(monkeypatch, server, "upd", new, mode="short")  # registry now expects `new`
    cache.mkdir(parents=True)
    old = b"previous version" * 1000
    (cache / "upd.pth").write_bytes(old)
    with pytest.raises((DownloadError, ChecksumError), match="left as it was"):
        fetch("upd", progress=False)
    assert (cache / "upd.pth").read_bytes() == old and names(cache) == ["upd.pth"]
    server.routes["/upd"] = (new, "ok")  # once the server behaves, the update lands
    assert fetch("upd", progress=False).read_bytes() == new


def test_mirror_is_tried_after_primary_fails(cache, server, monkeypatch):
    body = os.urandom(10_000)
    host, port = server.server_address
    add_entry(monkeypatch, server, "mirrored", body, mirrors=[f"http://{host}:{port}/copy"])
    del server.routes["/mirrored"]  # primary answers 404
    server.routes["/copy"] = (body, "ok")
    assert fetch("mirrored", progress=False).read_bytes() == body
    assert server.hits == ["/mirrored", "/copy"]


def test_unreachable_server_is_a_connection_error(cache, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    spec = registry.ModelSpec("gone", "vit_b", f"http://127.0.0.1:{port}/x", "gone.pth",
                              "sha256:" + "1" * 64)
    monkeypatch.setitem(registry.REGISTRY, "gone", spec)
    with pytest.raises(ConnectionError, match="Check your internet connection") as err:
        fetch("gone", progress=False)
    assert isinstance(err.value, DownloadError) and names(cache) == []


@pytest.mark.parametrize("alg", ["md5", "xxh128"])
def test_other_hash_algorithms(cache, server, monkeypatch, alg):
    body = os.urandom(20_000)
    if alg == "xxh128":
        xxhash = pytest.importorskip("xxhash")
        digest = xxhash.xxh128(body).hexdigest()
    else:
        digest = hashlib.md5(body).hexdigest()
    add_entry(monkeypatch, server, alg, body, known_hash=f"{alg}:{digest}")
    assert fetch(alg, progress=False).read_bytes() == body


def test_xxh128_without_xxhash_says_what_to_install(cache, server, monkeypatch):
    add_entry(monkeypatch, server, "xx", b"data", known_hash="xxh128:" + "a" * 32)
    monkeypatch.setitem(sys.modules, "xxhash", None)  # as if not installed
    with pytest.raises(ValueError, match="pip install xxhash"):
        fetch("xx", progress=False)
    assert server.hits == []


def test_segany_cache_env_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGANY_CACHE", str(tmp_path / "elsewhere"))
    assert registry.cache_dir() == tmp_path / "elsewhere"
    assert registry.cached_path("vit_b") == tmp_path / "elsewhere" / "sam_vit_b_01ec64.pth"
    monkeypatch.delenv("SEGANY_CACHE")
    assert registry.cache_dir() == Path(pooch.os_cache("napari-segany"))


def test_unknown_name_lists_registry():
    with pytest.raises(ValueError, match="Unknown model name 'nope'.*vit_b, vit_l"):
        fetch("nope")


# --- registry name -> model ---------------------------------------------------------------


def test_load_model_downloads_verifies_and_loads(cache, server, monkeypatch):
    body = tiny_checkpoint("vit_b")
    spec = add_entry(monkeypatch, server, "tiny_b", body)
    model = load_model("tiny_b", device="cpu", progress=False)
    assert (model.arch, model.info.name, model.info.preprocess) == ("vit_b", "tiny_b", "sam")
    assert model.info.sha256 == spec.known_hash.split(":")[1]
    assert model.info.source == str(cache / "tiny_b.pth")
    assert float(model.image_encoder.pos_embed.detach()[0, 5, 7, 9]) == 0.5
    load_model("tiny_b", device="cpu")
    assert server.hits == ["/tiny_b"]


def test_registered_file_of_wrong_architecture_is_reported(cache, server, monkeypatch):
    add_entry(monkeypatch, server, "liar", tiny_checkpoint("vit_l"), arch="vit_b")
    with pytest.raises(ValueError, match="holds vit_l weights, not vit_b"):
        load_model("liar", device="cpu", progress=False)


# --- import_model ---------------------------------------------------------------------------


def test_import_verified_file(cache, server, monkeypatch, tmp_path):
    body = os.urandom(50_000)
    add_entry(monkeypatch, server, "offline", body)
    src = tmp_path / "downloaded_by_hand.pth"
    src.write_bytes(body)
    dest = import_model(src, "offline")
    assert dest == cache / "offline.pth" and dest.read_bytes() == body
    assert names(cache) == ["offline.pth"] and not registry.imported_by_hand("offline")
    assert fetch("offline", progress=False) == dest and server.hits == []


def test_import_rejects_wrong_hash_and_missing_file(cache, server, monkeypatch, tmp_path):
    add_entry(monkeypatch, server, "strict", b"expected bytes")
    src = tmp_path / "other.pth"
    src.write_bytes(b"other bytes")
    with pytest.raises(ChecksumError, match="is not the file the registry lists for 'strict'"):
        import_model(src, "strict")
    with pytest.raises(FileNotFoundError, match="No file at"):
        import_model(tmp_path / "absent.pth", "strict")
    assert names(cache) == []


def test_import_unverified_checks_architecture_and_is_kept(cache, server, monkeypatch, tmp_path):
    add_entry(monkeypatch, server, "custom_b", b"the official bytes")
    wrong = tmp_path / "vit_l.pth"
    wrong.write_bytes(tiny_checkpoint("vit_l"))
    with pytest.raises(ValueError, match="holds vit_l weights but 'custom_b' is a vit_b model"):
        import_model(wrong, "custom_b", verify=False)
    src = tmp_path / "finetuned_b.pth"
    src.write_bytes(tiny_checkpoint("vit_b"))
    dest = import_model(src, "custom_b", verify=False)
    assert dest.read_bytes() == src.read_bytes() and registry.imported_by_hand("custom_b")
    assert names(cache) == ["custom_b.pth", "custom_b.pth.imported.json"]
    with pytest.warns(UserWarning, match="imported by hand with verify=False"):
        assert fetch("custom_b", progress=False) == dest
    assert server.hits == []  # the user's file is not replaced by a download
    with pytest.warns(UserWarning, match="imported by hand"):
        model = load_model("custom_b", device="cpu")
    assert model.info.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()


# --- the shipped registry table -------------------------------------------------------------


def test_registry_table_is_consistent():
    filenames = [s.filename for s in registry.REGISTRY.values()]
    assert len(set(filenames)) == len(filenames)
    for name, spec in registry.REGISTRY.items():
        assert spec.name == name and spec.arch in ARCHITECTURES
        assert spec.preprocess in ("sam", "medsam")
        alg, _, digest = spec.known_hash.partition(":")
        assert alg in ("sha256", "md5", "xxh128") and len(digest) in (64, 32)
        if spec.bundled:  # shipped in the package, never downloaded
            assert spec.url == "" and not spec.mirrors and alg == "sha256"
        else:
            assert all(u.startswith("https://") for u in (spec.url, *spec.mirrors))
    assert registry.REGISTRY["medsam_vit_b"].preprocess == "medsam"
    assert registry.REGISTRY["vit_b"].size_text == "375 MB"
    assert [s.name for s in registry.REGISTRY.values() if s.bundled] == [registry.DEFAULT_MODEL]

"""The download manager against a real HTTP server on 127.0.0.1: resume, retry, verify, repair, offline."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dclip_desktop.zoo import download, registry


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients that hang up (cancel) are expected here
        pass


class FakeHub:
    """Serves `files` ({url path: bytes}) with Range support; can cut connections short."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, list[int]] = {}  # path -> byte counts at which successive responses stop
        self.headers: dict[str, dict] = {}
        self.requests: list[tuple[str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's naming
                path = self.path.split("?")[0]
                hub.requests.append((path, self.headers.get("Range")))
                data = hub.files.get(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if m:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                for k, v in hub.headers.get(path, {}).items():
                    self.send_header(k, v)
                self.end_headers()
                cuts = hub.cut_after.get(path)
                if cuts:
                    n = cuts.pop(0)
                    self.wfile.write(body[:n])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client cancelled
                    pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.delenv("DCLIP_OFFLINE", raising=False)
    h = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", h.url)
    yield h
    h.close()


def payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 131 + seed * 7 + i // 251) % 256 for i in range(n))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_hf_file_url_uses_endpoint(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert download.hf_file_url("google/ddpm-ema-church-256", "config.json") == (
        "https://huggingface.co/google/ddpm-ema-church-256/resolve/main/config.json"
    )
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/")
    assert (
        download.hf_file_url("a/b", "x y.bin", "abc123") == "http://127.0.0.1:9/a/b/resolve/abc123/x%20y.bin"
    )


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DCLIP_CACHE_DIR", str(tmp_path / "c"))
    assert download.cache_root() == tmp_path / "c"
    monkeypatch.delenv("DCLIP_CACHE_DIR")
    assert download.cache_root().name == "models" and "dclip-desktop" in str(download.cache_root())


def test_fetch_records_sha_and_reports_progress(hub, tmp_path):
    data = payload(300_000)
    hub.files["/f.bin"] = data
    seen = []
    out = download.fetch(hub.url + "/f.bin", tmp_path / "f.bin", progress=lambda d, t: seen.append((d, t)))
    assert out.read_bytes() == data
    assert download.recorded_sha256(out) == sha(data)
    assert seen[-1] == (len(data), len(data))
    assert not (tmp_path / "f.bin.part").exists()
    # no pin: the sha256 recorded at this first download is what it is checked against
    assert download.verify(out) == (True, f"f.bin: first-use (sha256 {sha(data)[:12]}… as first recorded; "
                                          "no published checksum)")
    assert download.recorded_trust(out) == download.FIRST_USE
    # already there: no second request
    n = len(hub.requests)
    download.fetch(hub.url + "/f.bin", out, sha256=sha(data))
    assert len(hub.requests) == n


def test_interrupted_download_resumes_with_range(hub, tmp_path):
    data = payload(2_500_000, seed=1)
    hub.files["/big.bin"] = data
    hub.cut_after["/big.bin"] = [700_000, 400_000]  # two broken responses, then a full one
    out = download.fetch(hub.url + "/big.bin", tmp_path / "big.bin", sha256=sha(data), retries=3, backoff=0)
    assert out.read_bytes() == data
    ranges = [r for p, r in hub.requests if p == "/big.bin"]
    assert ranges[0] is None and ranges[1] == "bytes=700000-" and ranges[2] == "bytes=1100000-"
    assert download.recorded_sha256(out) == sha(data)


def test_preexisting_part_file_resumes(hub, tmp_path):
    data = payload(200_000, seed=2)
    hub.files["/p.bin"] = data
    (tmp_path / "p.bin.part").write_bytes(data[:123_456])
    out = download.fetch(hub.url + "/p.bin", tmp_path / "p.bin", sha256=sha(data))
    assert out.read_bytes() == data
    assert hub.requests == [("/p.bin", "bytes=123456-")]


def test_gives_up_after_retries_and_keeps_part(hub, tmp_path):
    data = payload(100_000)
    hub.files["/x.bin"] = data
    hub.cut_after["/x.bin"] = [10_000, 10_000, 10_000]
    with pytest.raises(download.DownloadError, match="connection"):
        download.fetch(hub.url + "/x.bin", tmp_path / "x.bin", retries=2, backoff=0)
    assert (tmp_path / "x.bin.part").stat().st_size == 30_000
    assert not (tmp_path / "x.bin").exists()
    out = download.fetch(hub.url + "/x.bin", tmp_path / "x.bin", backoff=0)  # resumes the rest
    assert out.read_bytes() == data and hub.requests[-1] == ("/x.bin", "bytes=30000-")


def test_wrong_sha_is_rejected_and_nothing_installed(hub, tmp_path):
    hub.files["/w.bin"] = payload(5000)
    with pytest.raises(download.ChecksumError, match="expected"):
        download.fetch(hub.url + "/w.bin", tmp_path / "w.bin", sha256="0" * 64)
    assert not (tmp_path / "w.bin").exists() and not (tmp_path / "w.bin.part").exists()


def test_hub_linked_etag_is_checked(hub, tmp_path):
    hub.files["/e.bin"] = payload(5000)
    hub.headers["/e.bin"] = {"X-Linked-Etag": '"' + "a" * 64 + '"'}
    with pytest.raises(download.ChecksumError):
        download.fetch(hub.url + "/e.bin", tmp_path / "e.bin")


def test_404_is_not_retried(hub, tmp_path):
    with pytest.raises(download.DownloadError) as info:
        download.fetch(hub.url + "/nope", tmp_path / "nope", retries=3, backoff=0)
    assert info.value.status == 404 and len(hub.requests) == 1


def test_cancel_keeps_part(hub, tmp_path):
    from dclip_desktop.core.cancel import Cancelled, CancelToken

    hub.files["/c.bin"] = payload(3_000_000)
    token = CancelToken()

    def progress(done, total):
        if done > 0:
            token.cancel()

    with pytest.raises(Cancelled):
        download.fetch(hub.url + "/c.bin", tmp_path / "c.bin", progress=progress, cancel=token)
    assert not (tmp_path / "c.bin").exists()


def _fake_repo(hub, repo_id: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        hub.files[f"/{repo_id}/resolve/main/{name}"] = data


@pytest.fixture
def fake_base(hub):
    spec = registry.BaseSpec(
        id="test-fake",
        title="fake",
        domain="test",
        arch="ddpm",
        resolution=8,
        repo_id="acme/fake-ddpm",
        files=[
            registry.FileSpec("config.json", weights=False),
            registry.FileSpec(
                "diffusion_pytorch_model.safetensors", alternative="diffusion_pytorch_model.bin"
            ),
        ],
    )
    registry.register_base(spec, replace=True)
    yield spec
    registry._BASES.pop(spec.id, None)


def test_model_download_falls_back_to_alternative_and_verifies(hub, fake_base):
    weights = payload(50_000, seed=3)
    _fake_repo(hub, "acme/fake-ddpm", {"config.json": b"{}", "diffusion_pytorch_model.bin": weights})
    assert not download.is_installed("test-fake")
    folder = download.download("test-fake")
    assert folder == download.model_dir("test-fake")
    assert (folder / "diffusion_pytorch_model.bin").read_bytes() == weights
    assert download.is_installed("test-fake")
    rows = download.verify_model("test-fake")
    assert [ok for _, ok, _ in rows] == [True, True]


def test_corrupted_file_detected_and_repaired(hub, fake_base):
    weights = payload(80_000, seed=4)
    _fake_repo(hub, "acme/fake-ddpm", {"config.json": b"{}", "diffusion_pytorch_model.safetensors": weights})
    folder = download.download("test-fake")
    path = folder / "diffusion_pytorch_model.safetensors"
    with open(path, "r+b") as f:  # flip a byte in the middle
        f.seek(40_000)
        b = f.read(1)
        f.seek(40_000)
        f.write(bytes([b[0] ^ 0xFF]))
    ok, reason = download.verify(path)
    assert not ok and "mismatch" in reason
    rows = download.verify_model("test-fake")
    assert [ok for _, ok, _ in rows] == [True, False]
    summary = download.verify_base("test-fake")  # the GUI's verify: repairs
    assert "repaired" in summary
    assert path.read_bytes() == weights and download.verify(path)[0]
    # repair() on its own: delete and refetch
    path.write_bytes(b"junk")
    download.repair(download.hf_file_url("acme/fake-ddpm", path.name), path)
    assert path.read_bytes() == weights


def test_offline_never_opens_a_socket(monkeypatch, tmp_path):
    monkeypatch.setenv("DCLIP_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")

    def no_network(*args, **kwargs):
        raise AssertionError("offline mode opened a socket")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(download.MissingWeightsError) as info:
        download.download("church")
    msg = str(info.value)
    assert "config.json" in msg or "diffusion_pytorch_model" in msg
    assert "dclip models download church" in msg
    with pytest.raises(
        download.MissingWeightsError,
        match="20180402-114759-vggface2.pt.*dclip models download facenet-vggface2",
    ):
        download.ensure("facenet-vggface2")
    monkeypatch.delenv("DCLIP_OFFLINE")
    with pytest.raises(download.MissingWeightsError, match="x.bin"):  # the argument alone is enough
        download.fetch("http://127.0.0.1:9/x.bin", tmp_path / "x.bin", offline=True, model_id="church")
    assert not os.listdir(tmp_path)


def test_offline_uses_cached_files(hub, fake_base, monkeypatch):
    _fake_repo(
        hub, "acme/fake-ddpm", {"config.json": b"{}", "diffusion_pytorch_model.safetensors": b"w" * 10}
    )
    download.download("test-fake")
    n = len(hub.requests)
    monkeypatch.setenv("DCLIP_OFFLINE", "1")
    assert download.ensure("test-fake") == download.model_dir("test-fake")
    assert len(hub.requests) == n

"""vggish.download against a real HTTP server on 127.0.0.1 (never any other address)."""

from __future__ import annotations

import fcntl
import hashlib
import http.server
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from safeio import cache
from vggish import download, params

PAYLOAD = random.Random(0).randbytes(300_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
DROP_AFTER = 100_000  # bytes the "drop" server sends before closing the connection


@dataclass
class Behaviour:
    """How the test server answers; `requests` records the Range header of every GET (None when absent)."""

    mode: str = "range"  # range | ignore_range | drop | drop_always | corrupt | short | long | no_length
    requests: list[str | None] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        behaviour = self.server.behaviour  # type: ignore[attr-defined]
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/file")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path != "/file":
            self.send_error(404)
            return
        range_header = self.headers.get("Range")
        behaviour.requests.append(range_header)
        mode = behaviour.mode
        body = PAYLOAD
        if mode == "corrupt":
            body = bytes([PAYLOAD[0] ^ 0xFF]) + PAYLOAD[1:]
        elif mode == "short":
            body = PAYLOAD[:-1000]
        elif mode == "long":
            body = PAYLOAD + b"extra"
        first_drop = mode == "drop" and len(behaviour.requests) == 1
        if range_header and mode not in ("ignore_range", "no_length") and not first_drop:
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        if mode != "no_length":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if first_drop or mode == "drop_always":
            self.wfile.write(body[:DROP_AFTER])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@dataclass
class Server:
    url: str
    behaviour: Behaviour


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxies (requests must go straight to 127.0.0.1) and a private cache directory."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(download.ENV_CHECKPOINT, raising=False)
    monkeypatch.setenv(cache.ENV_HOME, str(tmp_path / "cache"))


@pytest.fixture
def server() -> Iterator[Server]:
    behaviour = Behaviour()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.behaviour = behaviour  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", behaviour)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _get(url: str, dest: Path, *, progress: bool = False, retries: int = 3) -> Path:
    return download.download_file(url, dest, expected_size=len(PAYLOAD), expected_sha256=PAYLOAD_SHA256,
                                  progress=progress, timeout=2.0, retries=retries)


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _assert_hint(message: str, url: str) -> None:
    assert url in message
    assert "--vggish-checkpoint" in message
    assert download.ENV_CHECKPOINT in message
    assert "curl -L -o" in message


def test_full_download_is_verified_and_renamed(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "file.bin"
    assert _get(server.url + "/file", dest) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not _part(dest).exists()
    assert server.behaviour.requests == [None]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin", "file.bin.lock"]


def test_verified_existing_file_is_not_downloaded_again(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    dest.write_bytes(PAYLOAD)
    _get(server.url + "/file", dest)
    assert server.behaviour.requests == []


@pytest.mark.parametrize("leftover", ["a finished file with wrong content", "a part longer than the file"])
def test_a_wrong_leftover_is_downloaded_again_whole(leftover: str, server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    if leftover.startswith("a finished file"):
        dest.write_bytes(bytes(len(PAYLOAD)))
    else:
        _part(dest).write_bytes(PAYLOAD + b"junk")
    _get(server.url + "/file", dest)
    assert dest.read_bytes() == PAYLOAD
    assert server.behaviour.requests == [None]


def test_interruption_is_resumed_with_a_range_request(server: Server, tmp_path: Path) -> None:
    server.behaviour.mode = "drop"
    dest = tmp_path / "file.bin"
    _get(server.url + "/file", dest)
    assert dest.read_bytes() == PAYLOAD
    assert server.behaviour.requests == [None, f"bytes={DROP_AFTER}-"]
    assert not _part(dest).exists()


def test_interruption_without_retries_keeps_the_part(server: Server, tmp_path: Path) -> None:
    server.behaviour.mode = "drop"
    dest = tmp_path / "file.bin"
    with pytest.raises(download.DownloadError, match="interrupted") as info:
        _get(server.url + "/file", dest, retries=0)
    _assert_hint(str(info.value), server.url + "/file")
    assert not dest.exists()
    assert _part(dest).read_bytes() == PAYLOAD[:DROP_AFTER]
    _get(server.url + "/file", dest)
    assert dest.read_bytes() == PAYLOAD
    assert server.behaviour.requests == [None, f"bytes={DROP_AFTER}-"]


def test_retries_are_bounded(server: Server, tmp_path: Path) -> None:
    server.behaviour.mode = "drop_always"
    dest = tmp_path / "file.bin"
    with pytest.raises(download.DownloadError, match="interrupted"):
        _get(server.url + "/file", dest, retries=1)
    assert server.behaviour.requests == [None, f"bytes={DROP_AFTER}-"]
    assert _part(dest).stat().st_size == 2 * DROP_AFTER


def test_server_ignoring_range_restarts_cleanly(server: Server, tmp_path: Path) -> None:
    server.behaviour.mode = "ignore_range"
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(PAYLOAD[:1234])
    _get(server.url + "/file", dest)
    assert dest.read_bytes() == PAYLOAD
    assert server.behaviour.requests == ["bytes=1234-"]


def test_existing_part_is_rehashed_on_resume(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(bytes(5000))  # wrong bytes: only the re-hash can notice
    with pytest.raises(download.DownloadError, match="sha256 mismatch"):
        _get(server.url + "/file", dest)
    assert server.behaviour.requests == ["bytes=5000-"]
    assert not dest.exists()
    assert not _part(dest).exists()


def test_complete_part_is_verified_without_network(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(PAYLOAD)
    _get(server.url + "/file", dest)
    assert dest.read_bytes() == PAYLOAD
    assert server.behaviour.requests == []


def test_checksum_mismatch_raises_and_leaves_nothing(server: Server, tmp_path: Path) -> None:
    server.behaviour.mode = "corrupt"
    dest = tmp_path / "file.bin"
    with pytest.raises(download.DownloadError) as info:
        _get(server.url + "/file", dest)
    message = str(info.value)
    assert "sha256 mismatch" in message
    assert PAYLOAD_SHA256 in message
    assert hashlib.sha256(bytes([PAYLOAD[0] ^ 0xFF]) + PAYLOAD[1:]).hexdigest() in message
    _assert_hint(message, server.url + "/file")
    assert not dest.exists()
    assert not _part(dest).exists()


@pytest.mark.parametrize("mode, got", [("short", len(PAYLOAD) - 1000), ("long", len(PAYLOAD) + 5)])
def test_size_mismatch_raises_expected_vs_got(server: Server, tmp_path: Path, mode: str, got: int) -> None:
    server.behaviour.mode = mode
    dest = tmp_path / "file.bin"
    with pytest.raises(download.DownloadError, match="size mismatch") as info:
        _get(server.url + "/file", dest)
    assert f"expected {len(PAYLOAD)} bytes, the server reports {got}" in str(info.value)
    assert not dest.exists()
    assert not _part(dest).exists()


def test_size_mismatch_on_resume_via_416(server: Server, tmp_path: Path) -> None:
    server.behaviour.mode = "short"
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(PAYLOAD[: len(PAYLOAD) - 500])  # beyond the end of the short file
    with pytest.raises(download.DownloadError, match="size mismatch"):
        _get(server.url + "/file", dest)
    assert not _part(dest).exists()


def test_body_longer_than_expected_without_content_length(server: Server, tmp_path: Path) -> None:
    server.behaviour.mode = "no_length"
    dest = tmp_path / "file.bin"
    with pytest.raises(download.DownloadError, match="size mismatch"):
        download.download_file(server.url + "/file", dest, expected_size=len(PAYLOAD) - 1,
                               expected_sha256=PAYLOAD_SHA256, progress=False, timeout=2.0)
    assert not _part(dest).exists()


def test_no_content_length_and_redirect(server: Server, tmp_path: Path) -> None:
    server.behaviour.mode = "no_length"
    dest = tmp_path / "file.bin"
    _get(server.url + "/redirect", dest)
    assert dest.read_bytes() == PAYLOAD


def test_range_header_survives_a_redirect(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(PAYLOAD[:777])
    _get(server.url + "/redirect", dest, progress=True)
    assert dest.read_bytes() == PAYLOAD
    assert server.behaviour.requests == ["bytes=777-"]


def test_http_error_names_the_status_and_url(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    with pytest.raises(download.DownloadError, match="HTTP 404") as info:
        _get(server.url + "/missing", dest)
    _assert_hint(str(info.value), server.url + "/missing")
    assert not dest.exists()
    assert not _part(dest).exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_offline_fails_fast_with_a_helpful_message(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/vggish_model.ckpt"
    dest = tmp_path / "vggish_model.ckpt"
    started = time.monotonic()
    with pytest.raises(download.DownloadError) as info:
        download.download_file(url, dest, expected_size=10, expected_sha256="0" * 64, progress=False)
    assert time.monotonic() - started < 5
    _assert_hint(str(info.value), url)
    assert not dest.exists()
    assert not _part(dest).exists()


def test_unresponsive_server_times_out(tmp_path: Path) -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/file"
        started = time.monotonic()
        with pytest.raises(download.DownloadError, match="cannot reach") as info:
            download.download_file(url, tmp_path / "f", expected_size=10, expected_sha256="0" * 64,
                                    progress=False, timeout=0.3)
        assert time.monotonic() - started < 3
    _assert_hint(str(info.value), url)


def test_waits_for_a_concurrent_download_holding_the_lock(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    result: list[object] = []
    with open(dest.with_name(dest.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: result.append(_get(server.url + "/file", dest)))
        worker.start()
        worker.join(0.3)
        assert worker.is_alive() and not result and server.behaviour.requests == []
        dest.write_bytes(PAYLOAD)  # the other "process" finishes its download
        fcntl.flock(lock, fcntl.LOCK_UN)
    worker.join(5)
    assert result == [dest]
    assert server.behaviour.requests == []  # it saw the finished file and did not download again


def test_download_error_pickles() -> None:
    import pickle

    error = download.DownloadError("boom", "http://127.0.0.1:1/x", Path("/tmp/x"))
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_default_download_error_mentions_the_release() -> None:
    message = str(download.DownloadError("boom"))
    _assert_hint(message, params.CHECKPOINT_URL)
    assert params.CHECKPOINT_SHA256 in message


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(cache.ENV_HOME, str(tmp_path / "ah"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "ah"
    monkeypatch.delenv(cache.ENV_HOME)
    assert cache.cache_dir() == tmp_path / "xdg" / "audiotag"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "audiotag"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "audiotag"
    assert not (tmp_path / "home").exists()
    assert cache.cache_dir(create=True).is_dir()
    assert download.default_checkpoint_path() == cache.cache_dir() / "vggish_model.ckpt"


def _fake_release(path: Path) -> Path:
    """A sparse file with the released checkpoint's size (its content is never read here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(params.CHECKPOINT_SIZE_BYTES)
    return path


@pytest.fixture
def fake_download(monkeypatch: pytest.MonkeyPatch, server: Server) -> list[Path]:
    """Point download_checkpoint at the local server and the small payload; records destinations."""
    calls: list[Path] = []

    def fake(dest: Path, *, progress: bool = True) -> Path:
        calls.append(Path(dest))
        return download.download_file(server.url + "/file", dest, expected_size=len(PAYLOAD),
                                      expected_sha256=PAYLOAD_SHA256, progress=progress, timeout=2.0)

    monkeypatch.setattr(download, "download_checkpoint", fake)
    return calls


def test_resolve_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_download: list[Path],
                            caplog: pytest.LogCaptureFixture) -> None:
    explicit = tmp_path / "explicit.ckpt"
    explicit.write_bytes(b"x")
    from_env = tmp_path / "env.ckpt"
    from_env.write_bytes(b"y")
    cached = download.default_checkpoint_path()
    assert cached == tmp_path / "cache" / "vggish_model.ckpt"

    # Nothing anywhere: download into the cache (logged with size and destination).
    with caplog.at_level(logging.INFO, logger="vggish.download"):
        assert download.resolve_checkpoint(progress=False) == cached
    assert fake_download == [cached]
    assert cached.read_bytes() == PAYLOAD
    assert "~291 MB" in caplog.text and str(cached) in caplog.text

    # A cached file with the released size wins over downloading.
    _fake_release(cached)
    assert download.resolve_checkpoint() == cached
    monkeypatch.setenv(download.ENV_CHECKPOINT, str(from_env))
    assert download.resolve_checkpoint() == from_env
    assert download.resolve_checkpoint(explicit) == explicit
    assert download.resolve_checkpoint(str(explicit), download=False) == explicit
    assert fake_download == [cached]


def test_resolve_without_download_raises(tmp_path: Path, fake_download: list[Path]) -> None:
    with pytest.raises(download.DownloadError, match="download-models") as info:
        download.resolve_checkpoint(download=False)
    _assert_hint(str(info.value), params.CHECKPOINT_URL)
    assert fake_download == []


def test_resolve_ignores_a_cached_file_of_the_wrong_size(fake_download: list[Path]) -> None:
    cached = download.default_checkpoint_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    assert download.resolve_checkpoint(progress=False) == cached
    assert fake_download == [cached]
    assert cached.read_bytes() == PAYLOAD


def test_resolve_missing_explicit_or_env_path_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       fake_download: list[Path]) -> None:
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(download.DownloadError, match="--vggish-checkpoint") as info:
        download.resolve_checkpoint(missing)
    assert str(missing) in str(info.value)
    monkeypatch.setenv(download.ENV_CHECKPOINT, str(missing))
    with pytest.raises(download.DownloadError, match=download.ENV_CHECKPOINT) as info:
        download.resolve_checkpoint()
    assert str(missing) in str(info.value)
    with pytest.raises(download.DownloadError, match="not a file"):
        download.resolve_checkpoint(tmp_path)
    assert fake_download == []


def test_download_checkpoint_into_a_directory_or_the_cache(monkeypatch: pytest.MonkeyPatch, server: Server,
                                                           tmp_path: Path) -> None:
    monkeypatch.setattr(params, "CHECKPOINT_SIZE_BYTES", len(PAYLOAD))
    monkeypatch.setattr(params, "CHECKPOINT_SHA256", PAYLOAD_SHA256)
    folder = tmp_path / "models"
    folder.mkdir()
    path = download.download_checkpoint(folder, url=server.url + "/file", progress=False)
    assert path == folder / params.CHECKPOINT_FILENAME
    assert path.read_bytes() == PAYLOAD
    path = download.download_checkpoint(url=server.url + "/file", progress=False)
    assert path == download.default_checkpoint_path()
    assert path.read_bytes() == PAYLOAD

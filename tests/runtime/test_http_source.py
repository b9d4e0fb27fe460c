"""https:// sources against a local HTTP server: archives unpacked, single files, bearer tokens,
byte ranges or one stream, a #sha256 digest checked, and the exit codes of what can go wrong."""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .conftest import run

TOKEN = "s3cret-token"
FILES = {"config.json": b'{"layers": 2}', "weights/model.safetensors": random.Random(7).randbytes(700_000)}


class Handler(SimpleHTTPRequestHandler):
    """Static files; /private/ needs the bearer token; /norange/ ignores Range like a plain server."""

    protocol_version = "HTTP/1.1"
    ranged_gets: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.startswith("/private/") and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_error(401)
            return
        local = Path(self.directory) / path.split("/")[-1]
        if not local.is_file():
            self.send_error(404)
            return
        data = local.read_bytes()
        etag = '"' + hashlib.md5(data).hexdigest() + '"'
        m = re.match(r"bytes=(\d+)-(\d+)$", self.headers.get("Range", ""))
        if m and not path.startswith("/norange/") and self.headers.get("If-Range", etag) == etag:
            start, end = int(m.group(1)), min(int(m.group(2)), len(data) - 1)
            Handler.ranged_gets.append(path)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            body = data[start : end + 1]
        else:
            self.send_response(200)
            body = data
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("www")
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:gz") as tar:
        for name, data in FILES.items():
            info = tarfile.TarInfo("tiny-model/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (root / "model.tar.gz").write_bytes(tar_buf.getvalue())
    with zipfile.ZipFile(root / "model.zip", "w") as zf:
        for name, data in FILES.items():
            zf.writestr(name, data)
    (root / "weights.bin").write_bytes(FILES["weights/model.safetensors"])
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    (root / "evil.tar").write_bytes(evil.getvalue())
    (root / "notatar.tar").write_bytes(os.urandom(2048))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Handler(*a, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def _tree(dest: Path) -> dict[str, bytes]:
    return {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file() and p.name != ".aibrix-model.json"}


def test_a_tar_gz_is_fetched_by_ranges_and_unpacked_without_its_top_folder(server: str, tmp_path: Path, env: dict[str, str]) -> None:
    Handler.ranged_gets.clear()
    r = run(f"{server}/model.tar.gz", "--dest", str(tmp_path / "m"), "--chunk-bytes", "65536", env=env)
    assert r.returncode == 0, r.stderr
    assert _tree(tmp_path / "m") == FILES
    assert len([p for p in Handler.ranged_gets if p == "/model.tar.gz"]) > 2


def test_a_zip_behind_a_bearer_token(server: str, tmp_path: Path, env: dict[str, str]) -> None:
    denied = run(f"{server}/private/model.zip", "--dest", str(tmp_path / "m"), env=env)
    assert denied.returncode == 3 and "access denied (HTTP 401)" in denied.stderr
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    r = run(f"{server}/private/model.zip", "--dest", str(tmp_path / "m"), "--token-file", str(token), env=env)
    assert r.returncode == 0, r.stderr
    assert _tree(tmp_path / "m") == FILES


def test_a_single_file_from_a_server_without_ranges_with_its_digest(server: str, tmp_path: Path, env: dict[str, str]) -> None:
    digest = hashlib.sha256(FILES["weights/model.safetensors"]).hexdigest()
    r = run(f"{server}/norange/weights.bin#sha256={digest}", "--dest", str(tmp_path / "m"), env=env)
    assert r.returncode == 0, r.stderr
    assert _tree(tmp_path / "m") == {"weights.bin": FILES["weights/model.safetensors"]}


def test_a_wrong_digest_exits_4(server: str, tmp_path: Path, env: dict[str, str]) -> None:
    r = run(f"{server}/weights.bin#sha256={'0' * 64}", "--dest", str(tmp_path / "m"), env=env)
    assert r.returncode == 4 and "sha256 of the downloaded bytes" in r.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("missing.tar.gz", 2, "not found (HTTP 404)"),
        ("evil.tar", 1, "unsafe member"),
        ("notatar.tar", 4, "cannot be unpacked"),
    ],
)
def test_bad_downloads_exit_with_their_code(server: str, tmp_path: Path, env: dict[str, str], name: str, code: int, message: str) -> None:
    r = run(f"{server}/{name}", "--dest", str(tmp_path / "m"), env=env)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "escape.txt").exists()

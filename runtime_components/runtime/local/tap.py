"""A loopback HTTP tap between the downloader and a server: counts, throttles or corrupts bytes.

Where it sits: tests and the benchmark point the downloader's endpoint at the tap, which
forwards every request unchanged (the Host header too, so S3 signatures still verify) to the
real server and streams the answer back. It counts the response body bytes (what the
downloader really transferred), can cap the rate (so a transfer can be killed at its midpoint
reliably), or cap each response stream on its own (``stream_bytes_per_s``: a remote object
store serves one connection well below its link, which is why parallel reads pay off there),
and can flip the first body byte of every answer for one path: bit rot in transit, which the
downloader's checksum must catch.

``python -m runtime_components.runtime.local.tap --upstream-port P [--stream-mb-s R]`` runs one
in its own process (so it does not share a client's interpreter) and prints its port.
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Tap"]

PIECE = 256 << 10
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client killed mid-transfer (the resume test does that) is expected, not news


class Tap:
    """``Tap(upstream_port)``; ``url`` is where clients connect; ``body_bytes`` what passed."""

    def __init__(self, upstream_port: int, *, rate_bytes_per_s: float | None = None,
                 stream_bytes_per_s: float | None = None) -> None:
        self.upstream_port = upstream_port
        self.rate_bytes_per_s = rate_bytes_per_s
        self.stream_bytes_per_s = stream_bytes_per_s
        self.corrupt_path: str | None = None
        self.body_bytes = 0
        self.requests: list[tuple[str, str]] = []
        self._started: float | None = None
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="tap", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget what passed (and restart the rate budget)."""
        with self._lock:
            self.body_bytes = 0
            self.requests = []
            self._started = None

    def __enter__(self) -> Tap:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _account(self, n: int) -> None:
        with self._lock:
            if self._started is None:  # the budget starts with the first byte: no credit for idle time
                self._started = time.monotonic()
            self.body_bytes += n
            total, started = self.body_bytes, self._started
        if self.rate_bytes_per_s:
            # a shared budget: the bytes so far must not arrive before total/rate seconds
            ahead = (total - n) / self.rate_bytes_per_s - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tap = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                with tap._lock:
                    tap.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection("127.0.0.1", tap.upstream_port, timeout=120)
                try:
                    upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for name, value in self.headers.items():
                        if name.lower() not in _HOP:
                            upstream.putheader(name, value)
                    upstream.endheaders(body)
                    resp = upstream.getresponse()
                    chunked = resp.getheader("Content-Length") is None and self.command != "HEAD"
                    payload = resp.read() if chunked else None
                    self.send_response(resp.status, resp.reason)
                    for name, value in resp.getheaders():
                        if name.lower() not in _HOP and not (chunked and name.lower() == "content-length"):
                            self.send_header(name, value)
                    if chunked:
                        self.send_header("Content-Length", str(len(payload or b"")))
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    corrupt = tap.corrupt_path is not None and tap.corrupt_path in self.path
                    first = True
                    sent, began = 0, time.monotonic()
                    while True:
                        piece = payload if chunked else resp.read(PIECE)
                        if not piece:
                            break
                        if corrupt and first:
                            piece = bytes([piece[0] ^ 0xFF]) + piece[1:]
                        first = False
                        tap._account(len(piece))
                        self.wfile.write(piece)
                        sent += len(piece)
                        if tap.stream_bytes_per_s:
                            ahead = sent / tap.stream_bytes_per_s - (time.monotonic() - began)
                            if ahead > 0:
                                time.sleep(ahead)
                        if chunked:
                            break
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        return Handler


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m runtime_components.runtime.local.tap")
    ap.add_argument("--upstream-port", type=int, required=True)
    ap.add_argument("--stream-mb-s", type=float, help="cap each response stream at this many MB/s")
    args = ap.parse_args()
    with Tap(args.upstream_port, stream_bytes_per_s=args.stream_mb_s * 1e6 if args.stream_mb_s else None) as tap:
        print(tap.port, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()

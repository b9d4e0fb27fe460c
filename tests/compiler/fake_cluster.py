"""A read-only fake Kubernetes API for ``aibrix-compile preflight``: recorded responses over HTTP.

The responses are plain JSON files in ``preflight_cluster/``, one per GET path (``/`` written
as ``__``: ``api__v1__nodes.json`` answers ``GET /api/v1/nodes``), written from the Kubernetes
API reference (discovery, NodeList, Namespace, and PartialObjectMetadataList for the lists
preflight asks metadata of). A test copies the dict, removes or edits entries, and serves it.

Like a real API server it wants a bearer token (401 without), answers 404 with a Status for
unknown paths and 405 for anything but GET. Secrets are only served as metadata
(``as=PartialObjectMetadataList`` in Accept); any other request for them gets 406, so a
preflight that asked for values would fail its tests. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

FIXTURES = Path(__file__).resolve().parent / "preflight_cluster"
TOKEN = "preflight-test-token"


def recorded_responses() -> dict[str, Any]:
    """{path: JSON body} of every fixture file."""
    return {"/" + p.stem.replace("__", "/"): json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}


class FakeCluster:
    """``with FakeCluster(responses) as cluster:`` serves on 127.0.0.1:<free port>."""

    def __init__(self, responses: dict[str, Any], *, token: str = TOKEN) -> None:
        self.responses, self.token = responses, token
        self.requests: list[tuple[str, str, str]] = []  # (method, path, accept)
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path, accept = self.path.split("?")[0], self.headers.get("Accept", "")
                cluster.requests.append(("GET", path, accept))
                if self.headers.get("Authorization") != f"Bearer {cluster.token}":
                    return self._reply(401, _status(401, "Unauthorized", "Unauthorized"))
                if path.endswith("/secrets") and "as=PartialObjectMetadataList" not in accept:
                    return self._reply(406, _status(406, "NotAcceptable", "this fake serves Secrets as metadata only"))
                if path not in cluster.responses:
                    return self._reply(404, _status(404, "NotFound", f"the server could not find the requested resource ({path})"))
                self._reply(200, cluster.responses[path])

            def _refuse(self) -> None:
                cluster.requests.append((self.command, self.path, self.headers.get("Accept", "")))
                self._reply(405, _status(405, "MethodNotAllowed", "read-only fake"))

            do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeCluster:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path: Path, *, token: str | None = None, extra_context: tuple[str, str] | None = None) -> Path:
        """A kubeconfig whose current context is this server; ``extra_context`` (name, server) adds another."""
        clusters = [{"name": "fake", "cluster": {"server": self.url}}]
        contexts = [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]
        if extra_context is not None:
            name, server = extra_context
            clusters.append({"name": name, "cluster": {"server": server}})
            contexts.append({"name": name, "context": {"cluster": name, "user": "fake"}})
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": clusters, "contexts": contexts,
            "users": [{"name": "fake", "user": {"token": token or self.token}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

"""A tiny Kubernetes API server for the node endpoints the diag daemon uses, on 127.0.0.1:0.

Implements exactly: GET /api/v1/nodes/{name}; PATCH /api/v1/nodes/{name} (JSON merge patch,
honouring metadata.resourceVersion with 409 Conflict); PATCH /api/v1/nodes/{name}/status
(strategic merge patch of status.conditions, merged by `type`). Every request is recorded
(method, path, content type, body) so tests can assert on the real HTTP traffic.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    content_type: str
    body: Any


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


class FakeApiServer:
    def __init__(self, node_name: str = "gpu-node-1", taints: list[dict[str, Any]] | None = None) -> None:
        self.node: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node_name, "resourceVersion": "1"},
            "spec": {"taints": list(taints or [])},
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "kubelet is ready",
                        "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ]
            },
        }
        self.requests: list[Recorded] = []
        self.conflicts_to_inject = 0  # answer this many taint patches with 409 first
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                server._record("GET", self.path, "", None)
                code, body = server.handle("GET", self.path.split("?")[0], "", None)
                self._send(code, body)

            def do_PATCH(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                content_type = self.headers.get("Content-Type", "")
                server._record("PATCH", self.path, content_type, body)
                code, answer = server.handle("PATCH", self.path.split("?")[0], content_type, body)
                self._send(code, answer)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _record(self, method: str, path: str, content_type: str, body: Any) -> None:
        with self.lock:
            self.requests.append(Recorded(method, path, content_type, body))

    def _status(self, code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
        return code, {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": reason,
            "message": message,
            "code": code,
        }

    def handle(self, method: str, path: str, content_type: str, body: Any) -> tuple[int, dict[str, Any]]:
        name = self.node["metadata"]["name"]
        with self.lock:
            if path == f"/api/v1/nodes/{name}" and method == "GET":
                return 200, copy.deepcopy(self.node)
            if path == f"/api/v1/nodes/{name}" and method == "PATCH":
                if content_type != "application/merge-patch+json":
                    return self._status(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")
                wanted = (body.get("metadata") or {}).get("resourceVersion")
                if self.conflicts_to_inject:
                    self.conflicts_to_inject -= 1
                    self._bump()  # someone else changed the node meanwhile
                    return self._status(409, "Conflict", "the object has been modified")
                if wanted is not None and wanted != self.node["metadata"]["resourceVersion"]:
                    return self._status(409, "Conflict", "the object has been modified")
                patch = copy.deepcopy(body)
                patch.get("metadata", {}).pop("resourceVersion", None)
                self.node = _merge_patch(self.node, patch)
                self._bump()
                return 200, copy.deepcopy(self.node)
            if path == f"/api/v1/nodes/{name}/status" and method == "PATCH":
                if content_type != "application/strategic-merge-patch+json":
                    return self._status(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")
                conditions = {c["type"]: c for c in self.node["status"]["conditions"]}
                for condition in body.get("status", {}).get("conditions", []):
                    conditions[condition["type"]] = {**conditions.get(condition["type"], {}), **condition}
                self.node["status"]["conditions"] = list(conditions.values())
                self._bump()
                return 200, copy.deepcopy(self.node)
            return self._status(404, "NotFound", f"{method} {path} is not served by the fake")

    def _bump(self) -> None:
        self.node["metadata"]["resourceVersion"] = str(int(self.node["metadata"]["resourceVersion"]) + 1)

    def condition(self, condition_type: str) -> dict[str, Any] | None:
        return next((c for c in self.node["status"]["conditions"] if c["type"] == condition_type), None)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

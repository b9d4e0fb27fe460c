"""A real OCI registry for tests: Debian's ``docker-registry`` (CNCF distribution 2.8) with
bearer-token auth, its token service (a small HTTP server here that signs RS256 JWTs with a
self-signed certificate the registry trusts), and a pusher for artifacts."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from runtime_components.common.processes import stop_process
from runtime_components.runtime.local.seaweed import free_ports

USER, PASSWORD = "aibrix", "registry-pw"
SERVICE, ISSUER = "aibrix-test-registry", "aibrix-test-issuer"


def registry_binary() -> str | None:
    return shutil.which("docker-registry") or shutil.which("registry")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """Signs distribution-style bearer tokens granting whatever scope was asked, to USER only."""

    def __init__(self, folder: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aibrix test token issuer")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        self.cert_pem = folder / "token-cert.pem"
        self.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self._hashes, self._padding = hashes, __import__("cryptography.hazmat.primitives.asymmetric.padding",
                                                         fromlist=["PKCS1v15"])

    def token(self, scope: str) -> str:
        now = int(time.time())
        access = []
        for item in scope.split(" ") if scope else []:
            kind, name, actions = item.split(":")[0], ":".join(item.split(":")[1:-1]), item.split(":")[-1]
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 600, "nbf": now - 60, "iat": now,
                  "jti": hashlib.sha256(f"{now}{scope}".encode()).hexdigest()[:16], "access": access}
        signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        sig = self.key.sign(signing.encode(), self._padding.PKCS1v15(), self._hashes.SHA256())
        return signing + "." + _b64(sig)


@dataclass
class Registry:
    folder: Path
    port: int = 0
    token_port: int = 0
    proc: subprocess.Popen[Any] | None = None
    _token_server: ThreadingHTTPServer | None = field(default=None, repr=False)
    token_requests: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Registry:
        binary = registry_binary()
        assert binary is not None
        issuer = TokenIssuer(self.folder)
        registry = self

        class TokenHandler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                registry.token_requests.append(self.path)
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"token": issuer.token(" ".join(query.get("scope", [])))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._token_server = ThreadingHTTPServer(("127.0.0.1", 0), TokenHandler)
        self.token_port = self._token_server.server_address[1]
        threading.Thread(target=self._token_server.serve_forever, daemon=True).start()
        (self.port,) = free_ports(1)
        config = self.folder / "config.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.folder / "data")}},
            "http": {"addr": self.host},
            "auth": {"token": {"realm": f"http://127.0.0.1:{self.token_port}/token", "service": SERVICE,
                               "issuer": ISSUER, "rootcertbundle": str(issuer.cert_pem)}},
        }))
        log = open(self.folder / "registry.log", "wb")
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # 401: up, and asking for a token
            except OSError:
                assert self.proc.poll() is None, (self.folder / "registry.log").read_text()
                time.sleep(0.1)
        raise RuntimeError("the registry did not start")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace_s=5)
        if self._token_server is not None:
            self._token_server.shutdown()
            self._token_server.server_close()

    # ---- pushing (the test's own client, not the downloader's) -----------------------------
    def _token(self, repo: str) -> str:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.token_port}/token?service={SERVICE}&scope=repository:{repo}:pull,push",
            headers={"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()})
        return json.loads(urllib.request.urlopen(req).read())["token"]

    def push(self, repo: str, tag: str, layers: list[tuple[str, bytes, dict[str, str]]]) -> str:
        """Push blobs and an OCI manifest; ``layers`` are (mediaType, bytes, annotations). Returns its digest."""
        auth = {"Authorization": "Bearer " + self._token(repo)}

        def put_blob(data: bytes) -> str:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            start = urllib.request.urlopen(urllib.request.Request(
                f"http://{self.host}/v2/{repo}/blobs/uploads/", method="POST", headers=auth, data=b""))
            location = start.headers["Location"]
            location = location if location.startswith("http") else f"http://{self.host}{location}"
            sep = "&" if "?" in location else "?"
            urllib.request.urlopen(urllib.request.Request(
                f"{location}{sep}digest={digest}", method="PUT", data=data,
                headers={**auth, "Content-Type": "application/octet-stream"}))
            return digest

        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put_blob(config),
                       "size": len(config)},
            "layers": [{"mediaType": mt, "digest": put_blob(data), "size": len(data),
                        **({"annotations": ann} if ann else {})} for mt, data, ann in layers],
        }
        raw = json.dumps(manifest).encode()
        urllib.request.urlopen(urllib.request.Request(
            f"http://{self.host}/v2/{repo}/manifests/{tag}", method="PUT", data=raw,
            headers={**auth, "Content-Type": manifest["mediaType"]}))
        return "sha256:" + hashlib.sha256(raw).hexdigest()

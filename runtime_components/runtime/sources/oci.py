"""``oci://registry/repository:tag`` (or ``@sha256:...``): model weights packaged as an OCI artifact or image.

The OCI distribution API: the manifest first (an image index picks its linux/amd64 entry, or
its first), then every layer blob by digest, with ranged reads. Layers whose media type is a
tar (plain or gzip) are unpacked into the model folder in order, as image layers are; any
other layer (an ORAS-style artifact file) is saved under its ``org.opencontainers.image.title``
annotation. Every blob is verified against its SHA-256 digest from the manifest (and a manifest
named by digest against that digest).

Auth follows the registry's challenge: on ``401`` with ``WWW-Authenticate: Bearer realm=...``
a token is fetched from the realm (for the challenged service and scope) and the request
repeated; ``Basic`` is answered directly. Credentials come from a Docker config file
(``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``), the form a Kubernetes
``dockerconfigjson`` pull secret mounts; without one the registry is asked anonymously.
``--endpoint`` overrides the registry's base URL; loopback registries default to plain http.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ..errors import ChecksumError, NetworkError, NotFoundError, UsageError
from .base import Checksum, RemoteFile, SourceOptions, UnpackKind, safe_relative_path
from .http import http_error, make_pool, stream

__all__ = ["OciSource", "parse_reference"]

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
INDEX_TYPES = (MANIFEST_TYPES[1], MANIFEST_TYPES[3])
TITLE = "org.opencontainers.image.title"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_reference(uri: str) -> tuple[str, str, str]:
    """``oci://host[:port]/repo[:tag|@digest]`` -> (host, repository, reference)."""
    rest = uri.split("://", 1)[1]
    host, _, path = rest.partition("/")
    if not host or not path:
        raise UsageError("the URI names no repository", where=uri, expected="oci://REGISTRY/REPOSITORY:TAG")
    if "@" in path:
        repo, ref = path.split("@", 1)
        if not _DIGEST.match(ref):
            raise UsageError(f"{ref!r} is not a sha256 digest", where=uri, expected="@sha256:<64 hex digits>")
    else:
        head, _, last = path.rpartition("/")
        name, _, tag = last.partition(":")
        repo, ref = (head + "/" if head else "") + name, tag or "latest"
    if host == "docker.io":
        host = "registry-1.docker.io"
        repo = repo if "/" in repo else "library/" + repo
    return host, repo, ref


def _layer_kind(media_type: str) -> UnpackKind | None:
    if "zstd" in media_type:
        raise UsageError(f"zstd-compressed layers ({media_type}) are not supported",
                         hint="push the model with gzip or uncompressed tar layers")
    if ".tar" in media_type or "rootfs.diff.tar" in media_type:
        return "tar.gz" if "gzip" in media_type else "tar"
    return None


class OciSource:
    strip_top = False

    def __init__(self, uri: str, options: SourceOptions) -> None:
        self.uri = uri
        self.host, self.repo, self.ref = parse_reference(uri)
        loopback = self.host.split(":")[0] in ("localhost", "127.0.0.1", "[::1]")
        self.base = (options.endpoint or f"{'http' if loopback else 'https'}://{self.host}").rstrip("/")
        self.pool = make_pool(options)
        self.credentials = _docker_credentials(self.host)
        self._auth: str | None = None
        self._auth_lock = threading.Lock()

    # ---- requests with the auth challenge -------------------------------------------------
    def _request(self, path: str, headers: dict[str, str]) -> Any:
        import urllib3

        url = f"{self.base}/v2/{self.repo}/{path}"
        for _ in range(2):
            sent = self._auth
            try:
                resp = self.pool.request("GET", url, headers={**headers, **({"Authorization": sent} if sent else {})},
                                         preload_content=False, decode_content=False)
            except urllib3.exceptions.HTTPError as exc:
                raise NetworkError(f"{type(exc).__name__}: {exc}", where=url) from None
            if resp.status != 401:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.drain_conn()
            resp.release_conn()
            with self._auth_lock:
                if self._auth == sent:  # another thread may have answered the challenge already
                    self._auth = self._answer(challenge, url)
        raise http_error(401, url, "the registry refused the credentials")

    def _answer(self, challenge: str, url: str) -> str:
        scheme, _, params_text = challenge.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(params_text))
        basic = "Basic " + base64.b64encode(f"{self.credentials[0]}:{self.credentials[1]}".encode()).decode() \
            if self.credentials else None
        if scheme.lower() == "basic":
            if basic is None:
                raise http_error(401, url, "the registry wants a user and password; none found in the Docker config")
            return basic
        if scheme.lower() != "bearer" or "realm" not in params:
            raise http_error(401, url, f"unsupported auth challenge {challenge!r}")
        query = {k: params[k] for k in ("service", "scope") if k in params}
        query.setdefault("scope", f"repository:{self.repo}:pull")
        token_url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urlencode(query)
        resp = self.pool.request("GET", token_url, headers={"Authorization": basic} if basic else {})
        if resp.status != 200:
            raise http_error(resp.status, token_url, "the token service refused")
        try:
            body = json.loads(resp.data)
            token = body.get("token") or body["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise NetworkError("the token service answered without a token", where=token_url) from None
        return f"Bearer {token}"

    # ---- manifest and layers ---------------------------------------------------------------
    def _manifest(self, ref: str) -> dict[str, Any]:
        resp = self._request(f"manifests/{ref}", {"Accept": ", ".join(MANIFEST_TYPES)})
        try:
            if resp.status != 200:
                raise http_error(resp.status, self.uri, "manifest")
            raw = resp.read()
        finally:
            resp.release_conn()
        if _DIGEST.match(ref) and "sha256:" + hashlib.sha256(raw).hexdigest() != ref:
            raise ChecksumError("the manifest does not match its digest", where=self.uri, expected=ref)
        try:
            manifest = json.loads(raw)
        except ValueError:
            raise UsageError("the registry sent a manifest that is not JSON", where=self.uri) from None
        if not isinstance(manifest, dict):
            raise UsageError("the registry sent a manifest that is not a JSON object", where=self.uri)
        return manifest

    def list_files(self) -> list[RemoteFile]:
        manifest = self._manifest(self.ref)
        if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
            entries = manifest.get("manifests") or []
            if not entries:
                raise NotFoundError("the image index lists no manifests", where=self.uri)
            pick = next((m for m in entries if m.get("platform", {}).get("os") == "linux"
                         and m.get("platform", {}).get("architecture") == "amd64"), entries[0])
            manifest = self._manifest(pick["digest"])
        layers = manifest.get("layers")
        if not layers:
            raise NotFoundError("the manifest has no layers", where=self.uri)
        files: list[RemoteFile] = []
        for i, layer in enumerate(layers):
            digest, media_type = layer.get("digest", ""), layer.get("mediaType", "")
            if not _DIGEST.match(digest):
                raise UsageError(f"layer {i} has no sha256 digest ({digest!r})", where=self.uri)
            kind = _layer_kind(media_type)
            title = (layer.get("annotations") or {}).get(TITLE)
            if kind is None:
                path = safe_relative_path(title or "")
                if path is None:
                    raise UsageError(f"layer {i} ({media_type}) is no tar and has no usable {TITLE} annotation",
                                     where=self.uri, hint="push files with a title (oras push does) or as tar layers")
                path = "model/" + path
            else:
                path = f"archives/{i:04d}-{digest[7:19]}.{kind}"
            files.append(RemoteFile(key=digest, path=path, size=int(layer.get("size", 0)), version=digest,
                                    checksum=Checksum("sha256", digest[7:]), unpack=kind))
        return files  # layer order matters for unpacking: not sorted

    def read(self, file: RemoteFile, start: int, end: int | None) -> Iterator[bytes]:
        if end is not None and end <= start:
            return
        headers = {"Range": f"bytes={start}-{end - 1}"} if end is not None else {}
        resp = self._request(f"blobs/{file.key}", headers)
        try:
            if resp.status == 200 and (start > 0 or (end is not None and end < (file.size or 0))):
                raise NetworkError("the registry ignored the byte range", where=file.key)
            if resp.status not in (200, 206):
                raise http_error(resp.status, f"{self.uri} blob {file.key}")
            yield from stream(resp, file.key)
        finally:
            resp.release_conn()

    def checksum_of(self, file: RemoteFile) -> Checksum | None:
        return file.checksum

    def close(self) -> None:
        self.pool.clear()


def _docker_credentials(host: str) -> tuple[str, str] | None:
    folder = os.environ.get("DOCKER_CONFIG")
    path = Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"
    try:
        auths = json.loads(path.read_text()).get("auths", {})
    except (OSError, ValueError, AttributeError):
        return None
    keys = [host, f"https://{host}", f"http://{host}"]
    if host == "registry-1.docker.io":
        keys += ["docker.io", "https://index.docker.io/v1/"]
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
        if entry.get("username"):
            return entry["username"], entry.get("password", "")
    return None

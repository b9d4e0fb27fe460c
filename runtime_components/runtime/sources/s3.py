"""``s3://bucket/prefix`` and ``gs://bucket/prefix`` through the S3 API (boto3).

Credentials come from the standard AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, web identity, profiles); with none at all the requests go unsigned, which
public buckets accept. ``--endpoint`` or ``AWS_ENDPOINT_URL`` points at an S3-compatible store
(MinIO, SeaweedFS) with path-style addressing. ``gs://`` uses Google Cloud Storage's
S3-compatible XML API (``https://storage.googleapis.com`` unless an endpoint is given) with HMAC
keys in the same variables.

A prefix is a folder: every object under ``prefix/`` is a file of the model, at its key relative
to the prefix (folder markers, keys ending in ``/``, are skipped). A prefix that names one object
is that single file. Every ranged GET carries ``If-Match`` with the listed ETag, so an object
replaced mid-download fails loudly instead of mixing two versions. The listed ETag is the MD5 of
a single-part object; multipart ETags (``...-N``) and KMS/customer-key encrypted objects are
checked by size only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, NoReturn

from ..errors import (
    AccessDeniedError,
    ChecksumError,
    DownloadError,
    NetworkError,
    NotFoundError,
    UsageError,
)
from .base import Checksum, RemoteFile, SourceOptions, safe_relative_path

__all__ = ["S3Source"]

GCS_ENDPOINT = "https://storage.googleapis.com"
READ_BYTES = 1 << 20
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
           "InvalidToken", "ExpiredToken", "AccountProblem"}
_CHANGED = {"PreconditionFailed", "412"}
_BAD_REQUEST = {"InvalidBucketName", "InvalidArgument", "InvalidRange", "400"}


def _split(uri: str) -> tuple[str, str, str]:
    scheme, rest = uri.split("://", 1)
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise UsageError("the URI names no bucket", where=uri, expected=f"{scheme}://BUCKET/PREFIX")
    return scheme, bucket, prefix.strip("/")


class S3Source:
    """Lists and reads one bucket prefix; safe to read from many threads (one boto3 client)."""

    def __init__(self, uri: str, options: SourceOptions) -> None:
        try:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config
        except ImportError as exc:  # the runtime extra is missing
            raise UsageError(f"boto3 is not installed ({exc})", hint="pip install 'aibrix-stack[runtime]'") from None
        self.uri = uri
        scheme, self.bucket, self.prefix = _split(uri)
        endpoint = options.endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if scheme == "gs" and not options.endpoint:
            endpoint = GCS_ENDPOINT
        session = boto3.session.Session()
        signed = session.get_credentials() is not None
        self.anonymous = not signed
        region = session.region_name or ("auto" if scheme == "gs" else "us-east-1")
        config = Config(
            max_pool_connections=max(10, options.parallel + 2),
            connect_timeout=options.timeout_s,
            read_timeout=options.timeout_s,
            retries={"mode": "standard", "max_attempts": 5},
            s3={"addressing_style": "path" if endpoint else "auto"},
            # S3-compatible stores (GCS, older MinIO) reject the newer flexible-checksum headers
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            **({} if signed else {"signature_version": UNSIGNED}),
        )
        self.endpoint = endpoint
        self._encrypted: set[str] = set()  # keys whose GET said KMS/SSE-C: their ETag is no MD5
        self.client: Any = session.client("s3", endpoint_url=endpoint, region_name=region, config=config)

    # ---- listing ----------------------------------------------------------------------
    def list_files(self) -> list[RemoteFile]:
        folder = self.prefix + "/" if self.prefix else ""
        files: list[RemoteFile] = []
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": folder}
            if token:
                args["ContinuationToken"] = token
            page = self._call(self.client.list_objects_v2, where=f"{self.uri} (listing)", **args)
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):
                    continue
                files.append(self._file(key, key[len(folder):], int(obj["Size"]), obj.get("ETag", "")))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
        if not files and self.prefix:
            files = self._single_object()
        if not files:
            raise NotFoundError(
                f"no objects under {self.prefix + '/' if self.prefix else 'the bucket root'}",
                where=self.uri,
                hint="check the bucket and prefix (aws s3 ls) and that the credentials may list it",
            )
        return sorted(files, key=lambda f: f.path)

    def _single_object(self) -> list[RemoteFile]:
        try:
            head = self._call(self.client.head_object, where=self.uri, Bucket=self.bucket, Key=self.prefix)
        except NotFoundError:
            return []
        name = self.prefix.rsplit("/", 1)[-1]
        encrypted = head.get("ServerSideEncryption") == "aws:kms" or "SSECustomerAlgorithm" in head
        return [self._file(self.prefix, name, int(head["ContentLength"]), head.get("ETag", ""), encrypted)]

    def _file(self, key: str, relative: str, size: int, etag: str, encrypted: bool = False) -> RemoteFile:
        path = safe_relative_path(relative)
        if path is None:
            raise UsageError(f"object key {key!r} would land outside the model folder", where=self.uri)
        etag = etag.strip('"')
        md5 = len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower()) and not encrypted
        return RemoteFile(
            key=key,
            path="model/" + path,
            size=size,
            version=etag or f"size:{size}",
            checksum=Checksum("md5", etag.lower()) if md5 else None,
        )

    # ---- reading ----------------------------------------------------------------------
    def read(self, file: RemoteFile, start: int, end: int | None) -> Iterator[bytes]:
        if file.size == 0:
            return
        last = (file.size if end is None else end) - 1  # type: ignore[operator]
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": file.key, "Range": f"bytes={start}-{last}"}
        if not file.version.startswith("size:"):
            args["IfMatch"] = '"' + file.version + '"'
        response = self._call(self.client.get_object, where=f"s3://{self.bucket}/{file.key}", **args)
        if response.get("ServerSideEncryption") == "aws:kms" or "SSECustomerAlgorithm" in response:
            self._encrypted.add(file.key)
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        body = response["Body"]
        try:
            while True:
                try:
                    piece = body.read(READ_BYTES)
                except (BotoCoreError, HTTPError, OSError) as exc:  # broken mid-body: retryable
                    raise NetworkError(f"reading the body failed: {exc}", where=f"s3://{self.bucket}/{file.key}") from None
                if not piece:
                    return
                yield piece
        finally:
            body.close()

    def checksum_of(self, file: RemoteFile) -> Checksum | None:
        return None if file.key in self._encrypted else file.checksum

    def close(self) -> None:
        self.client.close()

    # ---- errors -----------------------------------------------------------------------
    def _call(self, fn: Any, *, where: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            self._raise_client_error(exc, where)
        except NoCredentialsError:
            raise AccessDeniedError("no credentials found", where=where, hint=_CREDENTIALS_HINT) from None
        except BotoCoreError as exc:
            raise NetworkError(f"{type(exc).__name__}: {exc}", where=where,
                               hint=f"check that the endpoint {self.endpoint or 'of AWS S3'} is reachable") from None

    def _raise_client_error(self, exc: Any, where: str) -> NoReturn:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.get("Message") or code
        if code in _NOT_FOUND or status == 404:
            raise NotFoundError(f"{code or 'not found'}: {message}", where=where,
                                hint="check the bucket name and prefix")
        if code in _DENIED or status == 403:
            refused = "the credentials were refused or lack s3:GetObject/s3:ListBucket on this prefix"
            hint = _CREDENTIALS_HINT if self.anonymous else refused
            raise AccessDeniedError(f"{code or 'access denied'}: {message}", where=where, hint=hint)
        if code in _CHANGED or status == 412:
            raise ChecksumError("the object changed while it was being downloaded (its ETag no longer matches)",
                                where=where, hint="run the download again; it restarts the changed object")
        if code in _BAD_REQUEST or status == 400:
            raise UsageError(f"{code}: {message}", where=where)
        if status is not None and status < 500 and status != 429:
            raise DownloadError(f"{code} (HTTP {status}): {message}", where=where)
        raise NetworkError(f"{code or 'server error'} (HTTP {status}): {message}", where=where)


_CREDENTIALS_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (HMAC keys for gs://), "
                     "or mount the model's secretRef")

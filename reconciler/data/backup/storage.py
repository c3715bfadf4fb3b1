"""Where backups are kept: a directory or an S3 bucket, behind one small Protocol.

Both backends share three promises the rest of the pipeline relies on:

* an upload is streamed (a backup is never held whole in memory or spooled to disk) and the
  object exists only once ``commit()`` returned; ``abort()``, or any failure while writing,
  leaves nothing behind, so a half-written backup can never be listed or restored;
* ``put_json`` is atomic, so a manifest is either absent or complete: the engine writes it
  last, and a backup without a manifest does not count;
* every failure is a ``BackupStorageError`` naming the place and the command that checks it,
  and never a credential (``url`` carries none).

Names are relative, ``/``-separated paths such as ``project/env/2026-02-12-03-00.backup``;
``list`` returns full names (usable with ``download`` and ``delete``), sorted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    NoCredentialsError,
)

from reconciler.data.backup.errors import BackupCorrupt, BackupError, BackupStorageError

__all__ = [
    "BackupStorage",
    "Download",
    "FileStorage",
    "S3Storage",
    "Upload",
    "open_storage",
]

log = logging.getLogger("odooops.backup")

DEFAULT_PART_SIZE = 8 << 20
MIN_PART_SIZE = 5 << 20  # S3 refuses smaller parts except the last one
_MAX_PARTS = 10_000
_PARTIAL = ".partial"
_PROBE = ".odooops-check"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


class Upload(Protocol):
    """One object being written; it exists in the storage only after ``commit()``."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None:
        """Make the object visible under its name, whole; after a failure it does not exist."""
        ...

    def abort(self) -> None:
        """Drop what was written so far; safe to call more than once or after a failure."""
        ...


class Download(Protocol):
    """An object being read as a stream."""

    def read(self, n: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class BackupStorage(Protocol):
    """A place that holds backups and their manifests."""

    url: str  # for messages: file:///dir or s3://bucket/prefix, never with credentials

    def upload(self, name: str) -> Upload: ...

    def download(self, name: str) -> Download: ...

    def put_json(self, name: str, doc: Mapping[str, Any]) -> None: ...

    def get_json(self, name: str) -> dict[str, Any] | None: ...

    def list(self, prefix: str) -> list[str]: ...

    def delete(self, name: str) -> None: ...

    def check(self) -> None:
        """Reachable and writable, else ``BackupStorageError``."""
        ...


def open_storage(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    part_size: int = DEFAULT_PART_SIZE,
) -> BackupStorage:
    """The storage behind ``file:///abs/dir`` or ``s3://bucket/optional/prefix``."""
    parts = urlsplit(url)
    usage = "set backups.storage in odooops.yaml to file:///absolute/dir or s3://bucket/prefix"
    if parts.scheme == "s3" and "@" in parts.netloc:
        raise BackupError(
            "the S3 backup URL holds credentials; they belong in backups.s3 instead",
            code="backup_url_invalid",
            remediation="remove them from the URL and set backups.s3.access_key and "
            "backups.s3.secret_key (as {secret: NAME}, {env: ODOOOPS_SECRET_...} or "
            "{file: /etc/odooops/secrets/...}) in odooops.yaml",
        )
    if parts.query or parts.fragment:
        raise BackupError(
            f"the backup URL {url} must not have a query or a fragment",
            code="backup_url_invalid",
            remediation=usage,
        )
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise BackupError(
                f"the backup URL {url} is not file:///absolute/dir",
                code="backup_url_invalid",
                remediation=usage,
            )
        return FileStorage(Path(path))
    if parts.scheme == "s3":
        if not _BUCKET.fullmatch(parts.netloc):
            raise BackupError(
                f"the backup URL {url} does not name a valid S3 bucket "
                "(3 to 63 lowercase letters, digits, dots and hyphens)",
                code="backup_url_invalid",
                remediation=usage,
            )
        return S3Storage(
            parts.netloc,
            unquote(parts.path).strip("/"),
            endpoint_url=endpoint_url,
            region=region,
            access_key=access_key,
            secret_key=secret_key,
            part_size=part_size,
        )
    raise BackupError(
        f"the backup URL {url} is neither file:// nor s3://",
        code="backup_url_invalid",
        remediation=usage,
    )


def _check_name(name: str) -> str:
    """Refuse names that could leave the storage root or collide with internal files."""
    segments = name.split("/")
    if (
        not name
        or "\\" in name
        or "\0" in name
        or any(s in ("", ".", "..") for s in segments)
        or name.endswith(_PARTIAL)
        or segments[-1].startswith(_PROBE)
    ):
        raise ValueError(f"invalid backup object name {name!r}")
    return name


def _check_prefix(prefix: str) -> str:
    if prefix:
        _check_name(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def _visible(name: str) -> bool:
    return not name.endswith(_PARTIAL) and not name.rsplit("/", 1)[-1].startswith(_PROBE)


def _encode_json(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _decode_json(data: bytes, name: str, url: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise BackupCorrupt(f"{name} in {url} is not a JSON object")
    return doc


def _not_found(name: str, url: str) -> BackupError:
    return BackupError(
        f"there is no {name} in {url}",
        code="backup_not_found",
        remediation="list the backups with `odooops db backups <env>`",
    )


# --------------------------------------------------------------------------- directory
class FileStorage:
    """Backups in a local directory (or a mounted volume).

    The directory itself is never created: if it is a mount point that is not mounted, the
    backups must fail loudly instead of filling the system disk. Everything below it is
    created private to the daemon's user (directories 0700, files 0600).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()

    def upload(self, name: str) -> Upload:
        path = self._path(name)
        partial = path.with_name(path.name + _PARTIAL)
        try:
            self._make_parents(path)
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            os.fchmod(fd, 0o600)
        except OSError as exc:
            raise self._error(f"create {name}", exc) from exc
        return _FileUpload(self, path, partial, os.fdopen(fd, "wb"))

    def download(self, name: str) -> Download:
        path = self._path(name)
        try:
            return _FileDownload(self, path.open("rb"))
        except FileNotFoundError:
            self._need_root()
            raise _not_found(name, self.url) from None
        except OSError as exc:
            raise self._error(f"read {name}", exc) from exc

    def put_json(self, name: str, doc: Mapping[str, Any]) -> None:
        """Write beside the target, fsync, rename: readers see the old or the new document."""
        data = _encode_json(doc)
        upload = self.upload(name)
        try:
            upload.write(data)
        except BaseException:
            upload.abort()
            raise
        upload.commit()

    def get_json(self, name: str) -> dict[str, Any] | None:
        path = self._path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._need_root()
            return None
        except OSError as exc:
            raise self._error(f"read {name}", exc) from exc
        return _decode_json(data, name, self.url)

    def list(self, prefix: str) -> list[str]:
        _check_prefix(prefix)
        self._need_root()
        start = self.root / prefix.rpartition("/")[0]

        def fail(exc: OSError) -> None:
            raise exc

        names: list[str] = []
        try:
            for directory, _dirs, files in os.walk(start, onerror=fail):
                rel = Path(directory).relative_to(self.root).as_posix()
                for file in files:
                    name = file if rel == "." else f"{rel}/{file}"
                    if name.startswith(prefix) and _visible(name):
                        names.append(name)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._error(f"list {prefix or '/'}", exc) from exc
        return sorted(names)

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink(missing_ok=True)
        except OSError as exc:
            raise self._error(f"delete {name}", exc) from exc

    def check(self) -> None:
        self._need_root()
        probe = self.root / f"{_PROBE}-{secrets.token_hex(4)}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, b"odooops\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            probe.unlink()
        except OSError as exc:
            with contextlib.suppress(OSError):
                probe.unlink()
            raise self._error("write", exc) from exc

    # -- helpers
    def _path(self, name: str) -> Path:
        return self.root / _check_name(name)

    def _need_root(self) -> None:
        if not self.root.is_dir():
            raise BackupStorageError(
                f"the backup directory {self.root} does not exist (or is not mounted)",
                remediation=f"mkdir -p -m 0700 {self.root}  (or mount the backup volume there)",
            )

    def _make_parents(self, path: Path) -> None:
        self._need_root()
        missing: list[Path] = []
        parent = path.parent
        while parent != self.root and not parent.is_dir():
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, 0o700)
                os.chmod(directory, 0o700)  # the mode given to mkdir is filtered by umask

    def _error(self, action: str, exc: OSError) -> BackupStorageError:
        return BackupStorageError(
            f"cannot {action} in {self.url}: {exc.strerror or exc}",
            remediation=f"ls -ld {self.root} && df -h {self.root}",
        )


class _FileUpload:
    def __init__(self, storage: FileStorage, path: Path, partial: Path, file: Any) -> None:
        self._storage = storage
        self._path = path
        self._partial = partial
        self._file = file
        self._state = "open"

    def write(self, data: bytes) -> None:
        if self._state != "open":
            raise ValueError(f"write to an upload that is {self._state}")
        try:
            self._file.write(data)
        except OSError as exc:
            self.abort()
            raise self._storage._error(f"write {self._path.name}", exc) from exc

    def commit(self) -> None:
        """fsync the data, rename it in place, fsync the directory: durable once it returns."""
        if self._state != "open":
            raise ValueError(f"commit of an upload that is {self._state}")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._partial, self._path)
            dir_fd = os.open(self._path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            self.abort()
            raise self._storage._error(f"write {self._path.name}", exc) from exc
        self._state = "committed"

    def abort(self) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._partial.unlink(missing_ok=True)


class _FileDownload:
    def __init__(self, storage: FileStorage, file: Any) -> None:
        self._storage = storage
        self._file = file

    def read(self, n: int = -1, /) -> bytes:
        try:
            return bytes(self._file.read(n))
        except OSError as exc:
            raise self._storage._error("read", exc) from exc

    def close(self) -> None:
        self._file.close()


# --------------------------------------------------------------------------------- S3
class S3Storage:
    """Backups in an S3 bucket (AWS or any compatible server), under an optional prefix.

    Uploads are multipart: parts of ``part_size`` bytes are sent as the stream fills them, so
    memory holds one part, never the backup. Part sizes grow after every thousand parts so a
    backup may exceed S3's 10,000-part limit times ``part_size``. Timeouts and retries are
    short so an unreachable endpoint fails a pass within about twenty seconds instead of
    hanging it; the engine retries the next pass. Buckets are never created: which bucket,
    with what lifecycle and versioning, is the operator's decision (a lifecycle rule
    ``AbortIncompleteMultipartUpload`` is the backstop when the daemon dies mid-upload).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        if (access_key is None) != (secret_key is None):
            # boto3 would silently fall back to whatever credentials the host has.
            raise BackupError(
                "backups.s3 sets only one of access_key and secret_key",
                code="backup_config_invalid",
                remediation="set both backups.s3.access_key and backups.s3.secret_key in "
                "odooops.yaml, or neither to use the host's AWS credentials",
            )
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self.endpoint_url = endpoint_url
        self.part_size = part_size
        session = boto3.session.Session(
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region or "us-east-1",
        )
        config = Config(
            connect_timeout=5,
            read_timeout=20,
            retries={"total_max_attempts": 3, "mode": "standard"},
            # Path-style and checksums only when required: what S3-compatible servers
            # (MinIO, SeaweedFS, Ceph, ...) all accept. Integrity does not depend on it: every
            # record of a backup is authenticated and each backup is read back after upload.
            s3={"addressing_style": "path"} if endpoint_url else {},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)

    def upload(self, name: str) -> Upload:
        return _S3Upload(self, self._key(name))

    def download(self, name: str) -> Download:
        key = self._key(name)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise _not_found(name, self.url) from None
            raise self._error(f"read {name}", exc) from exc
        except BotoCoreError as exc:
            raise self._error(f"read {name}", exc) from exc
        return _S3Download(self, name, response["Body"])

    def put_json(self, name: str, doc: Mapping[str, Any]) -> None:
        """A single PUT, which S3 makes visible whole or not at all."""
        key = self._key(name)
        self._call(
            f"write {name}",
            self._client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=_encode_json(doc),
            ContentType="application/json",
        )

    def get_json(self, name: str) -> dict[str, Any] | None:
        try:
            download = self.download(name)
        except BackupError as exc:
            if exc.code == "backup_not_found":
                return None
            raise
        try:
            data = download.read()
        finally:
            download.close()
        return _decode_json(data, name, self.url)

    def list(self, prefix: str) -> list[str]:
        _check_prefix(prefix)
        names: list[str] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    name = str(item["Key"])[len(self.prefix) :]
                    if name and not name.endswith("/") and _visible(name):
                        names.append(name)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(f"list {prefix or '/'}", exc) from exc
        return sorted(names)

    def delete(self, name: str) -> None:
        self._call(
            f"delete {name}", self._client.delete_object, Bucket=self.bucket, Key=self._key(name)
        )

    def check(self) -> None:
        """List, write and delete a probe object: credentials, bucket and permissions at once."""
        self._call(
            "list",
            self._client.list_objects_v2,
            Bucket=self.bucket,
            Prefix=self.prefix,
            MaxKeys=1,
        )
        probe = f"{self.prefix}{_PROBE}-{secrets.token_hex(4)}"
        self._call("write", self._client.put_object, Bucket=self.bucket, Key=probe, Body=b"")
        self._call("delete", self._client.delete_object, Bucket=self.bucket, Key=probe)

    # -- helpers
    def _key(self, name: str) -> str:
        return self.prefix + _check_name(name)

    def _call(self, action: str, method: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return dict(method(**kwargs))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(action, exc) from exc

    def _aws(self, command: str) -> str:
        endpoint = f" --endpoint-url {self.endpoint_url}" if self.endpoint_url else ""
        return f"aws{endpoint} s3 {command}"

    def _error(self, action: str, exc: Exception) -> BackupStorageError:
        """A botocore failure as a structured error; botocore messages hold no secret."""
        where = f"{self.url}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")
        listing = self._aws(f"ls {self.url}")
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code == "NoSuchBucket":
                return BackupStorageError(
                    f"cannot {action} in {where}: the bucket {self.bucket} does not exist",
                    remediation=f"create it: {self._aws(f'mb s3://{self.bucket}')}",
                )
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                return BackupStorageError(
                    f"cannot {action} in {where}: access denied ({code})",
                    remediation="check backups.s3.access_key and backups.s3.secret_key in "
                    f"odooops.yaml and the bucket's policy, then try: {listing}",
                )
            message = exc.response.get("Error", {}).get("Message", "")
            return BackupStorageError(
                f"cannot {action} in {where}: {code} {message}".rstrip(),
                remediation=listing,
            )
        if isinstance(exc, NoCredentialsError):
            return BackupStorageError(
                f"cannot {action} in {where}: no S3 credentials are configured",
                remediation="set backups.s3.access_key and backups.s3.secret_key "
                "(as {secret: NAME}, {env: ODOOOPS_SECRET_...} or {file: "
                f"/etc/odooops/secrets/...}}) in odooops.yaml, then try: {listing}",
            )
        return BackupStorageError(
            f"cannot {action} in {where}: {exc}",
            remediation=listing,
        )


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _S3Upload:
    def __init__(self, storage: S3Storage, key: str) -> None:
        self._s = storage
        self._key = key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._state = "open"

    def write(self, data: bytes) -> None:
        if self._state != "open":
            raise ValueError(f"write to an upload that is {self._state}")
        try:
            self._buffer += data
            while len(self._buffer) >= self._next_part_size():
                size = self._next_part_size()
                self._send_part(bytes(self._buffer[:size]))
                del self._buffer[:size]
        except BaseException:
            self.abort()
            raise

    def commit(self) -> None:
        if self._state != "open":
            raise ValueError(f"commit of an upload that is {self._state}")
        client, bucket, key = self._s._client, self._s.bucket, self._key
        try:
            if self._upload_id is None:
                # Smaller than one part: a single PUT is atomic and cheaper.
                body = bytes(self._buffer)
                self._s._call(f"write {key}", client.put_object, Bucket=bucket, Key=key, Body=body)
            else:
                if self._buffer:
                    self._send_part(bytes(self._buffer))
                self._s._call(
                    f"complete {key}",
                    client.complete_multipart_upload,
                    Bucket=bucket,
                    Key=key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        self._buffer = bytearray()

    def abort(self) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        self._buffer = bytearray()
        if self._upload_id is None:
            return
        try:
            self._s._client.abort_multipart_upload(
                Bucket=self._s.bucket, Key=self._key, UploadId=self._upload_id
            )
        except (ClientError, BotoCoreError) as exc:
            # Usually the very failure that made us abort; the bucket's lifecycle rule
            # removes the orphaned parts later.
            log.warning("could not abort the upload of %s in %s: %s", self._key, self._s.url, exc)

    def _next_part_size(self) -> int:
        return self._s.part_size * (1 + len(self._parts) // 1000)

    def _send_part(self, body: bytes) -> None:
        client, bucket, key = self._s._client, self._s.bucket, self._key
        if self._upload_id is None:
            created = self._s._call(
                f"write {key}", client.create_multipart_upload, Bucket=bucket, Key=key
            )
            self._upload_id = str(created["UploadId"])
        number = len(self._parts) + 1
        if number > _MAX_PARTS:
            raise BackupError(f"the backup {key} is too large for S3 ({_MAX_PARTS} parts)")
        sent = self._s._call(
            f"write {key}",
            client.upload_part,
            Bucket=bucket,
            Key=key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
        )
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})


class _S3Download:
    def __init__(self, storage: S3Storage, name: str, body: Any) -> None:
        self._s = storage
        self._name = name
        self._body = body

    def read(self, n: int = -1, /) -> bytes:
        try:
            return bytes(self._body.read(None if n < 0 else n))
        except (BotoCoreError, OSError) as exc:
            raise self._s._error(f"read {self._name}", exc) from exc

    def close(self) -> None:
        self._body.close()

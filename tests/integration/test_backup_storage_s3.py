"""Specification of the S3 backend of backup storage, against a real S3 server (SeaweedFS)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.data.backup.errors import BackupError, BackupStorageError
from reconciler.data.backup.storage import MIN_PART_SIZE, S3Storage, open_storage
from tests.integration.s3server import ACCESS_KEY, SECRET_KEY, S3Server

pytestmark = pytest.mark.integration

MiB = 1 << 20
SECRET = "not-the-real-secret-but-never-shown"


def make_bucket(server: S3Server) -> str:
    name = f"odooops-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=name)
    return name


def empty_bucket(server: S3Server, bucket: str) -> None:
    client = server.client()
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    name = make_bucket(s3_server)
    yield name
    empty_bucket(s3_server, name)


def storage_on(endpoint: str, bucket: str, prefix: str = "site-a") -> S3Storage:
    storage = open_storage(
        f"s3://{bucket}/{prefix}",
        endpoint_url=endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        part_size=MIN_PART_SIZE,
    )
    assert isinstance(storage, S3Storage)
    return storage


@pytest.fixture
def storage(s3_server: S3Server, bucket: str) -> S3Storage:
    return storage_on(s3_server.endpoint, bucket)


def pending_uploads(server: S3Server, bucket: str) -> list[dict[str, Any]]:
    return list(server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def keys(server: S3Server, bucket: str) -> list[str]:
    return [i["Key"] for i in server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------- uploads
def test_a_large_upload_goes_up_in_parts_and_reads_back(
    s3_server: S3Server, bucket: str, storage: S3Storage
) -> None:
    data = os.urandom(13 * MiB + 12345)
    upload = storage.upload("shop/prod/2026-03-18-12-00.backup")
    for offset in range(0, 6 * MiB, MiB):
        upload.write(data[offset : offset + MiB])
    # one 5 MiB part is already on the server, the rest of the stream is not yet anywhere
    [pending] = pending_uploads(s3_server, bucket)
    assert pending["Key"] == "site-a/shop/prod/2026-03-18-12-00.backup"
    assert keys(s3_server, bucket) == []
    for offset in range(6 * MiB, len(data), MiB):
        upload.write(data[offset : offset + MiB])
    upload.commit()
    assert pending_uploads(s3_server, bucket) == []
    assert keys(s3_server, bucket) == ["site-a/shop/prod/2026-03-18-12-00.backup"]
    download = storage.download("shop/prod/2026-03-18-12-00.backup")
    try:
        got = bytearray()
        while chunk := download.read(777_777):
            got += chunk
    finally:
        download.close()
    assert bytes(got) == data


def test_a_small_upload_is_a_single_put(
    s3_server: S3Server, bucket: str, storage: S3Storage
) -> None:
    upload = storage.upload("shop/prod/tiny.backup")
    upload.write(b"tiny")
    assert pending_uploads(s3_server, bucket) == []
    assert keys(s3_server, bucket) == []
    upload.commit()
    download = storage.download("shop/prod/tiny.backup")
    assert download.read() == b"tiny"
    download.close()


def test_an_upload_aborted_after_a_producer_failure_leaves_nothing(
    s3_server: S3Server, bucket: str, storage: S3Storage
) -> None:
    upload = storage.upload("shop/prod/a.backup")

    def produce() -> None:
        for _ in range(12):
            upload.write(os.urandom(MiB))
        raise RuntimeError("pg_dump died")

    with pytest.raises(RuntimeError, match="pg_dump died"):
        try:
            produce()
        except BaseException:
            upload.abort()
            raise
    assert pending_uploads(s3_server, bucket) == []
    assert keys(s3_server, bucket) == []
    with pytest.raises(ValueError, match="aborted"):
        upload.commit()


def test_a_failing_part_aborts_the_upload_by_itself(
    s3_server: S3Server, bucket: str, storage: S3Storage
) -> None:
    """Here the multipart upload vanishes under the writer (as after a server-side expiry)."""
    upload = storage.upload("shop/prod/a.backup")
    upload.write(os.urandom(6 * MiB))
    [pending] = pending_uploads(s3_server, bucket)
    s3_server.client().abort_multipart_upload(
        Bucket=bucket, Key=pending["Key"], UploadId=pending["UploadId"]
    )
    with pytest.raises(BackupStorageError) as info:
        upload.write(os.urandom(5 * MiB))
    assert "shop/prod/a.backup" in info.value.message
    with pytest.raises(ValueError, match="aborted"):
        upload.write(b"more")
    assert pending_uploads(s3_server, bucket) == []
    assert keys(s3_server, bucket) == []


# ------------------------------------------------------------------ json, list, delete
def test_json_list_and_delete(s3_server: S3Server, bucket: str, storage: S3Storage) -> None:
    storage.put_json("shop/prod/b.json", {"status": "good"})
    storage.put_json("shop/prod/a.json", {"status": "failed", "error": "disk full"})
    storage.put_json("shop/staging/a.json", {})
    storage.put_json("shop/prod/a.json", {"status": "good"})
    assert storage.get_json("shop/prod/a.json") == {"status": "good"}
    assert storage.get_json("shop/prod/missing.json") is None
    assert storage.list("shop/prod/") == ["shop/prod/a.json", "shop/prod/b.json"]
    assert storage.list("") == ["shop/prod/a.json", "shop/prod/b.json", "shop/staging/a.json"]
    storage.delete("shop/prod/a.json")
    storage.delete("shop/prod/a.json")
    assert storage.list("shop/") == ["shop/prod/b.json", "shop/staging/a.json"]
    assert sorted(keys(s3_server, bucket)) == [
        "site-a/shop/prod/b.json",
        "site-a/shop/staging/a.json",
    ]


def test_storages_with_different_prefixes_do_not_see_each_other(
    s3_server: S3Server, bucket: str
) -> None:
    first = storage_on(s3_server.endpoint, bucket, "site-a")
    second = storage_on(s3_server.endpoint, bucket, "site-a-old")
    first.put_json("x.json", {})
    assert second.list("") == []


def test_a_missing_object_is_not_found(storage: S3Storage) -> None:
    with pytest.raises(BackupError) as info:
        storage.download("shop/prod/none.backup")
    assert info.value.code == "backup_not_found"


def test_check_passes_and_leaves_nothing_behind(
    s3_server: S3Server, bucket: str, storage: S3Storage
) -> None:
    storage.check()
    assert keys(s3_server, bucket) == []


# ----------------------------------------------------------------------------- failures
def test_an_unreachable_endpoint_fails_quickly_with_a_command_to_try() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    storage = open_storage(
        "s3://odooops-backups/site-a",
        endpoint_url=endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET,
    )
    for attempt in (storage.check, lambda: storage.list("")):
        started = time.monotonic()
        with pytest.raises(BackupStorageError) as info:
            attempt()
        assert time.monotonic() - started < 20
        error = info.value
        assert error.code == "backup_storage_unreachable"
        assert error.retryable
        assert f"aws --endpoint-url {endpoint} s3 ls s3://odooops-backups/site-a/" in (
            error.remediation
        )
        assert SECRET not in error.render()


def test_a_missing_bucket_is_reported_with_the_command_that_creates_it(
    s3_server: S3Server,
) -> None:
    storage = open_storage(
        "s3://odooops-no-such-bucket/site-a",
        endpoint_url=s3_server.endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET,
        part_size=MIN_PART_SIZE,
    )
    small = storage.upload("a.backup")
    small.write(b"x")
    large = storage.upload("b.backup")
    for attempt in (
        storage.check,
        lambda: storage.list(""),
        lambda: storage.put_json("a.json", {}),
        small.commit,
        lambda: large.write(os.urandom(MIN_PART_SIZE)),
    ):
        with pytest.raises(BackupStorageError) as info:
            attempt()
        assert "odooops-no-such-bucket does not exist" in info.value.message
        assert info.value.remediation == (
            f"create it: aws --endpoint-url {s3_server.endpoint} s3 mb s3://odooops-no-such-bucket"
        )
        assert SECRET not in info.value.render()
    assert "odooops-no-such-bucket" not in [
        b["Name"] for b in s3_server.client().list_buckets().get("Buckets", [])
    ]


@pytest.fixture
def doomed_s3() -> Iterator[S3Server]:
    """A server of its own, to be killed by the test."""
    workdir = Path(tempfile.mkdtemp(prefix="s3-doomed-"))
    try:
        with S3Server(workdir) as server:
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_server_killed_mid_upload_fails_the_upload_and_commits_nothing(
    doomed_s3: S3Server,
) -> None:
    bucket = make_bucket(doomed_s3)
    storage = storage_on(doomed_s3.endpoint, bucket)
    upload = storage.upload("shop/prod/a.backup")
    upload.write(os.urandom(6 * MiB))
    assert len(pending_uploads(doomed_s3, bucket)) == 1
    doomed_s3.kill()
    started = time.monotonic()
    with pytest.raises(BackupStorageError) as info:
        upload.write(os.urandom(5 * MiB))
    assert time.monotonic() - started < 20
    assert info.value.retryable
    # The upload is dead: it can never be completed into an object, even by mistake.
    with pytest.raises(ValueError, match="aborted"):
        upload.commit()

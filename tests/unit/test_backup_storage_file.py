"""Specification of the directory backend of backup storage (and of storage URLs)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reconciler.data.backup.errors import BackupCorrupt, BackupError, BackupStorageError
from reconciler.data.backup.storage import FileStorage, S3Storage, open_storage


@pytest.fixture
def storage(tmp_path: Path) -> FileStorage:
    root = tmp_path / "backups"
    root.mkdir()
    made = open_storage(root.as_uri())
    assert isinstance(made, FileStorage)
    return made


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_committed_upload_reads_back_as_a_stream(storage: FileStorage) -> None:
    upload = storage.upload("shop/prod/2026-03-18-12-00.backup")
    data = os.urandom(300_000)
    for offset in range(0, len(data), 65_536):
        upload.write(data[offset : offset + 65_536])
    upload.commit()
    download = storage.download("shop/prod/2026-03-18-12-00.backup")
    try:
        assert download.read(10) == data[:10]
        assert download.read() == data[10:]
    finally:
        download.close()


def test_objects_and_their_directories_are_private(storage: FileStorage) -> None:
    upload = storage.upload("shop/prod/a.backup")
    upload.write(b"x")
    upload.commit()
    assert mode(storage.root / "shop/prod/a.backup") == 0o600
    assert mode(storage.root / "shop/prod") == 0o700
    assert mode(storage.root / "shop") == 0o700


def test_an_upload_is_invisible_until_committed(storage: FileStorage) -> None:
    upload = storage.upload("shop/prod/a.backup")
    upload.write(b"half")
    assert storage.list("") == []
    with pytest.raises(BackupError) as info:
        storage.download("shop/prod/a.backup")
    assert info.value.code == "backup_not_found"
    assert (storage.root / "shop/prod/a.backup.partial").exists()
    upload.commit()
    assert storage.list("") == ["shop/prod/a.backup"]
    assert not (storage.root / "shop/prod/a.backup.partial").exists()


def test_an_aborted_upload_leaves_nothing(storage: FileStorage) -> None:
    upload = storage.upload("shop/prod/a.backup")
    upload.write(b"half")
    upload.abort()
    upload.abort()
    assert storage.list("") == []
    assert list((storage.root / "shop/prod").iterdir()) == []
    with pytest.raises(ValueError, match="aborted"):
        upload.commit()


def test_a_new_upload_replaces_a_partial_left_by_a_crash(storage: FileStorage) -> None:
    (storage.root / "a.backup.partial").write_bytes(b"stale bytes from a crash")
    upload = storage.upload("a.backup")
    upload.write(b"new")
    upload.commit()
    download = storage.download("a.backup")
    assert download.read() == b"new"
    download.close()


def test_json_documents_round_trip(storage: FileStorage) -> None:
    storage.put_json("shop/prod/a.json", {"status": "good", "sizes": {"stored_bytes": 3}})
    storage.put_json("shop/prod/a.json", {"status": "good", "verified": True})
    assert storage.get_json("shop/prod/a.json") == {"status": "good", "verified": True}
    assert mode(storage.root / "shop/prod/a.json") == 0o600
    assert storage.list("shop/") == ["shop/prod/a.json"]


def test_a_missing_json_document_is_none(storage: FileStorage) -> None:
    assert storage.get_json("shop/prod/nothing.json") is None


def test_a_json_document_that_does_not_parse_is_corrupt(storage: FileStorage) -> None:
    (storage.root / "bad.json").write_text("{not json")
    with pytest.raises(BackupCorrupt, match=r"bad\.json"):
        storage.get_json("bad.json")


def test_list_gives_full_sorted_names_under_a_prefix(storage: FileStorage) -> None:
    for name in ["shop/prod/b.json", "shop/prod/a.json", "shop/staging/a.json", "blog/x.json"]:
        storage.put_json(name, {})
    assert storage.list("shop/prod/") == ["shop/prod/a.json", "shop/prod/b.json"]
    assert storage.list("shop/") == ["shop/prod/a.json", "shop/prod/b.json", "shop/staging/a.json"]
    assert storage.list("shop/prod/b") == ["shop/prod/b.json"]
    assert storage.list("") == [
        "blog/x.json",
        "shop/prod/a.json",
        "shop/prod/b.json",
        "shop/staging/a.json",
    ]
    assert storage.list("nowhere/") == []


def test_delete_removes_and_tolerates_missing_objects(storage: FileStorage) -> None:
    storage.put_json("a.json", {})
    storage.delete("a.json")
    storage.delete("a.json")
    assert storage.list("") == []


def test_check_passes_on_a_writable_directory_and_leaves_nothing(storage: FileStorage) -> None:
    storage.check()
    assert list(storage.root.iterdir()) == []


def test_the_root_directory_is_never_created(tmp_path: Path) -> None:
    """An unmounted volume must fail the backup, not fill the system disk."""
    storage = open_storage((tmp_path / "not-mounted").as_uri())
    for attempt in (storage.check, lambda: storage.upload("a.backup"), lambda: storage.list("")):
        with pytest.raises(BackupStorageError) as info:
            attempt()
        assert "mkdir -p -m 0700" in info.value.remediation
        assert info.value.retryable
    assert not (tmp_path / "not-mounted").exists()


def test_a_root_that_is_a_file_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(BackupStorageError, match="does not exist"):
        open_storage((tmp_path / "file").as_uri()).check()


@pytest.mark.parametrize(
    "name", ["", "/etc/passwd", "../outside", "a/../../b", "a//b", "a/./b", "a\\b", "x.partial"]
)
def test_names_that_could_escape_the_root_are_refused(storage: FileStorage, name: str) -> None:
    with pytest.raises(ValueError, match="invalid backup object name"):
        storage.upload(name)


# ----------------------------------------------------------------------------------- URLs
def test_an_s3_url_opens_an_s3_storage_without_touching_the_network() -> None:
    storage = open_storage(
        "s3://odooops-backups/site-a/",
        endpoint_url="http://127.0.0.1:1",
        access_key="AKIAEXAMPLE",
        secret_key="very-secret-value",
    )
    assert isinstance(storage, S3Storage)
    assert storage.url == "s3://odooops-backups/site-a/"
    assert "very-secret-value" not in repr(vars(storage))


@pytest.mark.parametrize(
    "url",
    [
        "relative/dir",
        "file://host/dir",
        "file:relative",
        "ftp://example.com/dir",
        "s3://ab",
        "s3://Bad_Bucket/x",
        "s3://bucket/x?versioning=1",
    ],
)
def test_bad_storage_urls_say_what_is_accepted(url: str) -> None:
    with pytest.raises(BackupError) as info:
        open_storage(url)
    assert info.value.code == "backup_url_invalid"
    assert "file:///absolute/dir or s3://bucket/prefix" in info.value.remediation


def test_credentials_in_an_s3_url_are_refused_without_being_repeated() -> None:
    with pytest.raises(BackupError) as info:
        open_storage("s3://AKIAEXAMPLE:very-secret-value@bucket/prefix")
    assert "very-secret-value" not in info.value.render()
    assert "backups.s3.secret_key" in info.value.remediation


@pytest.mark.parametrize(
    ("access_key", "secret_key"), [("AKIAEXAMPLE", None), (None, "very-secret-value")]
)
def test_half_of_a_credential_pair_is_refused(
    access_key: str | None, secret_key: str | None
) -> None:
    """boto3 would otherwise fall back silently to whatever credentials the host has."""
    with pytest.raises(BackupError) as info:
        open_storage("s3://bucket/prefix", access_key=access_key, secret_key=secret_key)
    assert info.value.code == "backup_config_invalid"
    assert "very-secret-value" not in info.value.render()

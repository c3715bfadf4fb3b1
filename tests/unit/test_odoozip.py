"""Odoo's backup zip: streamed export to a sink that cannot seek, validated import, tar streams."""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
import tracemalloc
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, BinaryIO, cast

import pytest

from reconciler.core.errors import OdooOpsError
from reconciler.data.database.odoozip import (
    build_manifest,
    detect_format,
    dump_is_custom_format,
    pg_version_string,
    read_odoo_zip,
    version_info,
    write_odoo_zip,
)

ODOO_MANIFEST_KEYS = {
    "odoo_dump",
    "db_name",
    "version",
    "version_info",
    "major_version",
    "pg_version",
    "modules",
}
PNG = b"\x89PNG\r\n\x1a\n"
DUMP = b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n" * 2000
FILES = {
    "ab/ab12": PNG + os.urandom(3000),
    "ab/ab34": b"body { color: red; }\n" * 500,
    "cd/cd56": b"",
    "checklist/ab/ab12": b"",
}


class WriteOnly:
    """A sink with only write(), returning None like many HTTP response body adapters."""

    def __init__(self, keep: bool = True) -> None:
        self.data = bytearray()
        self.size = 0
        self._keep = keep

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._keep:
            self.data += data


def docker_tar(db: str, files: dict[str, bytes], extra: Sequence[tarfile.TarInfo] = ()) -> bytes:
    """A tar shaped like Docker's get_archive('/var/lib/odoo/filestore/<db>')."""
    dirs = {db}
    for name in files:
        parents = name.split("/")[:-1]
        dirs |= {"/".join((db, *parents[:depth])) for depth in range(1, len(parents) + 1)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(dirs):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(f"{db}/{name}")
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buf.getvalue()


def chunked(data: bytes, size: int = 7000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def export_through_pipe(tmp_path: Path, filestore: bytes | None) -> Path:
    """Write the zip into an os.pipe read by a thread: the writer never sees a seekable file."""
    read_fd, write_fd = os.pipe()
    received = bytearray()

    def drain() -> None:
        with os.fdopen(read_fd, "rb") as reader:
            while block := reader.read(65536):
                received.extend(block)

    thread = threading.Thread(target=drain)
    thread.start()
    manifest = build_manifest("prod", "19.0", "16.0", {"base": "19.0.1.3", "web": "19.0.1.0"})
    with os.fdopen(write_fd, "wb") as pipe:
        stats = write_odoo_zip(
            pipe,
            manifest=manifest,
            dump_sql=chunked(DUMP),
            filestore_tar=None if filestore is None else chunked(filestore),
        )
    thread.join()
    assert stats.bytes_out == len(received)
    path = tmp_path / "backup.zip"
    path.write_bytes(received)
    return path


def crafted_zip(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "crafted.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def error_code(path: Path) -> str:
    with pytest.raises(OdooOpsError) as caught:
        read_odoo_zip(path).close()
    assert caught.value.remediation
    return caught.value.code


# ------------------------------------------------------------------------------ round trip


def test_dump_sql_survives_a_non_seekable_round_trip(tmp_path: Path) -> None:
    """dump.sql read back is byte for byte what pg_dump wrote."""
    path = export_through_pipe(tmp_path, docker_tar("prod", FILES))
    with read_odoo_zip(path) as archive, archive.open_dump_sql() as dump:
        assert dump.read() == DUMP
        assert archive.dump_sql_format() == "sql"


def test_manifest_has_exactly_odoos_keys(tmp_path: Path) -> None:
    """manifest.json carries Odoo's seven keys and reads back as the manifest."""
    path = export_through_pipe(tmp_path, None)
    with zipfile.ZipFile(path) as zf:
        raw = json.loads(zf.read("manifest.json"))
    assert set(raw) == ODOO_MANIFEST_KEYS
    assert raw["odoo_dump"] == "1"
    assert raw["version_info"] == [19, 0, 0, "final", 0, ""]
    with read_odoo_zip(path) as archive:
        assert archive.manifest.db_name == "prod"
        assert archive.manifest.major_version == "19.0"
        assert archive.manifest.modules == {"base": "19.0.1.3", "web": "19.0.1.0"}
        assert not archive.manifest.inferred


def test_members_are_in_odoos_order_without_directories(tmp_path: Path) -> None:
    """dump.sql first, manifest.json next, then filestore files without the database name."""
    path = export_through_pipe(tmp_path, docker_tar("prod", FILES))
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
    assert names[:2] == ["dump.sql", "manifest.json"]
    assert sorted(names[2:]) == sorted(f"filestore/{name}" for name in FILES)


def test_filestore_comes_back_under_the_target_database_name(tmp_path: Path) -> None:
    """Every file is identical after export and import, now below the new database's folder."""
    path = export_through_pipe(tmp_path, docker_tar("prod", FILES))
    with read_odoo_zip(path) as archive:
        assert archive.filestore_files() == len(FILES)
        stream = b"".join(archive.filestore_tar("staging"))
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        restored = {m.name: cast(IO[bytes], tar.extractfile(m)).read() for m in tar if m.isfile()}
    assert restored == {f"staging/{name}": data for name, data in FILES.items()}


def test_generated_tar_has_directories_before_files_with_odoo_modes(tmp_path: Path) -> None:
    """Directories (0755) precede their files (0644), with the zip's times and given owner."""
    path = export_through_pipe(tmp_path, docker_tar("prod", FILES))
    with read_odoo_zip(path) as archive:
        stream = b"".join(archive.filestore_tar("staging", uid=100, gid=101))
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        members = tar.getmembers()
    seen: set[str] = set()
    for member in members:
        parent = member.name.rpartition("/")[0]
        assert not parent or parent in seen, f"{member.name} before its directory"
        seen.add(member.name)
        assert member.mode == (0o755 if member.isdir() else 0o644)
        assert (member.uid, member.gid) == (100, 101)
    dirs = {m.name for m in members if m.isdir()}
    assert dirs == {
        "staging",
        "staging/ab",
        "staging/cd",
        "staging/checklist",
        "staging/checklist/ab",
    }
    assert {m.mtime for m in members if m.isfile()} == {1_700_000_000}


def test_already_compressed_files_are_stored_and_text_deflated(tmp_path: Path) -> None:
    """A PNG is stored as is; CSS and dump.sql are deflated."""
    path = export_through_pipe(tmp_path, docker_tar("prod", FILES))
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("filestore/ab/ab12").compress_type == zipfile.ZIP_STORED
        assert zf.getinfo("filestore/ab/ab34").compress_type == zipfile.ZIP_DEFLATED
        assert zf.getinfo("dump.sql").compress_type == zipfile.ZIP_DEFLATED


def test_export_without_filestore_writes_dump_and_manifest_only(tmp_path: Path) -> None:
    """No filestore stream: a valid zip of dump.sql and manifest.json, an empty tar back."""
    path = export_through_pipe(tmp_path, None)
    with read_odoo_zip(path) as archive:
        assert archive.filestore_files() == 0
        with tarfile.open(fileobj=io.BytesIO(b"".join(archive.filestore_tar("x")))) as tar:
            assert [m.name for m in tar] == ["x"]


def test_exporting_200_mb_of_filestore_does_not_hold_it_in_memory() -> None:
    """A lazily generated 200 MB tar streams through with a peak far below its size."""
    block = PNG + b"\x01" * (1024 * 1024 - len(PNG))  # stored: measures streaming, not zlib
    per_file, count = 25 * 1024 * 1024, 8

    def lazy_tar() -> Iterator[bytes]:
        for index in range(count):
            info = tarfile.TarInfo(f"prod/{index:02x}/{index:040x}")
            info.size = per_file
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            for _ in range(per_file // len(block)):
                yield block
        yield bytes(2 * tarfile.BLOCKSIZE)

    sink = WriteOnly(keep=False)
    manifest = build_manifest("prod", "19.0", "16.0", {})
    tracemalloc.start()
    try:
        stats = write_odoo_zip(
            cast(BinaryIO, sink),
            manifest=manifest,
            dump_sql=[b"SELECT 1;\n"],
            filestore_tar=lazy_tar(),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.files == count
    assert sink.size > per_file * count
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes"


# ----------------------------------------------------------------------- refused exports


def test_tar_with_a_symlink_is_refused_and_leaves_no_readable_zip() -> None:
    """A link in the filestore stops the export; the partial output is not a zip."""
    link = tarfile.TarInfo("prod/ab/evil")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    sink = WriteOnly()
    with pytest.raises(OdooOpsError) as caught:
        write_odoo_zip(
            cast(BinaryIO, sink),
            manifest=build_manifest("prod", "19.0", "16.0", {}),
            dump_sql=[DUMP],
            filestore_tar=[docker_tar("prod", FILES, [link])],
        )
    assert caught.value.code == "filestore_invalid"
    assert "find /var/lib/odoo/filestore" in caught.value.remediation
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(sink.data)))


def test_truncated_tar_is_a_retryable_filestore_error() -> None:
    """A stream cut off mid-file (the container went away) may succeed on the next try."""
    stream = docker_tar("prod", {"ab/ab34": b"x" * 100_000})
    with pytest.raises(OdooOpsError) as caught:
        write_odoo_zip(
            cast(BinaryIO, WriteOnly()),
            manifest=build_manifest("prod", "19.0", "16.0", {}),
            dump_sql=[DUMP],
            filestore_tar=[stream[:50_000]],
        )
    assert (caught.value.code, caught.value.retryable) == ("filestore_invalid", True)


def test_failing_dump_stream_leaves_no_readable_zip() -> None:
    """An error from pg_dump's stream propagates unchanged; no central directory is written."""

    def failing_dump() -> Iterator[bytes]:
        yield DUMP
        raise RuntimeError("pg_dump exited with 1")

    sink = WriteOnly()
    with pytest.raises(RuntimeError, match="pg_dump exited"):
        write_odoo_zip(
            cast(BinaryIO, sink),
            manifest=build_manifest("prod", "19.0", "16.0", {}),
            dump_sql=failing_dump(),
            filestore_tar=None,
        )
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(sink.data)))


@pytest.mark.parametrize(
    ("name", "why"),
    [("../prod/ab/x", "escapes"), ("/prod/ab/x", "absolute"), ("other/ab/x", "second database")],
)
def test_tar_member_outside_the_database_folder_is_refused(name: str, why: str) -> None:
    """Members that escape, are absolute, or belong to another database stop the export."""
    member = tarfile.TarInfo(name)
    member.size = 0
    with pytest.raises(OdooOpsError) as caught:
        write_odoo_zip(
            cast(BinaryIO, WriteOnly()),
            manifest=build_manifest("prod", "19.0", "16.0", {}),
            dump_sql=[DUMP],
            filestore_tar=[docker_tar("prod", FILES, [member])],
        )
    assert caught.value.code == "filestore_invalid", why


# ------------------------------------------------------------------------ refused imports


@pytest.mark.parametrize(
    "member",
    ["../evil.sh", "filestore/../../etc/cron.d/x", "/etc/passwd", "filestore\\..\\x", "C:/x"],
)
def test_zip_slip_member_is_refused(tmp_path: Path, member: str) -> None:
    """A member name that could land outside the filestore refuses the whole archive."""
    path = tmp_path / "slip.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("dump.sql", DUMP)
        info = zipfile.ZipInfo("placeholder")
        info.filename = member  # bypass ZipInfo's own clean-up, as a hostile tool would
        zf.writestr(info, b"x")
    assert error_code(path) == "odoo_dump_invalid"


def test_zip_without_dump_sql_is_refused(tmp_path: Path) -> None:
    """No dump.sql at the top level is not an Odoo backup, even with a filestore."""
    path = crafted_zip(tmp_path, {"backup/dump.sql": DUMP, "filestore/ab/ab12": b"x"})
    assert error_code(path) == "odoo_dump_invalid"


def test_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    """Any other file is refused with the same code."""
    path = tmp_path / "backup.zip"
    path.write_bytes(b"<html>login required</html>")
    assert error_code(path) == "odoo_dump_invalid"


@pytest.mark.parametrize(
    "manifest",
    [
        b"{not json",
        b"[1, 2]",
        b'{"db_name": "prod", "major_version": "19.0"}',
        b'{"odoo_dump": "1", "db_name": "prod"}',
        b'{"odoo_dump": "1", "major_version": "19.0", "modules": ["base"]}',
    ],
)
def test_malformed_manifest_is_refused(tmp_path: Path, manifest: bytes) -> None:
    """A manifest.json that is not Odoo's (odoo_dump, major_version, modules) is refused."""
    path = crafted_zip(tmp_path, {"dump.sql": DUMP, "manifest.json": manifest})
    assert error_code(path) == "odoo_dump_invalid"


def test_zip_without_manifest_is_accepted_with_an_unknown_version(tmp_path: Path) -> None:
    """Odoo restores without manifest.json, so do we; the version never matches then."""
    path = crafted_zip(tmp_path, {"dump.sql": DUMP, "filestore/ab/ab12": b"x"})
    with read_odoo_zip(path) as archive:
        assert archive.manifest.inferred
        assert archive.manifest.db_name == "unknown"
        assert archive.manifest.modules == {}
        assert not archive.major_version_matches("19.0")
        assert archive.filestore_files() == 1


@pytest.mark.parametrize(
    ("wanted", "expected"), [("19.0", True), ("19", True), ("18.0", False), ("saas~18.4", False)]
)
def test_major_version_matches(tmp_path: Path, wanted: str, expected: bool) -> None:
    """Only the manifest's major version matches."""
    manifest = json.dumps(build_manifest("prod", "19.0+e", "16.0", {})).encode()
    path = crafted_zip(tmp_path, {"dump.sql": DUMP, "manifest.json": manifest})
    with read_odoo_zip(path) as archive:
        assert archive.major_version_matches(wanted) is expected


def test_target_database_name_must_be_one_path_component(tmp_path: Path) -> None:
    """The tar cannot be aimed outside the filestore folder by the database name."""
    path = crafted_zip(tmp_path, {"dump.sql": DUMP})
    with read_odoo_zip(path) as archive, pytest.raises(ValueError):
        archive.filestore_tar("../etc")


# ----------------------------------------------------------------------------- formats


def test_custom_format_dump_is_recognised_by_its_magic() -> None:
    """pg_dump -Fc output starts with PGDMP; plain SQL does not."""
    assert dump_is_custom_format(b"PGDMP\x01\x0e\x00")
    assert not dump_is_custom_format(DUMP[:64])


def test_custom_format_dump_inside_a_zip_needs_pg_restore(tmp_path: Path) -> None:
    """A zip whose dump.sql is a custom-format archive says so."""
    path = crafted_zip(tmp_path, {"dump.sql": b"PGDMP\x01\x0e\x00" + b"\x00" * 100})
    with read_odoo_zip(path) as archive:
        assert archive.dump_sql_format() == "pgdump"


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"PGDMP\x01\x0e\x00\x04\x08", "pgdump"), (DUMP[:500], "sql"), (None, "zip")],
)
def test_detect_format_by_content(tmp_path: Path, content: bytes | None, expected: str) -> None:
    """Odoo's zip, its 'dump' format (pg_dump custom) and plain SQL are told apart by content."""
    if content is None:
        path = crafted_zip(tmp_path, {"dump.sql": DUMP})
    else:
        path = tmp_path / "backup.bin"
        path.write_bytes(content)
    assert detect_format(path) == expected


@pytest.mark.parametrize("content", [b"\x1f\x8b\x08\x00gzip", b"\x00\x01binary", b"PK\x03\x04bad"])
def test_detect_format_refuses_anything_else(tmp_path: Path, content: bytes) -> None:
    """gzip, binary noise and a broken zip are refused with a remediation."""
    path = tmp_path / "backup.bin"
    path.write_bytes(content)
    with pytest.raises(OdooOpsError) as caught:
        detect_format(path)
    assert caught.value.code == "odoo_dump_invalid"
    assert caught.value.remediation


@pytest.mark.parametrize(
    ("version", "info", "major"),
    [
        ("19.0", [19, 0, 0, "final", 0, ""], "19.0"),
        ("19.0+e", [19, 0, 0, "final", 0, "+e"], "19.0"),
        ("saas~18.4", ["saas~18", 4, 0, "final", 0, ""], "saas~18.4"),
        ("19.0rc1", [19, 0, 0, "candidate", 1, ""], "19.0"),
    ],
)
def test_manifest_version_info_follows_odoo_release(
    version: str, info: list[object], major: str
) -> None:
    """version_info and major_version are what odoo.release derives from the version."""
    assert version_info(version) == info
    assert build_manifest("db", version, "16.0", {})["major_version"] == major


def test_pg_version_is_written_the_way_odoo_does() -> None:
    """server_version 160004 is '16.0', 90624 is '9.6' (Odoo's divmod formula)."""
    assert pg_version_string(160004) == "16.0"
    assert pg_version_string(90624) == "9.6"

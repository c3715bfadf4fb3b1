"""Odoo's database-manager backup zip, converted to and from the streams OdooOps already has.

Users move data in and out in the format Odoo itself writes (``/web/database/backup`` with
format zip, ``odoo db dump``, Odoo.sh downloads) so a backup taken here restores in any Odoo and
the other way round. The engine already holds the pieces as streams: ``pg_dump --no-owner
--format=plain`` stdout, and the filestore as the tar stream Docker's ``get_archive`` returns.
This module only converts streams; it starts no process and opens no connection.

Layout, as ``odoo/service/db.py`` ``dump_db`` writes it (it zips a temporary directory, sorting
``dump.sql`` before the other files of each directory and walking the root before
``filestore/``): ``dump.sql`` first, then ``manifest.json``, then ``filestore/<ab>/<sha1>`` for
every file, with no directory entries. We write exactly that order. ``dump.sql`` comes first
because it is the largest member and the one a reader needs first; writing it first also means
the zip is produced in one pass while ``pg_dump`` runs.

Export writes to a sink that may not seek (a pipe, an HTTP response body): ``zipfile`` then
marks every member with a data descriptor, and ``dump.sql``, whose size nobody knows in advance,
is opened with ``force_zip64`` so a dump above 4 GiB does not fail at the end. Filestore members
carry their size from the tar header, so ``zipfile`` chooses zip64 only where it is needed.
Nothing is held in memory beyond a chunk: the tar is read with ``tarfile`` in stream mode.
If anything fails half-way, the central directory is never written, so a broken export cannot
be mistaken for a complete, smaller backup.

Import needs a seekable file (a zip's directory is at its end): the API and CLI save an upload
to a temporary file first. Every member name is checked once on opening (absolute paths, ``..``,
backslashes, drive letters are refused) so no later step can be tricked into writing outside
the filestore. ``manifest.json`` is optional, because Odoo's own ``restore_db`` never reads it
(it extracts ``dump.sql`` and ``filestore/**`` only) and hand-made zips omit it; without one the
version is unknown (``OdooDumpManifest.inferred``) and ``major_version_matches`` answers False,
so a caller decides explicitly whether to restore a dump of unknown version.

The other Odoo backup flavour, format "dump", is a bare ``pg_dump --format=custom`` file with no
filestore; ``detect_format`` tells the three inputs apart, and ``dump_is_custom_format`` spots a
custom-format dump hiding inside a zip's ``dump.sql``: it needs ``pg_restore``, not ``psql``.
"""

from __future__ import annotations

import calendar
import contextlib
import io
import json
import re
import stat
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import IO, Any, BinaryIO, Final, Literal

from reconciler.core.errors import OdooOpsError

DUMP_INVALID: Final = "odoo_dump_invalid"
FILESTORE_INVALID: Final = "filestore_invalid"

DUMP_SQL: Final = "dump.sql"
MANIFEST_JSON: Final = "manifest.json"
FILESTORE_PREFIX: Final = "filestore/"

CHUNK: Final = 1024 * 1024
"""Size of the pieces streamed in both directions: big enough for throughput, small in memory."""

_MANIFEST_MAX: Final = 16 * 1024 * 1024
_FAST_DEFLATE_ABOVE: Final = 4 * 1024 * 1024
_SNIFF: Final = 64 * 1024

_LEVELS: Final = {"alpha": "alpha", "beta": "beta", "rc": "candidate", "": "final"}
_VERSION: Final = re.compile(
    r"^(?P<saas>saas~)?(?P<major>\d+)\.(?P<minor>\d+)"
    r"(?:(?P<level>alpha|beta|rc)(?P<serial>\d+))?(?P<extra>.*)$"
)
_DRIVE: Final = re.compile(r"^[A-Za-z]:")
_ZIP_METHODS: Final = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)

# Magic numbers of formats that are compressed already; deflating them again costs CPU for
# nothing. Office documents (docx, xlsx, odt) are zips and match PK\x03\x04.
_COMPRESSED_MAGIC: Final = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"PK\x03\x04",  # zip, docx, xlsx, odt, jar
    b"%PDF",
    b"\x1f\x8b",  # gzip
    b"\xfd7zXZ\x00",
    b"\x28\xb5\x2f\xfd",  # zstd
    b"7z\xbc\xaf\x27\x1c",
    b"Rar!\x1a\x07",
    b"OggS",
    b"fLaC",
    b"ID3",  # mp3
    b"wOFF",
    b"wOF2",
    b"\x1a\x45\xdf\xa3",  # webm, mkv
)


def _invalid_dump(message: str, remediation: str) -> OdooOpsError:
    return OdooOpsError(message, remediation=remediation, code=DUMP_INVALID, retryable=False)


def _unzip_hint(path: Path | str) -> str:
    return (
        f"list its members with `unzip -l {path}`: an Odoo backup zip holds dump.sql at the top "
        "level, optionally manifest.json and filestore/<ab>/<sha1> files; a zip of the "
        "extracted folder can be rebuilt with `cd FOLDER && zip -r ../backup.zip dump.sql "
        "manifest.json filestore`"
    )


# --------------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class OdooDumpManifest:
    """What ``manifest.json`` says about a dump; ``raw`` keeps every key as read."""

    db_name: str
    version: str
    major_version: str
    pg_version: str
    modules: Mapping[str, str]
    raw: Mapping[str, Any]

    @property
    def inferred(self) -> bool:
        """True when the zip had no ``manifest.json``: version and modules are unknown."""
        return not self.raw


def version_info(version: str) -> list[Any]:
    """Odoo's ``release.version_info`` for a version string, e.g. ``[19, 0, 0, 'final', 0, '']``.

    Accepts what ``odoo.release.version`` prints: ``19.0``, ``19.0+e``, ``saas~18.4``,
    ``19.0rc1``, ``saas~18.4alpha1``. Raises ``ValueError`` for anything else.
    """
    found = _VERSION.match(version.strip())
    if found is None:
        raise ValueError(f"not an Odoo version: {version!r} (expected e.g. 19.0 or saas~18.4)")
    major: int | str = int(found["major"])
    if found["saas"]:
        major = f"saas~{major}"
    level = _LEVELS[found["level"] or ""]
    return [major, int(found["minor"]), 0, level, int(found["serial"] or 0), found["extra"]]


def pg_version_string(server_version: int) -> str:
    """``pg_version`` as Odoo writes it from ``server_version`` (160004 -> ``16.0``)."""
    # Odoo computes "%d.%d" % divmod(server_version / 100, 100): for PostgreSQL 10 and later
    # the minor part is always 0, for 9.x it is the second digit.
    major, minor = divmod(server_version // 100, 100)
    return f"{major}.{minor}"


def build_manifest(
    db_name: str, version: str, pg_version: str, modules: Mapping[str, str]
) -> dict[str, Any]:
    """``manifest.json`` with exactly the keys Odoo's ``dump_db_manifest`` writes.

    ``version`` is ``odoo.release.version`` of the image (``19.0``); ``pg_version`` as
    ``pg_version_string`` gives it; ``modules`` maps installed module names to
    ``ir_module_module.latest_version``.
    """
    info = version_info(version)
    return {
        "odoo_dump": "1",
        "db_name": db_name,
        "version": version,
        "version_info": info,
        "major_version": f"{info[0]}.{info[1]}",
        "pg_version": pg_version,
        "modules": dict(modules),
    }


def _parse_manifest(data: bytes, path: Path) -> OdooDumpManifest:
    def bad(why: str) -> OdooOpsError:
        return _invalid_dump(
            f"{path}: manifest.json {why}",
            f"inspect it with `unzip -p {path} manifest.json`; it must be a JSON object with "
            '"odoo_dump": "1" and "major_version" (e.g. "19.0"); or remove it with '
            f"`zip -d {path} manifest.json` to import the dump without version checks",
        )

    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise bad("is not a JSON object")
    if "odoo_dump" not in raw:
        raise bad('has no "odoo_dump" key, so it is not an Odoo backup manifest')
    major = raw.get("major_version")
    if not isinstance(major, str) or not major.strip():
        raise bad('has no "major_version"')
    modules = raw.get("modules", {})
    if not isinstance(modules, dict) or not all(isinstance(k, str) for k in modules):
        raise bad('"modules" is not an object of module name to version')
    fields = {}
    for key, default in (("db_name", "unknown"), ("version", major), ("pg_version", "")):
        value = raw.get(key, default)
        if not isinstance(value, str):
            raise bad(f'"{key}" is not a string')
        fields[key] = value
    return OdooDumpManifest(
        db_name=fields["db_name"],
        version=fields["version"],
        major_version=major.strip(),
        pg_version=fields["pg_version"],
        # latest_version may be NULL in ir_module_module: keep the module, version unknown.
        modules=MappingProxyType({k: "" if v is None else str(v) for k, v in modules.items()}),
        raw=MappingProxyType(raw),
    )


_NO_MANIFEST: Final = OdooDumpManifest(
    db_name="unknown",
    version="",
    major_version="",
    pg_version="",
    modules=MappingProxyType({}),
    raw=MappingProxyType({}),
)


def _normalise_major(major: str) -> str:
    major = major.strip()
    return major if "." in major else f"{major}.0"


# ---------------------------------------------------------------------------------- formats


def dump_is_custom_format(head: bytes) -> bool:
    """True for a ``pg_dump --format=custom`` archive: restore it with pg_restore, not psql."""
    return head.startswith(b"PGDMP")


def _looks_like_sql(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    return text.startswith(("--", "/*", "\\", "SET ", "BEGIN", "CREATE ", "SELECT "))


def detect_format(path: Path) -> Literal["zip", "pgdump", "sql"]:
    """Which of Odoo's backup flavours a file is: its zip, a custom-format dump, or plain SQL.

    Decided by content, never by the file name, since downloads are often renamed.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except FileNotFoundError:
        raise _invalid_dump(f"{path}: no such file", f"ls -l {path}") from None
    if dump_is_custom_format(head):
        return "pgdump"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")) and zipfile.is_zipfile(path):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        raise _invalid_dump(
            f"{path}: is gzip-compressed",
            f"decompress it first with `gunzip --keep {path}` and import the result",
        )
    if _looks_like_sql(head):
        return "sql"
    raise _invalid_dump(
        f"{path}: is neither an Odoo backup zip, nor a pg_dump custom-format dump, nor SQL",
        f"check what it is with `file {path}`; download the backup again from Odoo's "
        "database manager (format zip) or run `pg_dump --format=custom`",
    )


# ----------------------------------------------------------------------------- member paths


def _relative_parts(name: str) -> tuple[str, ...] | None:
    """The components of a safe relative path, or None for an absolute or escaping one."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name or _DRIVE.match(name):
        return None
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        return None
    return parts


def _check_db_name(db_name: str) -> None:
    if _relative_parts(db_name) != (db_name,):
        raise ValueError(f"not a database name: {db_name!r}")


# ---------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class ZipStats:
    """What an export wrote: filestore files, uncompressed bytes in, zip bytes out."""

    files: int
    bytes_in: int
    bytes_out: int


class _Sink:
    """The caller's stream behind ``write`` only, so ``zipfile`` always streams.

    Without ``tell``, ``zipfile`` writes data descriptors instead of seeking back, whatever
    the sink; the same bytes come out for a file, a pipe or a socket. ``abandon`` drops every
    later write, so closing the ``ZipFile`` after a failure cannot append a central directory.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._abandoned = False
        self.written = 0

    def write(self, data: bytes) -> int:
        if self._abandoned:
            return len(data)
        view = memoryview(data)
        while view:
            n = self._out.write(view)
            if n is None:  # adapters that do not count (a queue, a response body) take all
                break
            view = view[n:]  # a raw file may take part of it
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        flush = getattr(self._out, "flush", None)  # a bare writer (an HTTP body) may lack it
        if flush is not None and not self._abandoned:
            flush()

    def close(self) -> None:
        """The caller owns ``out``: closing the zip must not close it."""

    def abandon(self) -> None:
        self._abandoned = True


def _zip_info(name: str, mtime: float, compress_type: int, level: int | None) -> zipfile.ZipInfo:
    year = time.gmtime(mtime).tm_year
    stamp = time.gmtime(mtime)[:6] if 1980 <= year <= 2107 else (1980, 1, 1, 0, 0, 0)
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = compress_type
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    if sys.version_info >= (3, 13):
        info.compress_level = level
    else:
        info._compresslevel = level  # type: ignore[attr-defined]  # public only from 3.13
    return info


def _filestore_compression(head: bytes, size: int) -> tuple[int, int | None]:
    """Store what is compressed already; deflate the rest, fast for big files."""
    if size == 0 or head.startswith(_COMPRESSED_MAGIC):
        return zipfile.ZIP_STORED, None
    if (head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"AVI ")) or head[4:8] == b"ftyp":
        return zipfile.ZIP_STORED, None  # webp, avi; mp4, mov, heic, avif
    return zipfile.ZIP_DEFLATED, (1 if size > _FAST_DEFLATE_ABOVE else 6)


class _IterableReader(io.RawIOBase):
    """A readable file over an iterable of byte chunks, for ``tarfile`` in stream mode."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        filled = 0
        # Fill completely unless the stream ends: tarfile sniffs compression from one read.
        while filled < len(target):
            if not self._pending:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._pending = memoryview(chunk).cast("B")
                continue
            n = min(len(target) - filled, len(self._pending))
            target[filled : filled + n] = self._pending[:n]
            self._pending = self._pending[n:]
            filled += n
        return filled

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        buffer = bytearray(size)
        n = self.readinto(buffer)
        del buffer[n:]
        return bytes(buffer)


def _write_filestore(zf: zipfile.ZipFile, filestore_tar: Iterable[bytes]) -> tuple[int, int]:
    """Copy every regular file of a Docker ``get_archive`` tar into ``filestore/``."""

    def bad(why: str) -> OdooOpsError:
        return OdooOpsError(
            f"the filestore archive {why}",
            remediation="list what is not a plain file or directory with `docker exec "
            "CONTAINER find /var/lib/odoo/filestore/DB ! -type f ! -type d`, remove it, "
            "then export again",
            code=FILESTORE_INVALID,
        )

    files = size_in = 0
    root: str | None = None
    try:
        with tarfile.open(fileobj=_IterableReader(filestore_tar), mode="r|*", bufsize=CHUNK) as tar:
            for member in tar:
                parts = _relative_parts(member.name)
                if parts is None:
                    raise bad(f"has an unsafe member name {member.name!r}")
                if not parts:  # "." of `tar -C DIR .`
                    continue
                if root is None:
                    root = parts[0]
                elif parts[0] != root:
                    raise bad(f"holds two databases, {root!r} and {parts[0]!r}")
                if member.isdir():
                    continue
                if not member.isreg():
                    raise bad(f"has {member.name!r}, a link or device, not a regular file")
                if len(parts) == 1:
                    raise bad(f"has {member.name!r}, a file where the database folder belongs")
                src = tar.extractfile(member)
                assert src is not None  # isreg() members always have a file object
                name = FILESTORE_PREFIX + "/".join(parts[1:])
                size_in += _copy_member(zf, name, src, member.size, member.mtime)
                files += 1
    except tarfile.TarError as exc:
        raise OdooOpsError(
            f"the filestore archive is truncated or corrupt: {exc}",
            remediation="export again; if it persists, check the volume with `docker exec "
            "CONTAINER du -sh /var/lib/odoo/filestore/DB`",
            code=FILESTORE_INVALID,
            retryable=True,
        ) from None
    return files, size_in


def _copy_member(zf: zipfile.ZipFile, name: str, src: IO[bytes], size: int, mtime: float) -> int:
    head = src.read(min(_SNIFF, size))
    method, level = _filestore_compression(head, size)
    info = _zip_info(name, mtime, method, level)
    info.file_size = size  # known from the tar header: zip64 only if the file needs it
    copied = len(head)
    with zf.open(info, "w") as dst:
        dst.write(head)
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            copied += len(chunk)
    return copied


def write_odoo_zip(
    out: BinaryIO,
    *,
    manifest: Mapping[str, Any],
    dump_sql: Iterable[bytes],
    filestore_tar: Iterable[bytes] | None,
) -> ZipStats:
    """Stream an Odoo backup zip to ``out`` (which need not seek) and say what went in.

    ``dump_sql`` is ``pg_dump --no-owner --format=plain`` stdout; ``filestore_tar`` is Docker's
    ``get_archive('/var/lib/odoo/filestore/<db>')`` stream (its first path component, the
    database name, is dropped) or None for a backup without filestore. ``out`` is flushed,
    never closed. On failure ``out`` holds a truncated stream that no zip reader accepts.
    """
    sink = _Sink(out)
    zf = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
    try:
        size_in = 0
        now = time.time()
        # Size unknown until pg_dump ends: zip64 from the start, or a dump above 4 GiB fails.
        with zf.open(
            _zip_info(DUMP_SQL, now, zipfile.ZIP_DEFLATED, 6), "w", force_zip64=True
        ) as dst:
            for chunk in dump_sql:
                dst.write(chunk)
                size_in += len(chunk)
        document = json.dumps(dict(manifest), indent=4).encode()
        zf.writestr(_zip_info(MANIFEST_JSON, now, zipfile.ZIP_DEFLATED, 6), document)
        files = 0
        if filestore_tar is not None:
            files, filestore_in = _write_filestore(zf, filestore_tar)
            size_in += filestore_in
        zf.close()
    except BaseException:
        sink.abandon()
        with contextlib.suppress(Exception):  # the first error is the one to report
            zf.close()
        raise
    sink.flush()
    return ZipStats(files=files, bytes_in=size_in, bytes_out=sink.written)


# ---------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _FilestoreEntry:
    parts: tuple[str, ...]  # below filestore/
    info: zipfile.ZipInfo


class OdooDumpArchive:
    """An opened, validated Odoo backup zip; use it as a context manager.

    Opening checks the whole central directory (names, compression, ``dump.sql``, the
    manifest) so a bad upload fails before any database is created.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise _invalid_dump(f"{path}: no such file", f"ls -l {path}") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
            raise self._not_a_zip(exc) from None
        try:
            self._entries, dump = self._validate()
            self.manifest = self._read_manifest()
        except BaseException:
            self._zip.close()
            raise
        self._dump = dump

    def _not_a_zip(self, exc: Exception) -> OdooOpsError:
        try:
            with self.path.open("rb") as fh:
                head = fh.read(5)
        except OSError:
            head = b""
        if dump_is_custom_format(head):
            return _invalid_dump(
                f"{self.path}: is a pg_dump custom-format dump (Odoo's 'dump' backup format), "
                "not a zip",
                f"import it as a custom-format dump; `pg_restore --list {self.path}` shows it",
            )
        return _invalid_dump(f"{self.path}: is not a zip file ({exc})", f"file {self.path}")

    def _validate(self) -> tuple[list[_FilestoreEntry], zipfile.ZipInfo]:
        entries: list[_FilestoreEntry] = []
        dump: zipfile.ZipInfo | None = None
        for info in self._zip.infolist():
            parts = _relative_parts(info.filename)
            if parts is None:
                raise _invalid_dump(
                    f"{self.path}: member {info.filename!r} points outside the archive",
                    "this zip was not written by Odoo and is refused; " + _unzip_hint(self.path),
                )
            if not parts:  # "./": names nothing
                continue
            if info.flag_bits & 0x1:
                raise _invalid_dump(
                    f"{self.path}: member {info.filename!r} is encrypted",
                    f"extract it with `unzip {self.path}` and zip it again without a password",
                )
            if info.compress_type not in _ZIP_METHODS:
                raise _invalid_dump(
                    f"{self.path}: member {info.filename!r} uses compression method "
                    f"{info.compress_type}, which Odoo cannot read either",
                    "extract it and zip it again with `zip -r`; " + _unzip_hint(self.path),
                )
            if parts == (DUMP_SQL,) and not info.is_dir():
                dump = info
            elif parts[0] == "filestore" and len(parts) > 1:
                entries.append(_FilestoreEntry(parts[1:], info))
        if dump is None:
            raise _invalid_dump(
                f"{self.path}: has no dump.sql at its top level", _unzip_hint(self.path)
            )
        return entries, dump

    def _read_manifest(self) -> OdooDumpManifest:
        try:
            info = self._zip.getinfo(MANIFEST_JSON)
        except KeyError:
            return _NO_MANIFEST
        if info.file_size > _MANIFEST_MAX:
            raise _invalid_dump(
                f"{self.path}: manifest.json is {info.file_size} bytes, too big for a manifest",
                f"inspect it with `unzip -p {self.path} manifest.json | head`",
            )
        return _parse_manifest(self._read_member(info), self.path)

    def _read_member(self, info: zipfile.ZipInfo) -> bytes:
        try:
            with self._zip.open(info) as fh:
                return fh.read()
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise self._corrupt(info, exc) from None

    def _corrupt(self, info: zipfile.ZipInfo, exc: Exception) -> OdooOpsError:
        return _invalid_dump(
            f"{self.path}: member {info.filename!r} is corrupt ({exc})",
            f"test the archive with `unzip -t {self.path}` and download it again",
        )

    def __enter__(self) -> OdooDumpArchive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def open_dump_sql(self) -> IO[bytes]:
        """``dump.sql``, decompressed as it is read; check ``dump_sql_format`` first."""
        return self._zip.open(self._dump)

    def dump_sql_format(self) -> Literal["sql", "pgdump"]:
        """How to restore ``dump.sql``: ``psql`` for sql, ``pg_restore`` for pgdump."""
        with self.open_dump_sql() as fh:
            return "pgdump" if dump_is_custom_format(fh.read(5)) else "sql"

    def filestore_files(self) -> int:
        """How many files ``filestore/`` holds (directories not counted)."""
        return sum(1 for entry in self._entries if not entry.info.is_dir())

    def major_version_matches(self, major: str) -> bool:
        """True when the manifest names this major version; False too when it is unknown."""
        known = self.manifest.major_version
        return bool(known) and _normalise_major(known) == _normalise_major(major)

    def filestore_tar(self, db_name: str, *, uid: int = 0, gid: int = 0) -> Iterator[bytes]:
        """``filestore/**`` as a tar stream of ``<db_name>/**`` for Docker's ``put_archive``.

        Meant for ``put_archive('/var/lib/odoo/filestore', ...)``. Directories come before
        their files, files are 0644 and directories 0755, times are the zip's. Docker keeps
        the tar's owner, so pass the Odoo user's ids (``docker exec CONTAINER id -u odoo``)
        or Odoo cannot add attachments to the restored folders. Generated on the fly in
        chunks of about ``CHUNK`` bytes.
        """
        _check_db_name(db_name)
        tar = _TarStream(db_name, uid, gid)
        return _rechunk(tar.pieces(self._entries, self._file_data), CHUNK)

    def _file_data(self, info: zipfile.ZipInfo) -> Iterator[bytes]:
        copied = 0
        try:
            with self._zip.open(info) as src:
                while chunk := src.read(CHUNK):
                    copied += len(chunk)
                    yield chunk
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise self._corrupt(info, exc) from None
        if copied != info.file_size:
            raise self._corrupt(info, EOFError(f"{copied} of {info.file_size} bytes"))


class _TarStream:
    """Writes a ustar/pax stream piece by piece, so no member is ever held whole in memory.

    ``tarfile.addfile`` copies a member in one call, which would buffer a large file
    entirely before the first byte could be sent; headers from ``TarInfo.tobuf`` plus the
    data and its padding are the same bytes, produced lazily.
    """

    def __init__(self, db_name: str, uid: int, gid: int) -> None:
        self._db_name = db_name
        self._uid = uid
        self._gid = gid
        self._made: set[tuple[str, ...]] = set()

    def pieces(
        self,
        entries: Iterable[_FilestoreEntry],
        data: Callable[[zipfile.ZipInfo], Iterator[bytes]],
    ) -> Iterator[bytes]:
        written = 0
        for piece in self._all(entries, data):
            written += len(piece)
            yield piece
        end = 2 * tarfile.BLOCKSIZE
        yield bytes(end + -(written + end) % tarfile.RECORDSIZE)

    def _all(
        self,
        entries: Iterable[_FilestoreEntry],
        data: Callable[[zipfile.ZipInfo], Iterator[bytes]],
    ) -> Iterator[bytes]:
        yield from self._directories((), time.time())
        for entry in entries:
            mtime = calendar.timegm((*entry.info.date_time, 0, 0, 0))
            if entry.info.is_dir():
                yield from self._directories(entry.parts, mtime)
                continue
            yield from self._directories(entry.parts[:-1], mtime)
            size = entry.info.file_size
            yield self._header(entry.parts, tarfile.REGTYPE, 0o644, size, mtime)
            yield from data(entry.info)
            yield bytes(-size % tarfile.BLOCKSIZE)

    def _directories(self, parts: tuple[str, ...], mtime: float) -> Iterator[bytes]:
        """Headers of ``parts`` and each of its parents not written yet, outermost first."""
        for depth in range(len(parts) + 1):
            path = parts[:depth]
            if path not in self._made:
                self._made.add(path)
                yield self._header(path, tarfile.DIRTYPE, 0o755, 0, mtime)

    def _header(
        self, parts: tuple[str, ...], kind: bytes, mode: int, size: int, mtime: float
    ) -> bytes:
        info = tarfile.TarInfo("/".join((self._db_name, *parts)))
        info.type, info.mode, info.size, info.mtime = kind, mode, size, int(mtime)
        info.uid, info.gid = self._uid, self._gid
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _rechunk(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    """Group small pieces (headers, padding) into chunks of at least ``size`` bytes."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def read_odoo_zip(path: Path) -> OdooDumpArchive:
    """Open and validate an Odoo backup zip saved to ``path`` (it must be a seekable file)."""
    return OdooDumpArchive(path)

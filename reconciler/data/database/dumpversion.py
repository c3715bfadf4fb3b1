"""Which PostgreSQL a dump comes from, and whether the target can load it, decided before
anything is changed.

A dump loads into a server of its own major version or newer, never into an older one: its
SQL may use syntax or settings the older server lacks (``pg_dump`` 17 writes ``SET
transaction_timeout``, which PostgreSQL 16 rejects), and PostgreSQL promises nothing about
loading into an older major, "not even if the dump was taken from a server of that version"
(``pg_dump``'s documentation). The client that loads it must not be older than the
``pg_dump`` that wrote it either: ``pg_restore`` refuses a newer archive format, and ``psql``
splits statements with the lexer of its own version (``BEGIN ATOMIC`` bodies are one
statement only from 14 on).

So three versions are compared: what the dump says about itself, the target server's major
version, and the loading client's (``psql`` or ``pg_restore`` of the platform image, asked
once per image). A dump says it in the header ``pg_dump`` writes: the comments ``-- Dumped
from database version 17.6 (Debian 17.6-1.pgdg120+1)`` and ``-- Dumped by pg_dump version
17.6`` at the top of plain SQL, the same two strings in a custom-format archive's header, and
for Odoo's zip also ``manifest.json``'s ``pg_version``. A dump that says nothing (SQL written
by hand) is not checked. The header is only a claim: it serves a clear refusal up front, not
safety; a forged one gains nothing (the load then fails in the scratch database).

Everything here is pure: parsing bytes and deciding; the caller asks the server and the image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final, Literal

from reconciler.core.errors import OdooOpsError

DUMP_TOO_NEW: Final = "dump_too_new"

HEAD_BYTES: Final = 64 * 1024  # the header comes first: pg_dump's is a few hundred bytes

_NUMBER = re.compile(r"([0-9]{1,4})(?:\.([0-9]{1,4}))?")
_UNPRINTABLE = re.compile(r"[^ -~]")  # a version string comes from the upload, and is shown
_SHOWN = 80
_SQL_HEADER = re.compile(
    rb"-- Dumped (?P<what>from database|by pg_dump) version (?P<version>[^\r\n]*)\r?"
)
_RESTRICT = re.compile(rb"\\(?:un)?restrict [A-Za-z0-9]+\r?")
_TOOL_OUTPUT = re.compile(r"\(PostgreSQL\) ([^\n]+)")
_HEADER_LINES = 100  # pg_dump -v writes a few more comments; the first statement ends it
# Custom-format archive (pg_backup_archiver.c, ReadHead): versions are MAKE_ARCHIVE_VERSION.
_ARCHIVE_MAGIC = b"PGDMP"
_K_VERS_1_7 = (1, 7)  # offSize
_K_VERS_1_10 = (1, 10)  # the two version strings
_K_VERS_1_15 = (1, 15)  # compression as one byte
_MAX_STRING = 4096


class DumpTooNew(OdooOpsError):
    """The dump comes from a newer PostgreSQL than the target server or its loading client."""

    code = DUMP_TOO_NEW
    retryable = False


@dataclass(frozen=True)
class PgVersion:
    """A PostgreSQL version as written (``17.6 (Debian 17.6-1.pgdg120+1)``) and its major
    version: one number from 10 on, two before (``9.6``)."""

    major: tuple[int, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> PgVersion | None:
        """``17.6 (Debian ...)``, ``18beta1``, ``9.6.24``, Odoo's ``16.0``; None for anything
        that does not start with a version number."""
        text = _UNPRINTABLE.sub("?", text.strip())[:_SHOWN]
        found = _NUMBER.match(text)
        if found is None:
            return None
        first = int(found[1])
        major = (first,) if first >= 10 else (first, int(found[2] or 0))
        return cls(major, text)

    @classmethod
    def of_number(cls, number: int, text: str = "") -> PgVersion:
        """From ``server_version_num`` (``150020``), shown as ``text`` when given."""
        first = number // 10000
        if first >= 10:
            return cls((first,), text or f"{first}.{number % 10000}")
        second, minor = divmod(number % 10000, 100)
        return cls((first, second), text or f"{first}.{second}.{minor}")

    @property
    def major_text(self) -> str:
        return ".".join(str(n) for n in self.major)


@dataclass(frozen=True)
class DumpVersions:
    """What a dump says about where it comes from; None where it says nothing."""

    server: PgVersion | None = None  # "Dumped from database version"
    pg_dump: PgVersion | None = None  # "Dumped by pg_dump version"
    server_from: str = "its header"  # where ``server`` was read


def of_tool(output: str) -> PgVersion | None:
    """The version ``psql --version`` or ``pg_restore --version`` prints: ``psql
    (PostgreSQL) 15.14 (Debian 15.14-1.pgdg120+1)``."""
    found = _TOOL_OUTPUT.search(output)
    return PgVersion.parse(found[1]) if found else None


def of_sql(head: bytes) -> DumpVersions:
    """The versions in the header comments of plain SQL: only comments, empty lines and
    ``\\restrict`` come before them; the first statement ends the header."""
    found: dict[bytes, PgVersion | None] = {}
    lines = head.removeprefix(b"\xef\xbb\xbf").split(b"\n")[:-1]  # complete lines only
    for line in lines[:_HEADER_LINES]:
        if match := _SQL_HEADER.fullmatch(line):
            version = match["version"].decode("ascii", "replace")
            found.setdefault(match["what"], PgVersion.parse(version))
        elif not (line.strip() == b"" or line.startswith(b"--") or _RESTRICT.fullmatch(line)):
            break
    return DumpVersions(found.get(b"from database"), found.get(b"by pg_dump"))


def of_archive(head: bytes) -> DumpVersions:
    """The versions in a custom-format archive's header (``pg_restore --list`` shows them);
    nothing for an archive too old to hold them or a header cut short."""
    try:
        return _read_archive_head(head)
    except (IndexError, ValueError):
        return DumpVersions()


def of_head(head: bytes, kind: Literal["sql", "pgdump"]) -> DumpVersions:
    return of_archive(head) if kind == "pgdump" else of_sql(head)


def with_manifest(
    versions: DumpVersions, pg_version: str, seen_in: str = "its manifest.json"
) -> DumpVersions:
    """A manifest names the server too (Odoo's ``pg_version``, ``16.0``; a backup's, the
    same): the newer of the two claims counts."""
    claimed = PgVersion.parse(pg_version)
    if claimed is None or (versions.server and versions.server.major >= claimed.major):
        return versions
    return replace(versions, server=claimed, server_from=seen_in)


def refusal(
    dump: DumpVersions,
    *,
    name: str,
    target: PgVersion,
    target_name: str,
    client: PgVersion | None,
    tool: str,
) -> DumpTooNew | None:
    """Why ``dump`` cannot be loaded into a ``target`` server with ``client``, or None.

    Refused when the dump comes from a server of a newer major version than the target, or
    was written by a ``pg_dump`` newer than the target or the loading client. What is not
    known (a dump without a header, a client that does not say) is not held against it.
    """
    source, writer = dump.server, dump.pg_dump
    if source is not None and source.major > target.major:
        return DumpTooNew(
            f"{name} was dumped from PostgreSQL {source.text} (as {dump.server_from} says), a "
            f"newer major version than the target server {target_name}, PostgreSQL "
            f"{target.text}: a dump loads only into a server of its own major version or "
            "newer; nothing was changed",
            remediation=f"load it into a PostgreSQL {source.major_text} (or newer) server: "
            "give the environment such a server (database_server of its project, or "
            f"dev_database.image: postgres:{source.major_text} for dev tiers; "
            "`psql -Atc 'SHOW server_version'` shows what a server runs); a pg_dump "
            f"{target.major_text} cannot dump the newer source again",
        )
    if writer is None:
        return None
    if client is None or target.major <= client.major:
        limit, limit_text = target, f"the target server {target_name}, PostgreSQL {target.text}"
    else:
        limit, limit_text = client, f"the {tool} that loads it, {client.text}"
    if writer.major <= limit.major:
        return None
    message = (
        f"{name} was written by pg_dump {writer.text}, a newer major version than "
        f"{limit_text}: its output loads only with a {tool} and into a server of its own "
        "major version or newer; nothing was changed"
    )
    want = limit.major_text
    if source is None or source.major <= limit.major:
        remediation = (
            f"dump the source again with the pg_dump of PostgreSQL {want}: docker run --rm "
            f"--network host -e PGPASSWORD postgres:{want} pg_dump --no-owner --no-acl "
            "--format=plain -h HOST -U USER DBNAME > dump.sql"
        )
    else:  # the source is newer than the client: only a newer client can load it
        remediation = (
            f"load it with a {tool} of PostgreSQL {writer.major_text} or newer: set "
            f"dev_database.image in odooops.yaml to postgres:{writer.major_text} (it also runs "
            f"the dev tiers' PostgreSQL) and `docker pull postgres:{writer.major_text}`"
        )
    return DumpTooNew(message, remediation=remediation)


# ------------------------------------------------------------------------------ archives
class _Reader:
    """Reads a custom-format header as ``pg_backup_archiver.c`` does; IndexError past the
    end of what arrived."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0
        self.int_size = 4

    def byte(self) -> int:
        value = self.data[self.at]
        self.at += 1
        return value

    def integer(self) -> int:
        """``ReadInt``: a sign byte, then ``intSize`` bytes, least significant first."""
        negative = self.byte()
        end = self.at + self.int_size
        if end > len(self.data):
            raise IndexError("cut short")
        value = int.from_bytes(self.data[self.at : end], "little")
        self.at = end
        return -value if negative else value

    def string(self) -> str | None:
        """``ReadStr``: a length (negative for NULL), then the bytes."""
        size = self.integer()
        if size < 0:
            return None
        if size > _MAX_STRING or self.at + size > len(self.data):
            raise ValueError("not a header string")
        text = self.data[self.at : self.at + size].decode("ascii", "replace")
        self.at += size
        return text


def _read_archive_head(head: bytes) -> DumpVersions:
    if not head.startswith(_ARCHIVE_MAGIC):
        return DumpVersions()
    reader = _Reader(head)
    reader.at = len(_ARCHIVE_MAGIC)
    version = (reader.byte(), reader.byte())
    if version > (1, 0):
        reader.byte()  # revision
    reader.int_size = reader.byte()
    if not 1 <= reader.int_size <= 16:
        raise ValueError("not an integer size")
    if version >= _K_VERS_1_7:
        reader.byte()  # offSize
    reader.byte()  # format
    if version < _K_VERS_1_10:  # before PostgreSQL 8.4
        return DumpVersions()
    if version >= _K_VERS_1_15:
        reader.byte()  # compression algorithm
    else:
        reader.integer()  # compression level
    for _ in range(7):  # the time of the dump: sec, min, hour, mday, mon, year, isdst
        reader.integer()
    reader.string()  # the database name
    server, pg_dump = reader.string(), reader.string()
    return DumpVersions(
        PgVersion.parse(server) if server else None,
        PgVersion.parse(pg_dump) if pg_dump else None,
    )


__all__ = [
    "DUMP_TOO_NEW",
    "HEAD_BYTES",
    "DumpTooNew",
    "DumpVersions",
    "PgVersion",
    "of_archive",
    "of_head",
    "of_sql",
    "of_tool",
    "refusal",
    "with_manifest",
]

"""A dump's PostgreSQL versions are read from its header, and a dump newer than the target
server or its loading client is refused before anything is changed; same major or older,
or a dump that names no version, passes."""

from __future__ import annotations

import pytest

from reconciler.data.database.dumpversion import (
    DumpTooNew,
    DumpVersions,
    PgVersion,
    of_archive,
    of_head,
    of_sql,
    of_tool,
    refusal,
    with_manifest,
)

HEADER = b"""--
-- PostgreSQL database dump
--

\\restrict yQpz6qBvGECzhDyhR0je18m4YJv4TdE8lbcrCCaVV0QjCTahBXg4HVCn9yUIW2j

-- Dumped from database version 17.6 (Debian 17.6-1.pgdg120+1)
-- Dumped by pg_dump version 18.0 (Debian 18.0-1.pgdg13+3)

SET statement_timeout = 0;
"""


def v(text: str) -> PgVersion:
    version = PgVersion.parse(text)
    assert version is not None
    return version


# ------------------------------------------------------------------------------ versions
@pytest.mark.parametrize(
    ("text", "major", "shown"),
    [
        ("17.6 (Debian 17.6-1.pgdg120+1)", (17,), "17.6 (Debian 17.6-1.pgdg120+1)"),
        ("18.0", (18,), "18.0"),
        ("16.0", (16,), "16.0"),  # Odoo's manifest.json pg_version
        ("15.14", (15,), "15.14"),
        ("18beta1", (18,), "18beta1"),
        ("19devel", (19,), "19devel"),
        ("10.23", (10,), "10.23"),
        ("9.6.24", (9, 6), "9.6.24"),  # before 10, the major version is two numbers
        ("9.6", (9, 6), "9.6"),
        ("  15.4 ", (15,), "15.4"),
        ("17.6\x1b[2J", (17,), "17.6?[2J"),  # shown, but never as a terminal escape
    ],
)
def test_a_version_string_gives_its_major_version(
    text: str, major: tuple[int, ...], shown: str
) -> None:
    assert PgVersion.parse(text) == PgVersion(major, shown)


@pytest.mark.parametrize("text", ["", "PostgreSQL 17", "unknown", "\x1b17.6", "v17"])
def test_what_does_not_start_with_a_version_number_is_no_version(text: str) -> None:
    assert PgVersion.parse(text) is None


@pytest.mark.parametrize(
    ("number", "major", "shown"),
    [(150020, (15,), "15.20"), (180000, (18,), "18.0"), (90624, (9, 6), "9.6.24")],
)
def test_server_version_num_gives_the_major_version(
    number: int, major: tuple[int, ...], shown: str
) -> None:
    assert PgVersion.of_number(number) == PgVersion(major, shown)
    assert PgVersion.of_number(number, "15.20 (Debian)").text == "15.20 (Debian)"


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ("psql (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n", (15,)),
        ("pg_restore (PostgreSQL) 17.6\n", (17,)),
        ("psql (PostgreSQL) 9.6.24\n", (9, 6)),
        ("sh: psql: not found\n", None),
    ],
)
def test_a_client_says_its_version(output: str, major: tuple[int, ...] | None) -> None:
    found = of_tool(output)
    assert (found.major if found else None) == major


# ------------------------------------------------------------------------------- headers
def test_pg_dump_s_plain_header_names_both_versions_behind_its_restrict_line() -> None:
    found = of_sql(HEADER)
    assert found.server == PgVersion((17,), "17.6 (Debian 17.6-1.pgdg120+1)")
    assert found.pg_dump == PgVersion((18,), "18.0 (Debian 18.0-1.pgdg13+3)")
    assert of_head(HEADER, "sql") == found


@pytest.mark.parametrize(
    ("head", "server", "pg_dump"),
    [
        pytest.param(HEADER.replace(b"\n", b"\r\n"), (17,), (18,), id="crlf"),
        pytest.param(b"\xef\xbb\xbf" + HEADER, (17,), (18,), id="byte-order-mark"),
        pytest.param(
            b"--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 9.6.24\n"
            b"-- Dumped by pg_dump version 13.4\n\n-- Started on 2026-01-01 00:00:00 UTC\n",
            (9, 6),
            (13,),
            id="older-pg_dump-verbose",
        ),
        pytest.param(
            b"-- Dumped from database version 16.2\n\nSET x = 1;\n", (16,), None, id="one-line"
        ),
        pytest.param(b"CREATE TABLE t (id int);\n", None, None, id="hand-written"),
        pytest.param(
            b"SELECT 1;\n-- Dumped from database version 9.6\n", None, None, id="after-sql"
        ),
        pytest.param(HEADER[: HEADER.index(b"-1.pgdg120")], None, None, id="cut-mid-line"),
        pytest.param(b"", None, None, id="empty"),
    ],
)
def test_the_plain_header_is_read_only_before_the_first_statement(
    head: bytes, server: tuple[int, ...] | None, pg_dump: tuple[int, ...] | None
) -> None:
    found = of_sql(head)
    assert (found.server.major if found.server else None) == server
    assert (found.pg_dump.major if found.pg_dump else None) == pg_dump


def archive_head(version: tuple[int, int, int], server: bytes, pg_dump: bytes) -> bytes:
    """A custom-format header as pg_dump writes it (intSize 4, offSize 8)."""

    def integer(n: int) -> bytes:
        return bytes([n < 0]) + abs(n).to_bytes(4, "little")

    def string(s: bytes) -> bytes:
        return integer(len(s)) + s

    compression = bytes([0]) if version >= (1, 15, 0) else integer(-1)
    when = b"".join(integer(n) for n in (2, 39, 16, 12, 1, 126, 0))
    return (
        b"PGDMP"
        + bytes(version)
        + b"\x04\x08\x01"
        + compression
        + when
        + string(b"postgres")
        + string(server)
        + string(pg_dump)
        + b"\x05\x00\x00\x00\x00"
    )


# What pg_dump 15.20 -Fc wrote (archive version 1.14), byte for byte.
PG15_ARCHIVE = bytes.fromhex(
    "5047444d50010e000408010101000000003a000000002a00000000100000000003000000"
    "000b000000007e00000000000000000008000000706f737467726573001e00000031352e"
    "3230202844656269616e2031352e32302d302b6465623132753129001e00000031352e32"
    "30202844656269616e2031352e32302d302b6465623132753129"
)


@pytest.mark.parametrize(
    ("head", "server", "pg_dump"),
    [
        pytest.param(archive_head((1, 14, 0), b"15.20", b"15.20"), (15,), (15,), id="1.14"),
        pytest.param(archive_head((1, 15, 0), b"16.4", b"16.4"), (16,), (16,), id="1.15"),
        pytest.param(
            archive_head((1, 16, 0), b"17.6 (Debian 17.6-1)", b"18.0"), (17,), (18,), id="1.16"
        ),
        pytest.param(archive_head((1, 16, 0), b"17.6", b"18.0")[:60], None, None, id="cut"),
        pytest.param(b"PGDMP\x01\x09\x00\x04\x08\x01", None, None, id="before-1.10"),
        pytest.param(b"-- not an archive\n", None, None, id="not-an-archive"),
    ],
)
def test_a_custom_format_archive_names_its_versions_in_its_header(
    head: bytes, server: tuple[int, ...] | None, pg_dump: tuple[int, ...] | None
) -> None:
    found = of_archive(head)
    assert (found.server.major if found.server else None) == server
    assert (found.pg_dump.major if found.pg_dump else None) == pg_dump
    assert of_head(head, "pgdump") == found


def test_the_archive_header_pg_dump_15_writes_is_read() -> None:
    found = of_archive(PG15_ARCHIVE)
    assert found.server == found.pg_dump == PgVersion((15,), "15.20 (Debian 15.20-0+deb12u1)")


@pytest.mark.parametrize(
    ("server", "manifest", "major", "seen_in"),
    [
        (None, "16.0", (16,), "its manifest.json"),
        ("15.4", "16.0", (16,), "its manifest.json"),
        ("17.6", "16.0", (17,), "its header"),
        ("17.6", "", (17,), "its header"),
        (None, "not a version", None, "its header"),
    ],
)
def test_a_manifest_s_pg_version_counts_when_it_is_the_newer_claim(
    server: str | None, manifest: str, major: tuple[int, ...] | None, seen_in: str
) -> None:
    found = with_manifest(DumpVersions(v(server) if server else None), manifest)
    assert (found.server.major if found.server else None) == major
    assert found.server_from == seen_in


# ------------------------------------------------------------------------------ decision
PASSES = [
    ("15.20", "15.20", "15.4", "15.4", "same major, newer minor"),
    ("13.4", "13.4", "15.20", "15.20", "older"),
    ("9.6.24", "9.6.24", "15.20", "15.20", "before 10"),
    ("15.20", "15.20", "17.6", "15.20", "an older client than the server"),
    (None, None, "15.20", "15.20", "no header"),
    (None, "15.14", "15.20", None, "client unknown"),
    ("18.0", None, "18.1", None, "server only"),
]


@pytest.mark.parametrize(
    ("server", "pg_dump", "target", "client", "why"), PASSES, ids=[p[-1] for p in PASSES]
)
def test_a_dump_of_the_same_major_or_older_passes(
    server: str | None, pg_dump: str | None, target: str, client: str | None, why: str
) -> None:
    dump = DumpVersions(v(server) if server else None, v(pg_dump) if pg_dump else None)
    found = refusal(
        dump,
        name="up.sql",
        target=v(target),
        target_name="of p/staging (shared)",
        client=v(client) if client else None,
        tool="psql",
    )
    assert found is None, why


REFUSED = [
    # server, pg_dump, target, client: words the message and the remediation hold
    (
        "18.0",
        "18.0",
        "15.20",
        "15.20",
        ["dumped from PostgreSQL 18.0 (as its header says)", "target server of p/staging"],
        ["PostgreSQL 18 (or newer) server", "dev_database.image: postgres:18"],
    ),
    (
        "18.0",
        None,
        "15.20",
        "15.20",
        ["dumped from PostgreSQL 18.0", "PostgreSQL 15.20"],
        ["PostgreSQL 18 (or newer) server"],
    ),
    (
        "15.20",
        "17.6",
        "15.20",
        "17.6",
        ["written by pg_dump 17.6", "target server of p/staging (shared), PostgreSQL 15.20"],
        ["pg_dump of PostgreSQL 15: docker run", "postgres:15 pg_dump --no-owner"],
    ),
    (
        "15.20",
        "17.6",
        "17.6",
        "15.14",
        ["written by pg_dump 17.6", "the psql that loads it, 15.14"],
        ["pg_dump of PostgreSQL 15", "--format=plain"],
    ),
    (
        "16.4",
        "17.6",
        "17.6",
        "15.14",
        ["written by pg_dump 17.6", "the psql that loads it, 15.14"],
        ["set dev_database.image in odooops.yaml to postgres:17"],
    ),
    (
        None,
        "18.0",
        "15.20",
        None,
        ["written by pg_dump 18.0", "PostgreSQL 15.20"],
        ["pg_dump of PostgreSQL 15"],
    ),
    (
        "9.6.24",
        "10.23",
        "9.6.2",
        "9.6.2",
        ["written by pg_dump 10.23", "PostgreSQL 9.6.2"],
        ["pg_dump of PostgreSQL 9.6", "postgres:9.6"],
    ),
]


@pytest.mark.parametrize(
    ("server", "pg_dump", "target", "client", "message", "remediation"),
    REFUSED,
    ids=[f"{r[0]}-{r[1]}-into-{r[2]}-with-{r[3]}" for r in REFUSED],
)
def test_a_dump_newer_than_the_target_or_its_client_is_refused_naming_both(
    server: str | None,
    pg_dump: str | None,
    target: str,
    client: str,
    message: list[str],
    remediation: list[str],
) -> None:
    dump = DumpVersions(v(server) if server else None, v(pg_dump) if pg_dump else None)
    found = refusal(
        dump,
        name="up.sql",
        target=v(target),
        target_name="of p/staging (shared)",
        client=v(client) if client else None,
        tool="psql",
    )
    assert isinstance(found, DumpTooNew)
    assert found.code == "dump_too_new" and not found.retryable
    assert found.message.startswith("up.sql was ")
    assert found.message.endswith("nothing was changed")
    for words in message:
        assert words in found.message
    for words in remediation:
        assert words in found.remediation


def test_the_manifest_is_named_when_its_claim_refuses() -> None:
    dump = with_manifest(DumpVersions(), "18.0")
    found = refusal(
        dump, name="x.zip", target=v("15.20"), target_name="t", client=None, tool="psql"
    )
    assert found is not None and "(as its manifest.json says)" in found.message

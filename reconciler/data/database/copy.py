"""Copying one environment's database into a new database, by the fastest safe means.

Three strategies (figures: PostgreSQL 15, a 1 GB Odoo-like database; ``bench/db_copy.py``
prints them for the machine at hand, here a 2-core VM next to a raw ``cp`` of the data files
at 0.44 s):

- ``template``: ``CREATE DATABASE ... TEMPLATE src STRATEGY FILE_COPY`` copies the data files
  at disk speed (1.0 s; the default ``WAL_LOG`` strategy is several times slower). It needs the
  two databases on one server and no other session on the source for the moment of the copy,
  so the source is briefly quiesced: new connections are refused, existing ones terminated,
  and connections are allowed again in a ``finally`` whatever happens.
- ``stream``: schema by ``pg_dump --section=pre-data``, then every table by ``COPY ... TO
  STDOUT`` piped into ``COPY ... FROM STDIN`` on several connections at once, all reading one
  exported snapshot (so the copy is consistent without any pause), then indexes and
  constraints (``--section=post-data``) once the data is in. Works across servers; nothing is
  staged on disk (20.5 s with 4 jobs on 2 cores).
- ``dump``: ``pg_dump -Fc | pg_restore``, the plain way (41.5 s): kept as the baseline the
  benchmark compares against.

Who does what: the admin endpoints (``source``, ``target``) only create, quiesce and drop
databases and hand objects to the new owner; every read of the source is logged in as the
source's role and every write into the target as the target's role, so a trigger, a default
or an index expression the source's workload defined runs with a role's rights, never the
admin's. The schema goes through ``pg_restore`` (custom format), never ``psql``: a source
whose role is a superuser (a dedicated dev server) could write psql meta-commands into a
plain dump.

``choose_strategy`` is pure: a template copy when both sides share a server and the pause it
would cause stays under the configured bound, a streamed copy otherwise. Every strategy creates
the target database itself and drops it again on failure, so a failed copy leaves nothing
half-written behind.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql

from reconciler.core.errors import OdooOpsError
from reconciler.data.database.endpoint import Endpoint, client_tool, drain, pg_restore_args
from reconciler.drivers.postgres import create_trigram

# Measured FILE_COPY throughput (1 GB in 0.9 s); conservative so the pause estimate errs long.
TEMPLATE_BYTES_PER_SECOND = 800 * 1024**2


class Strategy(StrEnum):
    TEMPLATE = "template"
    STREAM = "stream"
    DUMP = "dump"


@dataclass(frozen=True)
class CopyChoice:
    strategy: Strategy
    reason: str


@dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` bytes (``total`` 0 when unknown)."""

    phase: str
    done: int = 0
    total: int = 0


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class CopyResult:
    strategy: Strategy
    seconds: float
    bytes: int
    tables: int


class CopyFailed(OdooOpsError):
    code = "copy_failed"
    retryable = True


def choose_strategy(
    source: Endpoint,
    target: Endpoint,
    size_bytes: int,
    *,
    max_quiesce_seconds: float,
    bytes_per_second: float = TEMPLATE_BYTES_PER_SECOND,
) -> CopyChoice:
    """The strategy for one copy, from where the databases live and how long a pause lasts."""
    if not source.same_server(target):
        return CopyChoice(Strategy.STREAM, "source and target are on different servers")
    pause = size_bytes / bytes_per_second
    if pause <= max_quiesce_seconds:
        return CopyChoice(
            Strategy.TEMPLATE, f"same server; the source pauses for about {pause:.1f} s"
        )
    return CopyChoice(
        Strategy.STREAM,
        f"a template copy would pause the source for about {pause:.0f} s "
        f"(more than database_copy.max_quiesce_seconds = {max_quiesce_seconds:g})",
    )


def database_size(endpoint: Endpoint) -> int:
    """Read from the catalogue of the maintenance database: never a session in the database."""
    with endpoint.with_db("postgres").connect() as conn:
        row = conn.execute(
            "SELECT pg_catalog.pg_database_size(%s::text::pg_catalog.name)", [endpoint.dbname]
        ).fetchone()
    return int(str(row[0])) if row else 0


def copy_database(
    source: Endpoint,
    target: Endpoint,
    *,
    source_login: Endpoint,
    target_login: Endpoint,
    strategy: Strategy,
    jobs: int = 4,
    progress: ProgressFn | None = None,
) -> CopyResult:
    """Copy ``source.dbname`` into the new database ``target.dbname``, owned by
    ``target_login``'s role.

    ``source`` and ``target`` are admin endpoints; ``source_login`` is the role owning the
    source's objects, which reads them (a template copy keeps owners, so they are handed over
    afterwards), and ``target_login`` writes everything into the target. The target must not
    exist; on any failure it is dropped again.
    """
    reader = source_login.with_db(source.dbname)
    writer = target_login.with_db(target.dbname)
    report = progress or (lambda _p: None)
    started = time.monotonic()
    if _exists(target):
        raise CopyFailed(
            f"the target database {target} already exists",
            retryable=False,
            remediation=f"drop it first: psql -h {target.host} -p {target.port} -c "
            f"'DROP DATABASE \"{target.dbname}\" WITH (FORCE)'",
        )
    try:
        if strategy is Strategy.TEMPLATE:
            copied, tables = _template(source, target, reader.user, writer.user, report)
        elif strategy is Strategy.STREAM:
            copied, tables = _stream(target, reader, writer, jobs, report)
        else:
            copied, tables = _dump(source, target, reader, writer, report)
    except BaseException:
        drop_database(target)
        raise
    report(Progress("done", copied, copied))
    return CopyResult(strategy, time.monotonic() - started, copied, tables)


def drop_database(target: Endpoint) -> None:
    with target.with_db("postgres").connect() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target.dbname))
        )


def _exists(target: Endpoint) -> bool:
    with target.with_db("postgres").connect() as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [target.dbname]).fetchone()
            is not None
        )


def create_empty(target: Endpoint, owner: str) -> None:
    """An empty UTF-8 database with the collation Odoo's own databases get (``C``) and the
    ``pg_trgm`` extension Odoo would have created in it."""
    with target.with_db("postgres").connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} OWNER {} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
                "TEMPLATE template0"
            ).format(sql.Identifier(target.dbname), sql.Identifier(owner))
        )
        conn.execute(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(target.dbname))
        )
    with target.connect() as conn:
        create_trigram(conn, owner)


# ------------------------------------------------------------------------------- template
def _template(
    source: Endpoint, target: Endpoint, source_owner: str, owner: str, report: ProgressFn
) -> tuple[int, int]:
    size = database_size(source)
    report(Progress("quiescing source", 0, size))
    src, dst = sql.Identifier(source.dbname), sql.Identifier(target.dbname)
    with source.with_db("postgres").connect() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(src))
        try:
            for attempt in range(10):
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    [source.dbname],
                )
                try:
                    report(Progress("copying data files", 0, size))
                    conn.execute(
                        sql.SQL(
                            "CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY OWNER {}"
                        ).format(dst, src, sql.Identifier(owner))
                    )
                    break
                except psycopg.errors.ObjectInUse:
                    if attempt == 9:
                        raise
                    time.sleep(0.2)
        finally:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(src))
    report(Progress("handing objects to the new owner", size, size))
    with target.connect() as conn:
        # Ownership is catalogue work, the one thing the admin does inside a copy; its names
        # resolve in pg_catalog alone, whatever the copied schema defines.
        conn.execute("SET search_path = pg_catalog")
        conn.execute(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(dst),
        )
        if source_owner != owner:
            conn.execute(_reassign_sql(source_owner, owner))
        tables = _count_tables(conn)
    return size, tables


def _reassign_sql(old: str, new: str) -> sql.Composed:
    """Hand every object of ``old`` in this database to ``new``.

    ``REASSIGN OWNED`` would also hand over the *source* database itself (a shared object), so
    objects are altered one by one: tables, views and free sequences (a sequence owned by a
    column follows its table), routines, types and schemas.
    """
    body = """
DO $odooops$
DECLARE
    r record;
    old_oid oid := (SELECT oid FROM pg_roles WHERE rolname = {old});
BEGIN
    FOR r IN
        SELECT c.oid::regclass AS obj FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relowner = old_oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%'
          AND NOT (c.relkind = 'S' AND EXISTS (
              SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
              AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO %I', r.obj, {new});
    END LOOP;
    FOR r IN
        SELECT p.oid::regprocedure AS obj FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.proowner = old_oid AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.obj, {new});
    END LOOP;
    FOR r IN
        SELECT t.oid::regtype AS obj FROM pg_type t
        JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typowner = old_oid AND t.typtype IN ('d', 'e', 'r', 'c')
          AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    LOOP
        EXECUTE format('ALTER TYPE %s OWNER TO %I', r.obj, {new});
    END LOOP;
    FOR r IN SELECT nspname FROM pg_namespace WHERE nspowner = old_oid LOOP
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', r.nspname, {new});
    END LOOP;
END
$odooops$
"""
    return sql.SQL(body).format(old=sql.Literal(old), new=sql.Literal(new))


def _count_tables(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%'"
    ).fetchone()
    return int(str(row[0])) if row else 0


# --------------------------------------------------------------------------------- stream
def _stream(
    target: Endpoint, reader: Endpoint, writer: Endpoint, jobs: int, report: ProgressFn
) -> tuple[int, int]:
    create_empty(target, writer.user)
    with reader.connect(autocommit=False) as snap_conn:
        snap_conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = snap_conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        snapshot = str(row[0])
        tables = [
            (str(schema), str(name), int(str(size)))
            for schema, name, size in snap_conn.execute(
                "SELECT n.nspname, c.relname, pg_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 3 DESC, 1, 2"
            ).fetchall()
        ]
        sequences = snap_conn.execute(
            "SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences "
            "WHERE last_value IS NOT NULL"
        ).fetchall()
        binary = _major(snap_conn) == _target_major(writer)
        total = sum(size for _, _, size in tables)
        report(Progress("creating tables", 0, total))
        _pipe_dump(reader, writer, ["--section=pre-data", f"--snapshot={snapshot}"])
        done = _parallel_copy(reader, writer, snapshot, tables, jobs, binary, report, total)
        with writer.connect() as conn:
            for name, value in sequences:
                conn.execute(
                    "SELECT pg_catalog.setval(%s::text::pg_catalog.regclass, %s, true)",
                    [name, value],
                )
        report(Progress("building indexes and constraints", done, total))
        _pipe_dump(reader, writer, ["--section=post-data", f"--snapshot={snapshot}"])
        snap_conn.rollback()
    return done, len(tables)


def _major(conn: psycopg.Connection[Any]) -> int:
    return int(conn.info.server_version) // 10000


def _target_major(target: Endpoint) -> int:
    with target.connect() as conn:
        return _major(conn)


def _parallel_copy(
    source: Endpoint,
    target: Endpoint,
    snapshot: str,
    tables: Sequence[tuple[str, str, int]],
    jobs: int,
    binary: bool,
    report: ProgressFn,
    total: int,
) -> int:
    """Largest tables first over ``jobs`` connection pairs, all reading the one snapshot;
    ``source`` and ``target`` are the two environments' own logins."""
    fmt = sql.SQL("(FORMAT BINARY)" if binary else "(FORMAT TEXT)")
    lock = threading.Lock()
    done = 0

    def one(table: tuple[str, str, int]) -> None:
        nonlocal done
        ident = sql.Identifier(table[0], table[1])
        with source.connect(autocommit=False) as src, target.connect(autocommit=False) as dst:
            src.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            src.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            with (
                src.cursor().copy(sql.SQL("COPY {} TO STDOUT {}").format(ident, fmt)) as out,
                dst.cursor().copy(sql.SQL("COPY {} FROM STDIN {}").format(ident, fmt)) as into,
            ):
                for chunk in out:
                    into.write(chunk)
                    with lock:
                        done += len(chunk)
            dst.commit()
            src.rollback()
        with lock:
            report(Progress("copying tables", done, total))

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="copy") as pool:
        for future in [pool.submit(one, t) for t in tables]:
            future.result()
    return done


def _pipe_dump(source: Endpoint, target: Endpoint, args: Sequence[str]) -> None:
    """``pg_dump -Fc ARGS | pg_restore``, each logged in as its side's own role."""
    dump_cmd = [client_tool("pg_dump"), "--no-owner", "--no-acl", "--format=custom", *args]
    load_cmd = [client_tool("pg_restore"), *pg_restore_args(target.dbname)]
    _pipeline(dump_cmd, source.env(), load_cmd, target.env(), "schema copy")


def _pipeline(
    producer: Sequence[str],
    producer_env: dict[str, str],
    consumer: Sequence[str],
    consumer_env: dict[str, str],
    what: str,
) -> None:
    """Run ``producer | consumer``; a failure of either is a CopyFailed with its stderr."""
    env_base = {"PATH": "/usr/bin:/bin:/usr/local/bin", "LC_ALL": "C.UTF-8"}
    prod = subprocess.Popen(
        producer,
        env={**env_base, **producer_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert prod.stdout is not None
    cons = subprocess.Popen(
        consumer,
        env={**env_base, **consumer_env},
        stdin=prod.stdout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    prod.stdout.close()  # the consumer holds the only read end: a dead consumer stops the dump
    prod_err = drain(prod.stderr)
    cons_err = drain(cons.stderr)
    cons_code = cons.wait()
    prod_code = prod.wait()
    prod_err.join()
    cons_err.join()
    if prod_code != 0 or cons_code != 0:
        name, text = (
            (producer[0], prod_err.text) if prod_code != 0 else (consumer[0], cons_err.text)
        )
        raise CopyFailed(
            f"{what} failed: {name.rsplit('/', 1)[-1]}: {text.strip()[-800:]}",
            remediation="check both database servers with pg_isready, then retry",
        )


# ----------------------------------------------------------------------------------- dump
def _dump(
    source: Endpoint, target: Endpoint, reader: Endpoint, writer: Endpoint, report: ProgressFn
) -> tuple[int, int]:
    size = database_size(source)
    create_empty(target, writer.user)
    report(Progress("pg_dump | pg_restore", 0, size))
    _pipeline(
        [client_tool("pg_dump"), "--format=custom", "--no-owner", "--no-acl"],
        reader.env(),
        [client_tool("pg_restore"), *pg_restore_args(writer.dbname)],
        writer.env(),
        "pg_dump | pg_restore",
    )
    with writer.connect() as conn:
        return size, _count_tables(conn)


def check_tools() -> None:
    """Fail early, before anything is created, when a client tool is missing."""
    for tool in ("pg_dump", "pg_restore"):
        client_tool(tool)


__all__ = [
    "CopyChoice",
    "CopyFailed",
    "CopyResult",
    "Progress",
    "Strategy",
    "check_tools",
    "choose_strategy",
    "copy_database",
    "create_empty",
    "database_size",
    "drop_database",
]

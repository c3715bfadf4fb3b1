"""Journalled data moves: a new database and filestore swapped in, crash-safe at every step.

A restore, an import or a copy builds the new data beside the live one (a scratch database,
a staged filestore directory) and then swaps both in. The daemon may be killed at any point,
so the move is written to the journal before its first step and closed after its last:

- **building** (scratch and staged data being made): a crash rolls back: the scratch database
  and the staged directory are removed, the live data was never touched;
- **swapping** (the scratch data is complete): a crash rolls forward: live database renamed
  aside, scratch renamed into place, filestore swapped the same way, the old ones dropped,
  or, for a move that keeps them (an update on a copy, ``keep_previous``), recorded as the
  environment's *kept* data. Data kept before is then *superseded*: listed in the new record,
  it is removed after the run (``expire_kept``, from the daemon's schedules), never inside
  the maintenance window a swap is part of.

Every step checks the live state before it acts, so running recovery twice, or after a crash
in recovery, converges the same way. Names are unique per move (a random tag), so nothing a
journal refers to is ever dropped by another move, and the database and its filestore always
move together.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql

from reconciler.core.errors import OdooOpsError
from reconciler.core.faults import boundary
from reconciler.core.model import EnvKey
from reconciler.data.database.endpoint import Endpoint
from reconciler.drivers.docker import DockerDriver

log = logging.getLogger("odooops.moves")

KIND = "data-move"


class JournalEntryLike(Protocol):
    """An open entry of the journal (``reconciler.engine.ledger.JournalEntry``)."""

    @property
    def id(self) -> int: ...

    @property
    def key(self) -> EnvKey: ...

    @property
    def kind(self) -> str: ...

    @property
    def doc(self) -> Mapping[str, Any]: ...


class Journal(Protocol):
    """Where open moves are written (the engine's ledger)."""

    def open_entry(self, key: EnvKey, kind: str, doc: Mapping[str, Any]) -> int: ...

    def update_entry(self, entry_id: int, doc: Mapping[str, Any]) -> None: ...

    def close_entry(self, entry_id: int) -> None: ...

    def kept(self, key: EnvKey) -> Mapping[str, Any] | None: ...

    def put_kept(self, key: EnvKey, doc: Mapping[str, Any]) -> None: ...

    def forget_kept(self, key: EnvKey) -> None: ...

    def restore_mark(self, key: EnvKey) -> Mapping[str, Any] | None:
        """A restore a rollback asked for (``Ledger.restore_mark``), or None."""
        ...

    def put_restore_mark(self, key: EnvKey, doc: Mapping[str, Any]) -> None: ...

    def forget_restore_mark(self, key: EnvKey) -> None: ...


# A revision and the ledger's module record at it (``Ledger.modules``), or None: unknown.
Recorded = tuple[str, Mapping[str, Any] | None] | None


@dataclass(frozen=True)
class Keeping:
    """What a swap does besides swapping: keeps the data it replaces until ``until`` ("":
    drops it at once), labelled with the ``replaced`` revision and module record; records
    the ``result`` revision and module record of the new data in the ledger."""

    until: str = ""
    replaced: Recorded = None
    result: Recorded = None


DROP_REPLACED = Keeping()
"""A swap that drops the data it replaces and records nothing more (a restore, a copy)."""


@dataclass(frozen=True)
class Move:
    """The names of one move; all derived from the live database and a random tag."""

    op: str  # restore, import, clone, copy
    live: str  # the live database
    scratch: str  # where the new database is built
    old: str  # where the live database goes during the swap
    volume: str  # the filestore volume
    staged: str  # the new filestore directory (beside the live one)
    fs_old: str  # where the live filestore directory goes during the swap
    owner: str  # the environment's role: owner of the swapped-in database
    initialised: bool  # whether the new database counts as initialised once in place
    server: str = ""  # the server holding the database (a name, or "dedicated")
    phase: str = "building"
    keep_until: str = ""  # ISO time: keep the replaced data until then ("": drop it)
    revision: str = ""  # the app revision the replaced data was at (kept data's label)
    modules: str = ""  # JSON: the ledger's module record of the replaced data (kept with it)
    # What the new data is, recorded in the ledger by the swap itself (so a crash after the
    # swap never leaves the ledger describing the old data): its revision and module record.
    result_revision: str = ""
    result_modules: str = ""

    @classmethod
    def new(
        cls, op: str, live: str, volume: str, owner: str, initialised: bool, server: str = ""
    ) -> Move:
        tag = secrets.token_hex(4)
        base = hashlib.sha256(live.encode()).hexdigest()[:12]
        return cls(
            op=op,
            live=live,
            scratch=f"odooops_tmp_{base}_{tag}",
            old=f"odooops_old_{base}_{tag}",
            volume=volume,
            staged=f"{live}.staged-{tag}",
            fs_old=f"{live}.old-{tag}",
            owner=owner,
            initialised=initialised,
            server=server,
        )

    def doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Move:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


class Moves:
    """Begins, swaps and recovers moves on one runtime."""

    def __init__(
        self,
        docker: DockerDriver,
        journal: Callable[[], Journal],
        replaced: Callable[[EnvKey, bool, str, Mapping[str, Any] | None], None],
        note: Callable[[EnvKey], str],
    ) -> None:
        self.docker = docker
        self._journal = journal
        self._replaced = replaced
        self._note = note

    @contextlib.contextmanager
    def begin(
        self,
        key: EnvKey,
        endpoint: Endpoint,
        image: str,
        *,
        op: str,
        volume: str,
        owner: str,
        initialised: bool = True,
        staged_as_scratch: bool = False,
        keeping: Keeping = DROP_REPLACED,
    ) -> Iterator[Move]:
        """Journal a move before anything is built; on any failure while building, remove what
        was built and close the entry (the live data is untouched).

        ``staged_as_scratch``: the new filestore is built under the scratch database's name,
        where an Odoo run on the scratch database (a module update on a copy) reads and
        writes its attachments. ``keeping``: the replaced database and filestore are kept,
        renamed, until then (``expire_kept`` removes them), and the ledger records the new
        data's revision and module record at the swap."""
        move = Move.new(op, endpoint.dbname, volume, owner, initialised, _server(endpoint))
        revision, modules = keeping.replaced or ("", None)
        result_revision, result_modules = keeping.result or ("", None)
        extra: dict[str, Any] = {
            "keep_until": keeping.until,
            "revision": revision,
            "modules": _json(modules),
            "result_revision": result_revision,
            "result_modules": _json(result_modules),
        }
        if staged_as_scratch:
            extra["staged"] = move.scratch
        move = Move.of({**move.doc(), **extra})
        journal = self._journal()
        entry = journal.open_entry(key, KIND, move.doc())
        boundary("moves", f"{op}: journal opened")
        try:
            yield move
            boundary("moves", f"{op}: scratch data complete")
        except BaseException:
            with contextlib.suppress(Exception):
                self._roll_back(endpoint, image, move)
                journal.close_entry(entry)
            raise
        # The scratch data is complete: from here a crash rolls forward.
        swapping = Move.of({**move.doc(), "phase": "swapping"})
        journal.update_entry(entry, swapping.doc())
        boundary("moves", f"{op}: swap begins")
        self._roll_forward(key, endpoint, image, swapping)
        journal.close_entry(entry)

    @contextlib.contextmanager
    def temporary(
        self, key: EnvKey, endpoint: Endpoint, image: str, *, volume: str, owner: str
    ) -> Iterator[Move]:
        """A scratch database that never replaces anything (a restore test): journalled too,
        so a crash never leaves one behind; always removed at the end."""
        move = Move.new("restore-test", endpoint.dbname, volume, owner, False, _server(endpoint))
        journal = self._journal()
        entry = journal.open_entry(key, KIND, move.doc())
        try:
            yield move
        finally:
            self._roll_back(endpoint, image, move)
            journal.close_entry(entry)

    def recover(
        self, key: EnvKey, entry_id: int, doc: Mapping[str, Any], endpoint: Endpoint, image: str
    ) -> str:
        """Finish (swapping) or undo (building) a move a crash interrupted; idempotent."""
        move = Move.of(doc)
        if move.phase == "swapping":
            self._roll_forward(key, endpoint, image, move)
            outcome = f"{move.op} of {key} finished after an interruption"
        else:
            self._roll_back(endpoint, image, move)
            outcome = f"{move.op} of {key} rolled back after an interruption"
        self._journal().close_entry(entry_id)
        log.warning("%s", outcome)
        return outcome

    # --------------------------------------------------------------------------- steps
    def _roll_back(self, endpoint: Endpoint, image: str, move: Move) -> None:
        with endpoint.with_db("postgres").connect() as conn:
            present = existing_databases(conn, move.live, move.scratch, move.old)
            if move.old in present and move.live not in present:
                rename_database(conn, move.old, move.live)  # only reachable by a hand-made state
            if move.scratch in present:
                drop_database(conn, move.scratch)
        self.docker.filestore_discard(image, move.volume, move.staged)

    def _roll_forward(self, key: EnvKey, endpoint: Endpoint, image: str, move: Move) -> None:
        # Odoo is stopped for the swap; the next reconcile starts it again (after checking
        # that non-production data is neutralised).
        with contextlib.suppress(OdooOpsError):
            self.docker.stop(key.odoo_container)
        with endpoint.with_db("postgres").connect() as conn:
            present = existing_databases(conn, move.live, move.scratch, move.old)
            if move.scratch in present:
                if move.live in present:
                    if move.old in present:
                        raise OdooOpsError(
                            f"cannot finish the {move.op} of {key}: {move.live}, {move.old} and "
                            f"{move.scratch} all exist",
                            code="move_inconsistent",
                            remediation=f"look at the three databases, keep the right one as "
                            f"{move.live}, then: odooops reconcile",
                        )
                    rename_database(conn, move.live, move.old)
                    boundary("moves", f"{move.op}: live database set aside")
                rename_database(conn, move.scratch, move.live)
                boundary("moves", f"{move.op}: new database in place")
            live = sql.Identifier(move.live)
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(live, sql.Identifier(move.owner))
            )
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(live))
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(live, sql.Literal(self._note(key)))
            )
        keep = bool(move.keep_until)
        self.docker.filestore_swap(
            image, move.volume, move.staged, move.live, move.fs_old, keep_old=keep
        )
        boundary("moves", f"{move.op}: filestore swapped")
        # The ledger learns of the new database before the old one is gone: a crash between
        # the two leaves an old database that the next recovery drops, never a lost record.
        result = json.loads(move.result_modules) if move.result_modules else None
        self._replaced(key, move.initialised, move.result_revision, result)
        boundary("moves", f"{move.op}: recorded in the ledger")
        if keep:
            self._keep(key, endpoint, image, move)
            return
        with endpoint.with_db("postgres").connect() as conn:
            if move.old in existing_databases(conn, move.old):
                drop_database(conn, move.old)
        boundary("moves", f"{move.op}: old database dropped")

    # --------------------------------------------------------------------------- kept data
    def _keep(self, key: EnvKey, endpoint: Endpoint, image: str, move: Move) -> None:
        """Record the replaced data as the environment's kept data, in one write with the
        data kept before, now superseded (removed later by ``expire_kept``): the ledger
        never forgets a database that still exists. Running it again (a recovery) finds its
        own record and changes nothing."""
        journal = self._journal()
        earlier = journal.kept(key)
        if earlier is not None and earlier.get("database") == move.old:
            return  # recorded already (this is a recovery of the same move)
        with endpoint.with_db("postgres").connect() as conn:
            present = move.old in existing_databases(conn, move.old)
        if not present:
            return  # nothing was replaced (a first database): nothing to keep
        superseded = [] if earlier is None else [*_superseded(earlier), _place(earlier)]
        journal.put_kept(
            key,
            {
                "database": move.old,
                "filestore": move.fs_old,
                "volume": move.volume,
                "server": move.server,
                "revision": move.revision,
                "modules": json.loads(move.modules) if move.modules else None,
                "until": move.keep_until,
                "op": move.op,
                "superseded": superseded,
            },
        )
        boundary("moves", f"{move.op}: replaced data kept")

    def expire_kept(self, key: EnvKey, endpoint: Endpoint, image: str, now: str) -> list[str]:
        """Remove the environment's superseded kept data, and its kept data once its time is
        up (``until`` not after ``now``); returns the databases removed. Each removal is
        idempotent and the record is rewritten only after them, so a crash in between
        repeats them, never forgets one."""
        journal = self._journal()
        kept = journal.kept(key)
        if kept is None:
            return []
        dropped: list[str] = []
        for old in _superseded(kept):
            self._discard(endpoint, image, old)
            dropped.append(str(old["database"]))
        if str(kept.get("until", "")) <= now:
            self._discard(endpoint, image, kept)
            journal.forget_kept(key)
            dropped.append(str(kept.get("database", "")))
        elif dropped:
            journal.put_kept(key, {**kept, "superseded": []})
        return dropped

    def _discard(self, endpoint: Endpoint, image: str, kept: Mapping[str, Any]) -> None:
        """Drop a kept database and its filestore directory (both idempotent)."""
        database = str(kept.get("database", ""))
        if not database.startswith("odooops_old_"):  # only ever a name this module made
            raise OdooOpsError(
                f"the ledger's kept data names {database!r}, not a database a move kept",
                code="move_inconsistent",
                remediation="odooops status  (and look at the ledger's kept table)",
            )
        with endpoint.with_db("postgres").connect() as conn:
            drop_database(conn, database)
        self.docker.filestore_remove(image, str(kept["volume"]), str(kept["filestore"]))


def kept_databases(kept: Mapping[str, Any]) -> list[str]:
    """Every database a kept record names: its own and the superseded ones."""
    return [str(kept.get("database", "")), *(str(s["database"]) for s in _superseded(kept))]


def _superseded(kept: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = kept.get("superseded") or []
    return [s for s in found if isinstance(s, Mapping)]


def _place(kept: Mapping[str, Any]) -> dict[str, Any]:
    """Where kept data lives: what removing it needs."""
    return {k: kept[k] for k in ("database", "filestore", "volume") if k in kept}


def _json(doc: Mapping[str, Any] | None) -> str:
    return "" if doc is None else json.dumps(dict(doc), sort_keys=True)


def _server(endpoint: Endpoint) -> str:
    return "dedicated" if endpoint.server.startswith("dedicated") else endpoint.server


def existing_databases(conn: Any, *names: str) -> set[str]:
    """Which of ``names`` exist on the server of ``conn`` (the admin's; also golden copies')."""
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datname = ANY(%s)", [list(names)]
    ).fetchall()
    return {str(r[0]) for r in rows}


def drop_database(conn: Any, name: str) -> None:
    """Drop ``name`` if it exists, its sessions ended (a step that may run twice)."""
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def rename_database(conn: Any, name: str, new: str) -> None:
    """Rename a database, ending the sessions on it first (a stopped Odoo may leave some)."""
    src, dst = sql.Identifier(name), sql.Identifier(new)
    for attempt in range(10):
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        try:
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(src, dst))
            return
        except psycopg.errors.ObjectInUse:
            if attempt == 9:
                raise
            time.sleep(0.2)

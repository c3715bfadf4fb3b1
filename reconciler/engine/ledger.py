"""The daemon's own record of what it owns: databases, their state, and open swaps.

Ownership and progress used to be read from labels on live objects, and a database's labels are
its ``COMMENT``, which the database's owner (the environment's role, hence any code or shell of
that environment) can rewrite. Relabelling one's own database as production "never
initialised" was enough to make the planner recreate production. So what the daemon owns, and
how far it got, lives here, in a SQLite file of the data directory that no workload can reach;
labels on live objects remain for humans and cheap listing, and are never trusted for a
destructive decision.

Every record is written *before* the step it describes (a row ``creating`` before ``CREATE
DATABASE``), so a daemon killed between any two steps finds, on restart, either nothing of the
step or a row saying exactly what may be half-done. The same file keeps the journal of
multi-step data moves (``Journal``): an entry opened before the first rename and closed after
the last, so start-up finishes or rolls back what a crash interrupted.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from reconciler.core.history import Deployed, Health
from reconciler.core.imagegc import Deployment
from reconciler.core.model import EnvKey
from reconciler.core.sleep import Activity, Rest
from reconciler.engine.status import now

# Deployments kept per environment: enough for the images kept for a rollback
# (``core.imagegc.KEEP_DEPLOYED`` distinct ones) when some were deployed more than once.
HISTORY_KEEP = 50

SCHEMA = """
CREATE TABLE IF NOT EXISTS databases (
    env TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    protected INTEGER NOT NULL,
    tier TEXT NOT NULL,
    revision TEXT NOT NULL DEFAULT '',
    backup_revision TEXT NOT NULL DEFAULT '',
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    env TEXT NOT NULL,
    kind TEXT NOT NULL,
    doc TEXT NOT NULL,
    opened TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS modules (
    env TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kept (
    env TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gates (
    gate TEXT PRIMARY KEY,
    env TEXT NOT NULL,
    image TEXT NOT NULL,
    passed INTEGER NOT NULL,
    doc TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    started TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    env TEXT NOT NULL,
    image TEXT NOT NULL,
    image_id TEXT NOT NULL,
    base TEXT NOT NULL DEFAULT '',
    revision TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deployments_by_env ON deployments (env, id);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    tag TEXT NOT NULL,
    project TEXT NOT NULL,
    built TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS golden (
    env TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    name TEXT PRIMARY KEY,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS preview_comments (
    request TEXT PRIMARY KEY,
    comment_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS restores (
    env TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS activity (
    env TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    since TEXT NOT NULL,
    last_request TEXT
);
"""

# Columns added to a table after its first release: a ledger written by an older daemon gets
# them, with their default, when it is opened (SQLite's ALTER TABLE ... ADD COLUMN).
MIGRATIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "deployments": (
        ("health", "TEXT NOT NULL DEFAULT 'unknown'"),
        ("judged", "TEXT NOT NULL DEFAULT ''"),
        ("state_commit", "TEXT NOT NULL DEFAULT ''"),
        ("reason", "TEXT NOT NULL DEFAULT ''"),
        ("attempt", "INTEGER NOT NULL DEFAULT 0"),
    ),
}


class DbState(StrEnum):
    """How far the daemon got with an environment's database."""

    CREATING = "creating"  # recorded before CREATE DATABASE: may or may not exist
    CREATED = "created"  # exists, empty or half-initialised: ours to drop and recreate
    INITIALISED = "initialised"  # Odoo is installed in it: never dropped by a recreate


@dataclass(frozen=True)
class DatabaseRecord:
    key: EnvKey
    server: str  # a database server name, or "dedicated"
    name: str
    state: DbState
    protected: bool
    tier: str
    revision: str = ""  # the app revision the database was last initialised or updated to
    backup_revision: str = ""  # the revision a pre-update backup was last taken for
    updated: str = ""

    @property
    def initialised(self) -> bool:
        return self.state is DbState.INITIALISED


@dataclass(frozen=True)
class JournalEntry:
    id: int
    key: EnvKey
    kind: str  # what is being moved: "swap"
    doc: Mapping[str, Any]
    opened: str


class Ledger:
    """Thread-safe access to ``DATA_DIR/ledger.db`` (one connection, one lock, WAL)."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        """``read_only`` reads a daemon's ledger without ever writing it (``odooops plan``)."""
        self.path = path
        self.read_only = read_only
        self._lock = threading.Lock()
        if read_only:
            uri = f"{path.resolve().as_uri()}?mode=ro" if path.exists() else "file::memory:"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            if not path.exists():
                self._db.executescript(SCHEMA)
                _migrate(self._db)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            _migrate(self._db)
            path.chmod(0o600)
        # A read-only look at an older daemon's ledger sees its deployments without outcomes.
        self._judged = not _missing(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self.read_only:
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------------------ databases
    def databases(self) -> dict[EnvKey, DatabaseRecord]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT env, server, name, state, protected, tier, revision, backup_revision, "
                "updated FROM databases"
            ).fetchall()
        return {r.key: r for r in (_record(row) for row in rows)}

    def database(self, key: EnvKey) -> DatabaseRecord | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT env, server, name, state, protected, tier, revision, backup_revision, "
                "updated FROM databases WHERE env = ?",
                [str(key)],
            ).fetchone()
        return _record(row) if row else None

    def put_database(self, record: DatabaseRecord) -> None:
        if self.read_only:
            return
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO databases (env, server, name, state, protected, tier, "
                "revision, backup_revision, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    str(record.key),
                    record.server,
                    record.name,
                    record.state.value,
                    int(record.protected),
                    record.tier,
                    record.revision,
                    record.backup_revision,
                    now(),
                ],
            )

    def update_database(self, key: EnvKey, **fields: Any) -> DatabaseRecord | None:
        """Change fields of a record (``state``, ``protected``, ``revision``...); None if absent."""
        current = self.database(key)
        if current is None:
            return None
        updated = replace(current, **fields)
        self.put_database(updated)
        return updated

    def forget_database(self, key: EnvKey) -> None:
        if self.read_only:
            return
        with self._tx() as db:
            db.execute("DELETE FROM databases WHERE env = ?", [str(key)])
            db.execute("DELETE FROM modules WHERE env = ?", [str(key)])

    # -------------------------------------------------------------------------- modules
    def modules(self, key: EnvKey) -> dict[str, Any] | None:
        """What the database's modules were at their last successful ``-i``/``-u``
        (``reconciler.core.modules.applied``), or None when never recorded."""
        with self._tx() as db:
            row = db.execute("SELECT doc FROM modules WHERE env = ?", [str(key)]).fetchone()
        if row is None:
            return None
        doc = json.loads(row[0])
        return doc if isinstance(doc, dict) else None

    def all_modules(self) -> dict[str, dict[str, Any]]:
        """``modules`` of every environment at once, by ``str(key)`` (one read per pass)."""
        with self._tx() as db:
            rows = db.execute("SELECT env, doc FROM modules").fetchall()
        docs = {str(env): json.loads(doc) for env, doc in rows}
        return {env: doc for env, doc in docs.items() if isinstance(doc, dict)}

    def put_modules(self, key: EnvKey, doc: Mapping[str, Any]) -> None:
        if self.read_only:
            return
        with self._tx() as db:
            db.execute(
                "INSERT INTO modules (env, doc, updated) VALUES (?, ?, ?) ON CONFLICT(env) DO "
                "UPDATE SET doc = excluded.doc, updated = excluded.updated",
                [str(key), json.dumps(doc, sort_keys=True), now()],
            )

    # ----------------------------------------------------------------------------- kept
    def put_gate(
        self, gate: str, key: EnvKey, image: str, passed: bool, doc: Mapping[str, Any]
    ) -> None:
        """A test gate's report (``reconciler.core.testgate``); an environment keeps its
        newest 20."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO gates (gate, env, image, passed, doc, updated) VALUES "
                "(?, ?, ?, ?, ?, ?) ON CONFLICT(gate) DO UPDATE SET passed = excluded.passed, "
                "doc = excluded.doc, updated = excluded.updated",
                [gate, str(key), image, int(passed), json.dumps(doc), now()],
            )
            db.execute(
                "DELETE FROM gates WHERE env = ? AND gate NOT IN (SELECT gate FROM gates "
                "WHERE env = ? ORDER BY updated DESC LIMIT 20)",
                [str(key), str(key)],
            )

    def passed_gates(self) -> dict[str, frozenset[str]]:
        """Per environment, the gates it passed."""
        with self._tx() as db:
            rows = db.execute("SELECT env, gate FROM gates WHERE passed = 1").fetchall()
        out: dict[str, set[str]] = {}
        for env, gate in rows:
            out.setdefault(env, set()).add(gate)
        return {env: frozenset(gates) for env, gates in out.items()}

    def gate_reports(self, image: str) -> list[dict[str, Any]]:
        """The test reports of an image, in every environment it was tested for."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT env, doc FROM gates WHERE image = ? ORDER BY updated DESC", [image]
            ).fetchall()
        return [{"environment": env, **json.loads(doc)} for env, doc in rows]

    def kept(self, key: EnvKey) -> dict[str, Any] | None:
        """The data an update on a copy replaced, kept renamed for a data rollback
        (``reconciler.data.moves``): at most one per environment, or None."""
        with self._tx() as db:
            row = db.execute("SELECT doc FROM kept WHERE env = ?", [str(key)]).fetchone()
        doc = None if row is None else json.loads(row[0])
        return doc if isinstance(doc, dict) else None

    def put_kept(self, key: EnvKey, doc: Mapping[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO kept (env, doc, updated) VALUES (?, ?, ?) ON CONFLICT(env) DO "
                "UPDATE SET doc = excluded.doc, updated = excluded.updated",
                [str(key), json.dumps(dict(doc), sort_keys=True), now()],
            )

    def forget_kept(self, key: EnvKey) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM kept WHERE env = ?", [str(key)])

    # --------------------------------------------------------------------------- golden
    def golden(self, key: EnvKey) -> dict[str, Any] | None:
        """The golden copy of production environment ``key`` (``reconciler.data.golden``):
        its database, server, filestore and last refresh, or None."""
        with self._tx() as db:
            row = db.execute("SELECT doc FROM golden WHERE env = ?", [str(key)]).fetchone()
        doc = None if row is None else json.loads(row[0])
        return doc if isinstance(doc, dict) else None

    def goldens(self) -> dict[EnvKey, dict[str, Any]]:
        with self._tx() as db:
            rows = db.execute("SELECT env, doc FROM golden ORDER BY env").fetchall()
        return {_key(str(env)): json.loads(str(doc)) for env, doc in rows}

    def put_golden(self, key: EnvKey, doc: Mapping[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO golden (env, doc, updated) VALUES (?, ?, ?) ON CONFLICT(env) DO "
                "UPDATE SET doc = excluded.doc, updated = excluded.updated",
                [str(key), json.dumps(dict(doc), sort_keys=True), now()],
            )

    def forget_golden(self, key: EnvKey) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM golden WHERE env = ?", [str(key)])

    # -------------------------------------------------------------------------- journal
    def open_entry(self, key: EnvKey, kind: str, doc: Mapping[str, Any]) -> int:
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO journal (env, kind, doc, opened) VALUES (?, ?, ?, ?)",
                [str(key), kind, json.dumps(dict(doc), sort_keys=True), now()],
            )
            return int(cursor.lastrowid or 0)

    def update_entry(self, entry_id: int, doc: Mapping[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE journal SET doc = ? WHERE id = ?",
                [json.dumps(dict(doc), sort_keys=True), entry_id],
            )

    def close_entry(self, entry_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM journal WHERE id = ?", [entry_id])

    def entries(self, key: EnvKey | None = None) -> list[JournalEntry]:
        with self._tx() as db:
            if key is None:
                rows = db.execute(
                    "SELECT id, env, kind, doc, opened FROM journal ORDER BY id"
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT id, env, kind, doc, opened FROM journal WHERE env = ? ORDER BY id",
                    [str(key)],
                ).fetchall()
        return [
            JournalEntry(int(i), _key(str(env)), str(kind), json.loads(str(doc)), str(opened))
            for i, env, kind, doc, opened in rows
        ]

    # ----------------------------------------------------------------------------- jobs
    def put_job(self, job_id: str, doc: Mapping[str, Any], started: str) -> None:
        if self.read_only:
            return
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO jobs (id, doc, started) VALUES (?, ?, ?)",
                [job_id, json.dumps(dict(doc), sort_keys=True, default=str), started],
            )

    def jobs(self, limit: int) -> list[dict[str, Any]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT doc FROM jobs ORDER BY started DESC, rowid DESC LIMIT ?", [limit]
            ).fetchall()
        return [json.loads(str(doc)) for (doc,) in rows]

    def trim_jobs(self, keep: int) -> None:
        if self.read_only:
            return
        with self._tx() as db:
            db.execute(
                "DELETE FROM jobs WHERE rowid NOT IN "
                "(SELECT rowid FROM jobs ORDER BY started DESC, rowid DESC LIMIT ?)",
                [keep],
            )

    # ---------------------------------------------------------------------- deployments
    def put_deployment(
        self, deployment: Deployment, keep: int = HISTORY_KEEP, state_commit: str = ""
    ) -> None:
        """An environment's Odoo container now runs ``deployment.image`` (applied from state
        commit ``state_commit``), ``progressing`` until its run ends (``judge``). A redeploy
        of the image it already ran (a setting changed), or the switch a failed attempt of
        the same revision finally made, moves the newest row instead of adding one. Going
        back to a revision deployed before marks the version it replaces ``rolled-back``.
        Past ``keep`` rows the oldest of that environment go."""
        if self.read_only:
            return
        d = deployment
        with self._tx() as db:
            newest = db.execute(
                "SELECT id, image_id, revision, attempt FROM deployments WHERE env = ? "
                "ORDER BY id DESC LIMIT 1",
                [d.env],
            ).fetchone()
            serving = db.execute(
                "SELECT id, revision FROM deployments WHERE env = ? AND attempt = 0 "
                "ORDER BY id DESC LIMIT 1",
                [d.env],
            ).fetchone()
            fields = [d.image, d.image_id, d.base, d.revision, _iso(d.at), state_commit]
            if newest is not None and (
                (newest[1] == d.image_id and not newest[3])
                or (newest[3] and newest[2] == d.revision)
            ):
                db.execute(
                    "UPDATE deployments SET image = ?, image_id = ?, base = ?, revision = ?, "
                    "at = ?, state_commit = ?, health = ?, judged = '', reason = '', "
                    "attempt = 0 WHERE id = ?",
                    [*fields, Health.PROGRESSING.value, newest[0]],
                )
                return
            if serving is not None and serving[1] != d.revision:
                before = db.execute(
                    "SELECT 1 FROM deployments WHERE env = ? AND attempt = 0 AND revision = ? "
                    "AND id < ? LIMIT 1",
                    [d.env, d.revision, serving[0]],
                ).fetchone()
                if before is not None:
                    db.execute(
                        "UPDATE deployments SET health = ?, judged = ?, reason = ? "
                        "WHERE id = ? AND health != ?",
                        [
                            Health.ROLLED_BACK.value,
                            _iso(d.at),
                            f"rolled back to {d.revision[:12]}",
                            serving[0],
                            Health.FAILED.value,
                        ],
                    )
            db.execute(
                "INSERT INTO deployments (env, image, image_id, base, revision, at, "
                "state_commit, health) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [d.env, *fields, Health.PROGRESSING.value],
            )
            db.execute(
                "DELETE FROM deployments WHERE env = ? AND id NOT IN "
                "(SELECT id FROM deployments WHERE env = ? ORDER BY id DESC LIMIT ?)",
                [d.env, d.env, keep],
            )

    def put_attempt(
        self, deployment: Deployment, reason: str, state_commit: str = "", keep: int = HISTORY_KEEP
    ) -> None:
        """A run deploying ``deployment.revision`` failed (``reason``). When that revision
        already serves (it failed after the switch) its row says ``failed``; otherwise a row
        records the attempt, which never served, so it keeps no image for a rollback. A
        retried attempt of the same revision moves its row instead of adding one."""
        if self.read_only:
            return
        d = deployment
        with self._tx() as db:
            newest = db.execute(
                "SELECT id, revision FROM deployments WHERE env = ? ORDER BY id DESC LIMIT 1",
                [d.env],
            ).fetchone()
            if newest is not None and newest[1] == d.revision:
                db.execute(
                    "UPDATE deployments SET health = ?, judged = ?, reason = ? WHERE id = ?",
                    [Health.FAILED.value, _iso(d.at), reason[:400], newest[0]],
                )
                return
            db.execute(
                "INSERT INTO deployments (env, image, image_id, base, revision, at, "
                "state_commit, health, judged, reason, attempt) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                [
                    d.env,
                    d.image,
                    d.image_id,
                    d.base,
                    d.revision,
                    _iso(d.at),
                    state_commit,
                    Health.FAILED.value,
                    _iso(d.at),
                    reason[:400],
                ],
            )
            db.execute(
                "DELETE FROM deployments WHERE env = ? AND id NOT IN "
                "(SELECT id FROM deployments WHERE env = ? ORDER BY id DESC LIMIT ?)",
                [d.env, d.env, keep],
            )

    def judge(self, key: EnvKey, revision: str, at: datetime) -> None:
        """The environment converged Ready on ``revision``: the deployment serving it (the
        newest row, when it is that revision's switch) is ``healthy``."""
        if self.read_only:
            return
        with self._tx() as db:
            db.execute(
                "UPDATE deployments SET health = ?, judged = ?, reason = '' WHERE id = "
                "(SELECT id FROM deployments WHERE env = ? ORDER BY id DESC LIMIT 1) "
                "AND revision = ? AND attempt = 0 AND health != ?",
                [Health.HEALTHY.value, _iso(at), str(key), revision, Health.HEALTHY.value],
            )

    def deployments(self, key: EnvKey | None = None) -> list[Deployment]:
        """The deployment history (of one environment), oldest first: the switches only (an
        attempt that never served keeps no image)."""
        query = "SELECT env, image, image_id, base, revision, at FROM deployments WHERE " + (
            "attempt = 0" if self._judged else "1 = 1"
        )
        with self._tx() as db:
            if key is None:
                rows = db.execute(query + " ORDER BY id").fetchall()
            else:
                rows = db.execute(query + " AND env = ? ORDER BY id", [str(key)]).fetchall()
        return [
            Deployment(
                env=str(env),
                image=str(image),
                image_id=str(image_id),
                revision=str(revision),
                at=_time(str(at)),
                base=str(base),
            )
            for env, image, image_id, base, revision, at in rows
        ]

    def history(self, key: EnvKey, limit: int = HISTORY_KEEP) -> list[Deployed]:
        """One environment's deployments and failed attempts with their outcome, newest first."""
        if not self._judged:
            return [
                Deployed(d.revision, d.image, d.image_id, d.at, Health.UNKNOWN)
                for d in reversed(self.deployments(key))
            ][:limit]
        with self._tx() as db:
            rows = db.execute(
                "SELECT image, image_id, revision, at, health, judged, state_commit, reason, "
                "attempt FROM deployments WHERE env = ? ORDER BY id DESC LIMIT ?",
                [str(key), limit],
            ).fetchall()
        return [
            Deployed(
                revision=str(revision),
                image=str(image),
                image_id=str(image_id),
                at=_time(str(at)),
                health=Health.of(str(health)),
                judged_at=_time(str(judged)) if judged else None,
                state_commit=str(commit),
                reason=str(reason),
                attempt=bool(attempt),
            )
            for image, image_id, revision, at, health, judged, commit, reason, attempt in rows
        ]

    # ------------------------------------------------------------------------- restores
    def restore_mark(self, key: EnvKey) -> dict[str, Any] | None:
        """A data restore a rollback asked for (``odooops rollback --with-data`` from a
        pre-update backup): the backup and the revision it goes back with, or None."""
        with self._tx() as db:
            row = db.execute("SELECT doc FROM restores WHERE env = ?", [str(key)]).fetchone()
        doc = None if row is None else json.loads(row[0])
        return doc if isinstance(doc, dict) else None

    def put_restore_mark(self, key: EnvKey, doc: Mapping[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO restores (env, doc, updated) VALUES (?, ?, ?) ON CONFLICT(env) DO "
                "UPDATE SET doc = excluded.doc, updated = excluded.updated",
                [str(key), json.dumps(dict(doc), sort_keys=True), now()],
            )

    def forget_restore_mark(self, key: EnvKey) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM restores WHERE env = ?", [str(key)])

    # --------------------------------------------------------------------------- images
    def put_built(self, image_id: str, tag: str, project: str) -> None:
        """This daemon built ``image_id`` as ``tag``: the image is its own to remove one day
        (an image's labels cannot say so: the build's own Dockerfile may write them)."""
        if self.read_only:
            return
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO images (id, tag, project, built) VALUES (?, ?, ?, ?)",
                [image_id, tag, project, now()],
            )

    def built(self) -> dict[str, str]:
        """Image id -> tag of every image the ledger records this daemon built."""
        with self._tx() as db:
            rows = db.execute("SELECT id, tag FROM images").fetchall()
        return {str(i): str(tag) for i, tag in rows}

    def forget_built(self, image_ids: Iterable[str]) -> None:
        """Images removed (by the collector, or by hand): no longer recorded as built."""
        if self.read_only:
            return
        with self._tx() as db:
            db.executemany("DELETE FROM images WHERE id = ?", [[i] for i in image_ids])

    # ------------------------------------------------------------------ preview comments
    def preview_comment(self, request: str) -> tuple[str, str] | None:
        """The comment posted on a request (``project|forge|number``) for its preview, and
        a digest of its last text: edited in place, never posted twice."""
        with self._tx() as db:
            row = db.execute(
                "SELECT comment_id, digest FROM preview_comments WHERE request = ?", [request]
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def put_preview_comment(self, request: str, comment_id: str, digest: str) -> None:
        if self.read_only:
            return
        with self._tx() as db:
            db.execute(
                "INSERT INTO preview_comments (request, comment_id, digest, updated) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(request) DO UPDATE SET "
                "comment_id = excluded.comment_id, digest = excluded.digest, "
                "updated = excluded.updated",
                [request, comment_id, digest, now()],
            )

    # ---------------------------------------------------------------------------- tasks
    def last_run(self, task: str) -> datetime | None:
        """When a periodic task of the daemon last ran (``image-gc``), or None."""
        with self._tx() as db:
            row = db.execute("SELECT at FROM tasks WHERE name = ?", [task]).fetchone()
        return None if row is None else _time(str(row[0]))

    def put_last_run(self, task: str, at: datetime) -> None:
        if self.read_only:
            return
        with self._tx() as db:
            db.execute(
                "INSERT INTO tasks (name, at) VALUES (?, ?) ON CONFLICT(name) DO "
                "UPDATE SET at = excluded.at",
                [task, _iso(at)],
            )

    # ------------------------------------------------------------------------- activity
    def activities(self) -> dict[EnvKey, Activity]:
        """Every environment's sleep state and last request (``reconciler.core.sleep``)."""
        with self._tx() as db:
            rows = db.execute("SELECT env, state, since, last_request FROM activity").fetchall()
        return {a.key: a for a in map(_activity, rows)}

    def activity(self, key: EnvKey) -> Activity | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT env, state, since, last_request FROM activity WHERE env = ?", [str(key)]
            ).fetchone()
        return None if row is None else _activity(row)

    def put_rest(self, key: EnvKey, state: Rest, since: datetime) -> None:
        """``key`` is ``state`` from ``since`` on; its last request is kept."""
        if self.read_only:
            return
        with self._tx() as db:
            db.execute(
                "INSERT INTO activity (env, state, since) VALUES (?, ?, ?) ON CONFLICT(env) DO "
                "UPDATE SET state = excluded.state, since = excluded.since",
                [str(key), state.value, _precise(since)],
            )

    def heard(self, requests: Mapping[EnvKey, datetime]) -> None:
        """The newest request per environment, as the proxy logged them: each row keeps the
        later of what it had and this (the log may be read again after a restart). An
        environment without a row gets one, awake since that request."""
        if self.read_only or not requests:
            return
        with self._tx() as db:
            for key, at in requests.items():
                db.execute(
                    "INSERT INTO activity (env, state, since, last_request) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(env) DO UPDATE SET last_request = excluded.last_request "
                    "WHERE activity.last_request IS NULL "
                    "OR activity.last_request < excluded.last_request",
                    [str(key), Rest.AWAKE.value, _precise(at), _precise(at)],
                )

    def wake(self, key: EnvKey, at: datetime) -> bool:
        """Asleep -> waking at ``at``, only if it is asleep now: of a burst of requests, or a
        request and a deploy, exactly one wakes it (True for that one)."""
        if self.read_only:
            return False
        with self._tx() as db:
            done = db.execute(
                "UPDATE activity SET state = ?, since = ? WHERE env = ? AND state = ?",
                [Rest.WAKING.value, _precise(at), str(key), Rest.ASLEEP.value],
            )
            return bool(done.rowcount)

    def forget_activity(self, key: EnvKey) -> None:
        if self.read_only:
            return
        with self._tx() as db:
            db.execute("DELETE FROM activity WHERE env = ?", [str(key)])


def _precise(at: datetime) -> str:
    """To the microsecond, in UTC, so text order is time order (``sleep_after`` may be 2 s)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _activity(row: tuple[Any, ...]) -> Activity:
    env, state, since, last_request = row
    return Activity(
        _key(str(env)),
        Rest(str(state)),
        _time(str(since)),
        None if last_request is None else _time(str(last_request)),
    )


def _missing(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """Columns of ``MIGRATIONS`` a ledger does not have yet: (table, column, declaration)."""
    missing: list[tuple[str, str, str]] = []
    for table, columns in MIGRATIONS.items():
        have = {str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")}
        missing.extend((table, name, decl) for name, decl in columns if name not in have)
    return missing


def _migrate(db: sqlite3.Connection) -> None:
    for table, name, declaration in _missing(db):
        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


def _time(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _key(text: str) -> EnvKey:
    project, _, env = text.partition("/")
    return EnvKey(project, env)


def _record(row: tuple[Any, ...]) -> DatabaseRecord:
    env, server, name, state, protected, tier, revision, backup_revision, updated = row
    return DatabaseRecord(
        key=_key(str(env)),
        server=str(server),
        name=str(name),
        state=DbState(str(state)),
        protected=bool(protected),
        tier=str(tier),
        revision=str(revision),
        backup_revision=str(backup_revision),
        updated=str(updated),
    )

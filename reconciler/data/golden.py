"""Golden copies: one neutralised, masked copy of a production environment, made once per
refresh, that every masked copy of that environment is a template copy of.

A refresh never blocks production and never serves a half-made copy:

- **building**: production's database is *streamed* into a scratch database (one exported
  snapshot, no pause of production, unlike a template copy of it), given a new identity,
  neutralised with the modules' own scripts (read from production's image) and masked
  (masking.yaml), logged in as production's role, which owns the golden copy. Its filestore
  is a directory of hard links to production's files in production's own volume (seconds for
  any size; Odoo never rewrites a file in place, and nothing ever writes into a golden
  filestore: copies from it are real copies into the target's volume, so a preview can never
  write into production's files).
- **swapping**: the previous golden copy is renamed aside, the scratch one renamed into
  place, the filestore directories swapped the same way, the ledger's golden record
  rewritten, the previous copy dropped.

The refresh is journalled (kind ``golden-refresh``, keyed by the production environment): a
crash while building rolls back (the scratch database and directory go, the previous golden
copy was never touched and stays usable); a crash once swapping began rolls forward. Every
step checks the live state first, so recovering twice converges the same way. Open entries
are recovered at the daemon's start and before the next refresh of the same copy, never by
production's own runs (a refresh in flight in another thread is not a crashed one).

Copies from a golden copy and the swap of a refresh take the copy's lock: a copy never reads
a golden copy being renamed, and a refresh waits seconds for a copy, never the other way round
for the whole build.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from reconciler.core.errors import OdooOpsError
from reconciler.core.faults import boundary
from reconciler.core.golden import GoldenNames, is_golden
from reconciler.core.model import EnvKey
from reconciler.data.database import copy as dbcopy
from reconciler.data.database import masking, neutralize
from reconciler.data.database.endpoint import Endpoint
from reconciler.data.moves import (
    Journal,
    JournalEntryLike,
    drop_database,
    existing_databases,
    rename_database,
)
from reconciler.drivers.docker import DockerDriver

if TYPE_CHECKING:  # the lifecycle reads golden copies: it imports this module
    from reconciler.data.lifecycle import ProgressFn, Sanitising, Site

log = logging.getLogger("odooops.golden")

KIND = "golden-refresh"


class GoldenJournal(Journal, Protocol):
    """The engine's ledger: the journal of moves, plus the golden copies' own table."""

    def golden(self, key: EnvKey) -> Mapping[str, Any] | None: ...

    def put_golden(self, key: EnvKey, doc: Mapping[str, Any]) -> None: ...

    def forget_golden(self, key: EnvKey) -> None: ...

    def goldens(self) -> Mapping[EnvKey, Mapping[str, Any]]: ...

    def entries(self, key: EnvKey | None = None) -> Sequence[JournalEntryLike]: ...


@dataclass(frozen=True)
class GoldenSource:
    """A golden copy as a copy reads it: the admin endpoint (``dbname`` = the golden copy),
    the production role that owns it, and where its filestore directory is."""

    source: EnvKey
    endpoint: Endpoint
    login: Endpoint
    volume: str
    filestore: str
    refreshed_at: str
    revision: str


class GoldenInconsistent(OdooOpsError):
    code = "golden_inconsistent"


class GoldenCopies:
    """Refreshes, recovers, reads and drops the golden copies of one daemon."""

    def __init__(
        self,
        docker: DockerDriver,
        journal: Callable[[], GoldenJournal],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.docker = docker
        self._journal = journal
        self._clock = clock or (lambda: datetime.now(UTC))
        self._refreshing: dict[EnvKey, threading.Lock] = {}
        self._using: dict[EnvKey, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, table: dict[EnvKey, threading.Lock], key: EnvKey) -> threading.Lock:
        with self._guard:
            return table.setdefault(key, threading.Lock())

    @contextlib.contextmanager
    def using(self, key: EnvKey) -> Iterator[None]:
        """Held by a copy from the golden copy of ``key`` and by a refresh's swap."""
        with self._lock(self._using, key):
            yield

    @contextlib.contextmanager
    def refreshing(self, key: EnvKey) -> Iterator[None]:
        """One refresh of a golden copy at a time (a second one waits, then finds it fresh)."""
        with self._lock(self._refreshing, key):
            yield

    # ------------------------------------------------------------------------- reading
    def current(self, source: Site) -> GoldenSource | None:
        """The golden copy of ``source`` when the ledger records one and it exists."""
        doc = self._journal().golden(source.key)
        if doc is None:
            return None
        name = str(doc.get("database", ""))
        with source.endpoint.with_db("postgres").connect() as conn:
            if name not in existing_databases(conn, name):
                return None
        return GoldenSource(
            source=source.key,
            endpoint=source.endpoint.with_db(name),
            login=source.login.with_db(name),
            volume=str(doc.get("volume", source.volume)),
            filestore=str(doc.get("filestore", name)),
            refreshed_at=str(doc.get("refreshed_at", "")),
            revision=str(doc.get("revision", "")),
        )

    def describe(self, source: Site) -> dict[str, Any]:
        """The ledger's record with what only the server knows: whether it exists, its size."""
        doc = dict(self._journal().golden(source.key) or {})
        name = GoldenNames.of(source.key).database
        doc.setdefault("database", name)
        with source.endpoint.with_db("postgres").connect() as conn:
            exists = bool(existing_databases(conn, str(doc["database"])))
        doc["exists"] = exists
        if exists:
            doc["size_bytes"] = dbcopy.database_size(source.endpoint.with_db(str(doc["database"])))
        return doc

    # ------------------------------------------------------------------------- refresh
    def refresh(
        self,
        source: Site,
        sanitising: Sanitising,
        *,
        reason: str,
        jobs: int,
        progress: ProgressFn,
        when_missing: bool = False,
    ) -> dict[str, Any] | None:
        """Make the golden copy of ``source`` again and swap it in; returns its new record.
        ``when_missing``: only if there is none (None when another refresh, waited for, made
        it meanwhile).

        Runs beside production: no lock of production's is taken, production is read through
        a snapshot, and nothing is renamed but golden copies."""
        dbcopy.check_tools()
        started = time.monotonic()
        with self.refreshing(source.key):
            self._recover_open(source)
            if when_missing and self.current(source) is not None:
                return None
            names = GoldenNames.of(source.key, secrets.token_hex(4))
            doc: dict[str, Any] = {
                "source": str(source.key),
                "database": names.database,
                "scratch": names.scratch,
                "old": names.old,
                "fs_old": names.fs_old,
                "volume": source.volume,
                "server": _server(source.endpoint),
                "image": source.image,
                "phase": "building",
            }
            journal = self._journal()
            entry = journal.open_entry(source.key, KIND, doc)
            boundary("golden", "refresh: journal opened")
            try:
                record = self._build(source, names, sanitising, jobs, progress)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._roll_back(source.endpoint, source.image, doc)
                    journal.close_entry(entry)
                raise
            record.update(
                reason=reason,
                refreshed_at=self._clock().isoformat(timespec="seconds"),
                seconds=round(time.monotonic() - started, 2),
            )
            swapping = {**doc, "phase": "swapping", "record": record}
            journal.update_entry(entry, swapping)
            boundary("golden", "refresh: swap begins")
            progress("swapping the golden copy in", 0, 0)
            with self.using(source.key):
                self._roll_forward(source.key, source.endpoint, source.image, swapping)
            journal.close_entry(entry)
        log.info("%s: golden copy refreshed in %.1f s (%s)", source.key, record["seconds"], reason)
        return record

    def _build(
        self,
        source: Site,
        names: GoldenNames,
        sanitising: Sanitising,
        jobs: int,
        progress: ProgressFn,
    ) -> dict[str, Any]:
        scratch = source.endpoint.with_db(names.scratch)
        progress("streaming production into the new golden copy", 0, 0)
        copied = dbcopy.copy_database(
            source.endpoint,
            scratch,
            source_login=source.login,
            target_login=source.login,
            strategy=dbcopy.Strategy.STREAM,
            jobs=jobs,
            progress=lambda p: progress(p.phase, p.done, p.total),
        )
        boundary("golden", "refresh: database copied")
        odoo_sql = ""
        if sanitising.odoo_sql is not None:
            progress("reading the modules' neutralisation scripts", 0, 0)
            odoo_sql = sanitising.odoo_sql(names.scratch)
        with source.login.with_db(names.scratch).connect() as conn:  # one transaction each
            neutralize.reidentify(conn)
            progress("neutralising", 0, 0)
            report = neutralize.neutralize(conn, None, masked=True, odoo_sql=odoo_sql)
            progress("masking personal data", 0, 0)
            masked = masking.mask(conn, sanitising.rules, sanitising.salt)
        boundary("golden", "refresh: neutralised and masked")
        progress("linking the filestore", 0, 0)
        files = self.docker.filestore_link_copy(
            source.image, source.volume, source.database, names.scratch
        )
        boundary("golden", "refresh: filestore linked")
        return {
            "database": names.database,
            "server": _server(source.endpoint),
            "volume": source.volume,
            "filestore": names.database,
            "revision": source.revision,
            "bytes": copied.bytes,
            "copy_seconds": round(copied.seconds, 2),
            "filestore_files": files,
            "neutralized": list(report.applied),
            "masked_rows": sum(masked.rows.values()),
            "masking_seconds": round(masked.seconds, 2),
        }

    # ------------------------------------------------------------------------ recovery
    def _recover_open(self, source: Site) -> None:
        """Entries of this copy left by a daemon that died (called under the refresh lock:
        none of this process is in flight)."""
        for entry in self._journal().entries(source.key):
            if entry.kind == KIND:
                self.recover(entry.id, entry.doc, source.endpoint, source.image)

    def recover(self, entry_id: int, doc: Mapping[str, Any], endpoint: Endpoint, image: str) -> str:
        """Finish (swapping) or undo (building) a refresh a crash interrupted; idempotent."""
        key = EnvKey(*str(doc["source"]).split("/", 1))
        if doc.get("phase") == "swapping":
            with self.using(key):
                self._roll_forward(key, endpoint, image, doc)
            outcome = f"refresh of the golden copy of {key} finished after an interruption"
        else:
            self._roll_back(endpoint, image, doc)
            outcome = f"refresh of the golden copy of {key} rolled back after an interruption"
        self._journal().close_entry(entry_id)
        log.warning("%s", outcome)
        return outcome

    def _roll_back(self, endpoint: Endpoint, image: str, doc: Mapping[str, Any]) -> None:
        scratch = str(doc["scratch"])
        with endpoint.with_db("postgres").connect() as conn:
            drop_database(conn, scratch)
        self.docker.filestore_discard(image, str(doc["volume"]), scratch)

    def _roll_forward(
        self, key: EnvKey, endpoint: Endpoint, image: str, doc: Mapping[str, Any]
    ) -> None:
        golden, scratch, old = str(doc["database"]), str(doc["scratch"]), str(doc["old"])
        if not is_golden(golden):  # only ever a name core.golden made
            raise GoldenInconsistent(
                f"the journal names {golden!r} as a golden copy, which it is not",
                remediation="odooops status  (and look at the ledger's journal)",
            )
        with endpoint.with_db("postgres").connect() as conn:
            present = existing_databases(conn, golden, scratch, old)
            if scratch in present:
                if golden in present:
                    if old in present:
                        raise GoldenInconsistent(
                            f"cannot finish the refresh of the golden copy of {key}: {golden}, "
                            f"{old} and {scratch} all exist",
                            remediation=f"drop {scratch} and {old}, then: odooops db golden "
                            f"{key} --refresh",
                        )
                    rename_database(conn, golden, old)
                    boundary("golden", "refresh: previous copy set aside")
                rename_database(conn, scratch, golden)
                boundary("golden", "refresh: new copy in place")
        self.docker.filestore_swap(image, str(doc["volume"]), scratch, golden, str(doc["fs_old"]))
        boundary("golden", "refresh: filestore swapped")
        # Recorded before the previous copy goes: a crash in between leaves a set-aside copy
        # the next recovery drops, never a record of a copy that is gone.
        self._journal().put_golden(key, dict(doc.get("record") or {}))
        boundary("golden", "refresh: recorded in the ledger")
        with endpoint.with_db("postgres").connect() as conn:
            drop_database(conn, old)
        boundary("golden", "refresh: previous copy dropped")

    # --------------------------------------------------------------------------- drop
    def drop(self, key: EnvKey, endpoint: Endpoint, image: str, volume: str | None) -> bool:
        """Remove the golden copy of ``key`` (no longer wanted): the database, its filestore
        directory (when the source's volume is still there to hold it) and the record."""
        doc = self._journal().golden(key)
        if doc is None:
            return False
        name = str(doc.get("database", ""))
        with self.refreshing(key), self.using(key):
            if is_golden(name):
                with endpoint.with_db("postgres").connect() as conn:
                    drop_database(conn, name)
                if volume is not None:
                    self.docker.filestore_remove(image, volume, str(doc.get("filestore", name)))
            self._journal().forget_golden(key)
        return True


def _server(endpoint: Endpoint) -> str:
    return "dedicated" if endpoint.server.startswith("dedicated") else endpoint.server


__all__ = ["KIND", "GoldenCopies", "GoldenInconsistent", "GoldenJournal", "GoldenSource"]

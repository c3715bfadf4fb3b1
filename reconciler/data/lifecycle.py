"""The database lifecycle of environments: copy, neutralise, mask, back up, restore, move.

Every operation that replaces an environment's data builds the new database under a scratch
name first (``odooops_tmp_*``), neutralises and masks it there, stages the filestore beside the
live one, and only then swaps both in while the environment's Odoo is stopped. Each such move is
journalled (``reconciler.data.moves``): a failure, or a daemon killed at any point, before the
swap removes what was built and leaves the environment as it was; once the swap began, it is
finished. No database, filestore or backup is ever left half-written.

Backups are one object per backup, streamed ``pg_dump -Fc | framing | zstd | AES-256-GCM`` to
the storage (a directory or S3, multipart) with nothing staged on disk, then read back whole to
verify every authentication tag, the checksum and the dump's table of contents; the manifest
(``<id>.json``) is written last and is what makes a backup "good".

The admin login only creates, drops and renames databases; everything that reads or writes
an environment's data is logged in as the environment's own role: dumps, copies, the
neutralisation and masking of a scratch copy, and every restore and import, whose ``psql`` or
``pg_restore`` runs in a throw-away container on the environment's network
(``DockerDriver.run_database_tool``), never on the daemon's host. Plain SQL passes
``plainsql`` on its way in.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Literal

from reconciler.core.errors import OdooOpsError
from reconciler.core.faults import boundary
from reconciler.core.model import EnvKey, Tier
from reconciler.core.retention import BackupEntry, Retention, expired
from reconciler.data.backup.crypto import BackupKey, open_sealed, seal
from reconciler.data.backup.errors import BackupCorrupt, BackupError, BackupKeyMismatch
from reconciler.data.backup.framing import PartWriter, read_parts
from reconciler.data.backup.storage import BackupStorage
from reconciler.data.database import copy as dbcopy
from reconciler.data.database import dumpversion, masking, neutralize, odoozip, plainsql
from reconciler.data.database.adminlogin import set_password as set_admin_password
from reconciler.data.database.endpoint import Endpoint, client_tool, drain, pg_restore_args
from reconciler.data.golden import GoldenSource
from reconciler.data.moves import DROP_REPLACED, Keeping, Moves
from reconciler.drivers.docker import DatabaseReach, DockerDriver
from reconciler.drivers.tarstream import empty_tar, rename_top

log = logging.getLogger("odooops.lifecycle")

CHUNK = 1 << 20
BACKUP_FORMAT = 1
ID_FORMAT = "%Y-%m-%d-%H-%M"

ProgressFn = Callable[[str, int, int], None]


def _no_progress(_phase: str, _done: int, _total: int) -> None:
    return None


@dataclass(frozen=True)
class Site:
    """Where one environment's data lives, resolved by the engine for this operation."""

    key: EnvKey
    endpoint: Endpoint  # the admin: creates, drops, renames databases; dbname = the live db
    login: Endpoint  # the environment's own role, owner of its data: every read and write
    reach: DatabaseReach  # the database as a container on the environment's network sees it
    volume: str  # filestore volume
    image: str  # the platform's image (dev_database.image): tool and filestore containers
    odoo_image: str  # Odoo's image: only ever created, to fill a new volume as Odoo would
    tier: Tier
    protected: bool
    instance: str
    revision: str = ""
    state_commit: str = ""
    # The environment's own Odoo administrator password, set on every copy into it (none: kept)
    admin_password: str = field(default="", repr=False)

    @property
    def database(self) -> str:
        return self.endpoint.dbname

    @property
    def owner(self) -> str:
        """The environment's role: owner of its database and objects."""
        return self.login.user

    @property
    def production(self) -> bool:
        return self.tier is Tier.PRODUCTION


@dataclass(frozen=True)
class Sanitising:
    """What a non-production copy gets: neutralisation (always) and masking (when asked)."""

    mail: neutralize.MailTarget | None
    mask: bool
    rules: masking.MaskingRules
    salt: str = ""
    # Odoo's own neutralisation SQL for a database name (``odoo neutralize --stdout`` in the
    # target's image); None only where no Odoo image is involved (tests of the steps alone).
    odoo_sql: Callable[[str], str] | None = None


@dataclass(frozen=True)
class BackupRecord:
    """A manifest as stored beside its backup."""

    id: str
    doc: Mapping[str, Any]

    @property
    def good(self) -> bool:
        return self.doc.get("status") == "good"

    @property
    def taken_at(self) -> datetime:
        return datetime.fromisoformat(str(self.doc["started_at"]))


class OperationBusy(OdooOpsError):
    code = "operation_busy"
    retryable = True


class Lifecycle:
    """Data operations over the Docker driver, the databases and the backup storage."""

    def __init__(
        self,
        docker: DockerDriver,
        moves: Moves,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.docker = docker
        self.moves = moves
        self._clock = clock or (lambda: datetime.now(UTC))
        self._locks: dict[EnvKey, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def exclusive(self, key: EnvKey, wait: float = 3600) -> Iterator[None]:
        """One data operation per environment at a time (a backup during a restore is wrong);
        the reconcile pass takes the same lock, so it never starts Odoo mid-restore."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        acquired = lock.acquire(timeout=wait) if wait > 0 else lock.acquire(blocking=False)
        if not acquired:
            raise OperationBusy(
                f"another operation on {key} is running (a backup, restore, copy or deployment)",
                remediation=f"odooops jobs; odooops status {key}",
            )
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------------------------- copy
    def clone(
        self,
        source: Site,
        target: Site,
        sanitising: Sanitising | None,
        *,
        max_quiesce_seconds: float,
        jobs: int,
        initialised: bool = True,
        template_rate: float = dbcopy.TEMPLATE_BYTES_PER_SECOND,
        progress: ProgressFn = _no_progress,
    ) -> dict[str, Any]:
        """Replace ``target``'s database and filestore by a copy of ``source``'s.

        ``template_rate`` is the template copy's throughput measured on this server (bytes per
        second): it decides whether the source's pause stays under ``max_quiesce_seconds``.

        ``initialised=False`` labels the copy as not yet initialised: the engine still has to
        update its modules to the target's revision, and labels it once that succeeded.
        """
        dbcopy.check_tools()
        size = dbcopy.database_size(source.endpoint)
        with self._move(target, "clone", initialised) as move:
            scratch = target.endpoint.with_db(move.scratch)
            choice = dbcopy.choose_strategy(
                source.endpoint,
                scratch,
                size,
                max_quiesce_seconds=max_quiesce_seconds,
                bytes_per_second=template_rate,
            )
            log.info(
                "%s: copying %s by %s (%s)", target.key, source.key, choice.strategy, choice.reason
            )
            result = dbcopy.copy_database(
                source.endpoint,
                scratch,
                source_login=source.login,
                target_login=target.login,
                strategy=choice.strategy,
                jobs=jobs,
                progress=lambda p: progress(p.phase, p.done, p.total),
            )
            report = self._prepare(scratch, target, sanitising, copied=True, progress=progress)
            progress("copying the filestore", 0, 0)
            self.docker.filestore_prime(target.odoo_image, target.volume)
            files = self.docker.filestore_copy(
                target.image, source.volume, source.database, target.volume, move.staged
            )
        return {
            "strategy": choice.strategy.value,
            "why": choice.reason,
            "seconds": round(result.seconds, 2),
            "bytes": result.bytes,
            "filestore_files": files,
            **report,
        }

    def clone_golden(
        self,
        golden: GoldenSource,
        target: Site,
        mail: neutralize.MailTarget | None,
        *,
        initialised: bool = True,
        jobs: int = 4,
        progress: ProgressFn = _no_progress,
    ) -> dict[str, Any]:
        """Replace ``target``'s data by a copy of a golden copy (``reconciler.data.golden``).

        Neutralised and masked at its refresh already: the copy only gets its own identity,
        its own catcher login and its own administrator password. Nobody is connected to a
        golden copy, so a template copy pauses nothing and is used whenever both sides share
        a server; a target on its own server (a dev tier's) gets a streamed copy."""
        dbcopy.check_tools()
        with self._move(target, "clone", initialised) as move:
            scratch = target.endpoint.with_db(move.scratch)
            choice = (
                dbcopy.CopyChoice(
                    dbcopy.Strategy.TEMPLATE,
                    "the golden copy is on the target's server and nobody uses it: no pause",
                )
                if golden.endpoint.same_server(scratch)
                else dbcopy.CopyChoice(
                    dbcopy.Strategy.STREAM, "the target has its own server: a streamed copy"
                )
            )
            log.info(
                "%s: copying the golden copy of %s by %s (%s)",
                target.key,
                golden.source,
                choice.strategy,
                choice.reason,
            )
            result = dbcopy.copy_database(
                golden.endpoint,
                scratch,
                source_login=golden.login,
                target_login=target.login,
                strategy=choice.strategy,
                jobs=jobs,
                progress=lambda p: progress(p.phase, p.done, p.total),
            )
            with target.login.with_db(scratch.dbname).connect() as conn:
                neutralize.reidentify(conn)
                if mail is not None:
                    neutralize.point_mail(conn, mail)
                _admin_login(conn, target)
            progress("copying the filestore", 0, 0)
            self.docker.filestore_prime(target.odoo_image, target.volume)
            files = self.docker.filestore_copy(
                target.image, golden.volume, golden.filestore, target.volume, move.staged
            )
        return {
            "strategy": choice.strategy.value,
            "why": choice.reason,
            "seconds": round(result.seconds, 2),
            "bytes": result.bytes,
            "filestore_files": files,
            "golden": {"refreshed_at": golden.refreshed_at, "revision": golden.revision},
        }

    def update_on_copy(
        self, target: Site, update: Callable[[str], object], keeping: Keeping = DROP_REPLACED
    ) -> dict[str, Any]:
        """Run ``update`` (a module update of the scratch database named) on a copy of
        ``target``'s database and filestore, and swap the copy in only when it returns.

        The move is journalled like a restore, so a kill before the swap leaves the live
        data as it was, and one during it finishes it. When ``update`` raises, the copy is
        dropped and the live database is untouched. ``keeping``: what the swap keeps of the
        replaced data (the environment's ``keep_previous``) and records of the new.
        """
        copying = self._copy_in(target, "update", target.database, target.database, keeping)
        with copying as (move, report):
            update(move.scratch)
            boundary("lifecycle", "update: copy updated")
        return report

    def restore_kept(
        self, target: Site, kept: Mapping[str, Any], keeping: Keeping = DROP_REPLACED
    ) -> dict[str, Any]:
        """Put the data an update replaced (``kept``, recorded by ``moves``) back in place:
        copied, then swapped in as journalled as any move. The kept data itself is only read,
        so a failure or a kill leaves it there for another try; the data it replaces is kept
        in turn (``keeping``), so the rollback can be undone."""
        database = str(kept.get("database", ""))
        if not database.startswith("odooops_old_"):
            raise OdooOpsError(
                f"the kept data of {target.key} names {database!r}, not a kept database",
                code="nothing_kept",
                remediation=f"odooops db backups {target.key.env}  (restore a backup instead)",
            )
        filestore = str(kept["filestore"])
        with self._copy_in(target, "data-rollback", database, filestore, keeping) as (_, report):
            pass
        return report

    @contextlib.contextmanager
    def _copy_in(
        self, target: Site, op: str, database: str, filestore: str, keeping: Keeping
    ) -> Iterator[tuple[Any, dict[str, Any]]]:
        """A journalled move into ``target`` built from its own data: a template copy of
        ``database`` (Odoo is stopped: nothing waits on the pause) and a hard-linked copy of
        the ``filestore`` directory, both in seconds and at once (the maintenance window is
        the longer of the two, not their sum). The body may work on the copy; the swap
        follows it."""
        with self.moves.begin(
            target.key,
            target.endpoint,
            target.image,
            op=op,
            volume=target.volume,
            owner=target.owner,
            staged_as_scratch=True,
            keeping=keeping,
        ) as move:

            def link() -> int:
                files = self.docker.filestore_link_copy(
                    target.image, target.volume, filestore, move.scratch
                )
                boundary("lifecycle", f"{op}: filestore linked")
                return files

            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="filestore") as pool:
                linking = pool.submit(link)
                try:
                    result = dbcopy.copy_database(
                        target.endpoint.with_db(database),
                        target.endpoint.with_db(move.scratch),
                        source_login=target.login,
                        target_login=target.login,
                        strategy=dbcopy.Strategy.TEMPLATE,
                    )
                    boundary("lifecycle", f"{op}: database copied")
                finally:
                    wait([linking])  # never roll back under a copy still being made
                files = linking.result()
            yield (
                move,
                {
                    "copy_seconds": round(result.seconds, 2),
                    "bytes": result.bytes,
                    "filestore_files": files,
                },
            )

    def _prepare(
        self,
        scratch: Endpoint,
        target: Site,
        sanitising: Sanitising | None,
        *,
        copied: bool,
        progress: ProgressFn,
    ) -> dict[str, Any]:
        """New identity, neutralisation, masking and the target's own administrator password,
        on the scratch database before the swap.

        Logged in as the target's role, which owns the scratch copy: a trigger or a rule the
        copied data carries fires with that role's rights, never the admin's.
        """
        out: dict[str, Any] = {}
        login = target.login.with_db(scratch.dbname)
        odoo_sql = ""
        if not target.production and sanitising is not None and sanitising.odoo_sql is not None:
            progress("reading the modules' neutralisation scripts", 0, 0)
            odoo_sql = sanitising.odoo_sql(scratch.dbname)
        with login.connect() as conn:  # each step is one transaction of its own
            if copied:
                neutralize.reidentify(conn)
            if target.production or sanitising is None:
                _admin_login(conn, target)
                return out
            progress("neutralising", 0, 0)
            report = neutralize.neutralize(
                conn, sanitising.mail, masked=sanitising.mask, odoo_sql=odoo_sql
            )
            out["neutralized"] = list(report.applied)
            out["credentials_removed"] = dict(report.removed)
            if sanitising.mask:
                progress("masking personal data", 0, 0)
                masked = masking.mask(conn, sanitising.rules, sanitising.salt)
                out["masked_rows"] = sum(masked.rows.values())
                out["masking_seconds"] = round(masked.seconds, 2)
            _admin_login(conn, target)  # last: neutralising a masked copy removes every password
        return out

    def _move(
        self, target: Site, op: str, initialised: bool = True, keeping: Keeping = DROP_REPLACED
    ) -> Any:
        """A journalled move into ``target``: built beside the live data, then swapped in
        (``reconciler.data.moves``)."""
        return self.moves.begin(
            target.key,
            target.endpoint,
            target.image,
            op=op,
            volume=target.volume,
            owner=target.owner,
            initialised=initialised,
            keeping=keeping,
        )

    # ---------------------------------------------------------------------- backups
    def backup(
        self,
        site: Site,
        storage: BackupStorage,
        key: BackupKey,
        *,
        reason: str,
        level: int = 3,
        progress: ProgressFn = _no_progress,
        data_revision: str = "",
    ) -> BackupRecord:
        """Write, verify and register one backup; on failure the upload is aborted and a
        ``failed`` manifest says why (so nothing half-written is ever listed as good).
        ``data_revision``: the revision the data is at when it is not the site's (a backup
        before an update, taken while the site already names the new revision)."""
        dbcopy.check_tools()
        started = self._clock()
        backup_id = self._new_id(storage, site.key, started)
        name = f"{_prefix(site.key)}{backup_id}"
        base: dict[str, Any] = {
            "format": BACKUP_FORMAT,
            "id": backup_id,
            "project": site.key.project,
            "env": site.key.env,
            "tier": site.tier.value,
            "instance": site.instance,
            "revision": site.revision,
            "data_revision": data_revision or site.revision,
            "state_commit": site.state_commit,
            "reason": reason,
            "started_at": started.isoformat(timespec="seconds"),
            "key_id": key.key_id,
            "compression": f"zstd-{level}",
            "encryption": "aes-256-gcm-stream",
            "object": f"{backup_id}.backup",
        }
        upload = storage.upload(f"{name}.backup")
        try:
            modules, pg_version, odoo_version = _inventory(site.login)
            meta = {**base, "modules": modules, "pg_version": pg_version, "odoo": odoo_version}
            sealer = seal(upload.write, key, level)
            parts = PartWriter(sealer.write)
            with parts.part("manifest.json") as part:
                part.write(json.dumps(meta, sort_keys=True).encode())
            progress("dumping the database", 0, 0)
            db_bytes = self._dump_into(site.login, parts, progress)
            progress("archiving the filestore", 0, 0)
            fs_bytes = 0
            with parts.part("filestore.tar") as part:
                for chunk in self.docker.filestore_export(site.image, site.volume, site.database):
                    part.write(chunk)
                    fs_bytes += len(chunk)
            parts.close()
            sealer.close()
            upload.commit()
        except BaseException as exc:
            upload.abort()
            self._record_failure(storage, name, base, exc)
            raise
        doc = {
            **meta,
            "sizes": {
                "database_bytes": db_bytes,
                "filestore_bytes": fs_bytes,
                "plain_bytes": sealer.raw_bytes,
                "stored_bytes": sealer.bytes_out,
            },
            "sha256": sealer.sha256_hex,
        }
        try:
            progress("verifying", 0, sealer.bytes_out)
            self.verify(storage, key, BackupRecord(backup_id, doc), site.key)
        except BaseException as exc:
            storage.delete(f"{name}.backup")
            self._record_failure(storage, name, base, exc)
            raise
        doc.update(
            status="good",
            verified=True,
            finished_at=self._clock().isoformat(timespec="seconds"),
        )
        storage.put_json(f"{name}.json", doc)
        return BackupRecord(backup_id, doc)

    def _dump_into(self, endpoint: Endpoint, parts: PartWriter, progress: ProgressFn) -> int:
        """``pg_dump -Fc -Z0`` straight into the sealed stream (zstd compresses better)."""
        proc = subprocess.Popen(
            [client_tool("pg_dump"), "--format=custom", "--compress=0", "--no-owner", "--no-acl"],
            env={"PATH": "/usr/bin:/bin", **endpoint.env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        total = 0
        try:
            with parts.part("database.dump") as part:
                while chunk := proc.stdout.read(CHUNK):
                    part.write(chunk)
                    total += len(chunk)
                    progress("dumping the database", total, 0)
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace")
            proc.stderr.close()
            code = proc.wait()
        if code != 0:
            raise BackupError(
                f"pg_dump of {endpoint} failed: {err.strip()[-500:]}",
                remediation=f"pg_isready -h {endpoint.host} -p {endpoint.port}",
            )
        return total

    def _record_failure(
        self, storage: BackupStorage, name: str, base: Mapping[str, Any], exc: BaseException
    ) -> None:
        message = exc.message if isinstance(exc, OdooOpsError) else type(exc).__name__
        with contextlib.suppress(Exception):  # the storage itself may be what failed
            storage.put_json(
                f"{name}.json",
                {
                    **base,
                    "status": "failed",
                    "error": message[:500],
                    "finished_at": self._clock().isoformat(timespec="seconds"),
                },
            )

    def _new_id(self, storage: BackupStorage, key: EnvKey, at: datetime) -> str:
        """``2026-02-12-03-00``, as users type it; a second one in the same minute gets
        seconds, then a counter."""
        taken = {n.rsplit("/", 1)[-1].split(".", 1)[0] for n in storage.list(_prefix(key))}
        for candidate in (
            at.strftime(ID_FORMAT),
            at.strftime(ID_FORMAT + "-%S"),
            *(at.strftime(ID_FORMAT + "-%S") + f"-{i}" for i in range(2, 100)),
        ):
            if candidate not in taken:
                return candidate
        raise BackupError(f"too many backups of {key} in one second", retryable=True)

    def verify(
        self, storage: BackupStorage, key: BackupKey, record: BackupRecord, env: EnvKey
    ) -> dict[str, int]:
        """Read a backup whole: every tag, the checksum, the dump's table of contents."""
        counts = {"database_bytes": 0, "filestore_bytes": 0}
        with self._open(storage, key, record, env) as parts:
            for name, part in parts:
                if name == "database.dump":
                    counts["database_bytes"] = _check_dump(part)
                else:
                    while chunk := part.read(CHUNK):
                        if name == "filestore.tar":
                            counts["filestore_bytes"] += len(chunk)
        return counts

    @contextlib.contextmanager
    def _open(
        self, storage: BackupStorage, key: BackupKey, record: BackupRecord, env: EnvKey
    ) -> Iterator[Iterator[tuple[str, Any]]]:
        """The parts of a backup; the checksum is compared once the stream is consumed."""
        check_key(record, key, env)
        download = storage.download(f"{_prefix(env)}{record.id}.backup")
        try:
            reader = open_sealed(download.read, key)
            yield read_parts(reader.read)
            while reader.read(CHUNK):  # anything after the end marker is refused by the reader
                pass
            digest = reader.cipher.sha256_hex
            if record.doc.get("sha256") and digest != record.doc["sha256"]:
                raise BackupCorrupt(
                    f"backup {record.id} of {env} does not match its manifest's checksum",
                    remediation=f"odooops db backups {env}  (and restore another backup)",
                )
        finally:
            download.close()

    def list_backups(self, storage: BackupStorage, key: EnvKey) -> list[BackupRecord]:
        """Newest first; a backup without its manifest is an upload in progress or a
        crashed one, and is not listed."""
        out: list[BackupRecord] = []
        for name in storage.list(_prefix(key)):
            if not name.endswith(".json"):
                continue
            doc = storage.get_json(name)
            if doc is not None:
                out.append(BackupRecord(str(doc.get("id", name.rsplit("/", 1)[-1][:-5])), doc))
        return sorted(out, key=lambda r: (str(r.doc.get("started_at", "")), r.id), reverse=True)

    def find_backup(self, storage: BackupStorage, key: EnvKey, backup_id: str) -> BackupRecord:
        if backup_id in ("latest", "last"):
            good = [r for r in self.list_backups(storage, key) if r.good]
            if good:
                return good[0]
        else:
            doc = storage.get_json(f"{_prefix(key)}{backup_id}.json")
            if doc is not None:
                record = BackupRecord(backup_id, doc)
                if record.good:
                    return record
                state = doc.get("status", "unfinished")
                raise BackupError(
                    f"backup {backup_id} of {key} is not usable: it is {state} "
                    f"({doc.get('error', 'no error recorded')})",
                    code="backup_not_good",
                    remediation=f"odooops db backups {key}  (pick a backup marked good)",
                )
        raise BackupError(
            f"no backup {backup_id} of {key} in {storage.url}",
            code="backup_not_found",
            remediation=f"odooops db backups {key}  (lists the ids)",
        )

    def prune(
        self, storage: BackupStorage, key: EnvKey, policy: Retention, now: datetime
    ) -> list[str]:
        """Delete backups the retention no longer keeps (the backup first, its manifest last)."""
        records = self.list_backups(storage, key)
        entries = [BackupEntry(r.id, r.taken_at, r.good) for r in records]
        doomed = sorted(expired(entries, now, policy))
        for backup_id in doomed:
            storage.delete(f"{_prefix(key)}{backup_id}.backup")
            storage.delete(f"{_prefix(key)}{backup_id}.json")
        return doomed

    # ---------------------------------------------------------------------- restore
    def check_restore(self, record: BackupRecord, target: Site) -> None:
        """Refuse, before anything is backed up or created, a backup taken from a newer
        PostgreSQL than ``target``'s server (its manifest names the server's version; the
        dump's own header is checked again when it is loaded)."""
        pg_version = str(record.doc.get("pg_version") or "")
        claimed = dumpversion.with_manifest(dumpversion.DumpVersions(), pg_version, "its manifest")
        self._check_versions(claimed, target, "pgdump", f"backup {record.id}")

    def restore(
        self,
        storage: BackupStorage,
        key: BackupKey,
        record: BackupRecord,
        source: EnvKey,
        target: Site,
        sanitising: Sanitising | None,
        progress: ProgressFn = _no_progress,
        keeping: Keeping = DROP_REPLACED,
    ) -> dict[str, Any]:
        """Restore a backup of ``source`` into ``target`` (the same or another environment);
        ``keeping`` says what the swap records of the new data (a rollback's revision)."""
        sizes = {k: int(v) for k, v in dict(record.doc.get("sizes") or {}).items()}
        with self._move(target, "restore", keeping=keeping) as move:
            scratch = target.endpoint.with_db(move.scratch)
            dbcopy.create_empty(scratch, target.owner)
            with self._open(storage, key, record, source) as parts:
                for name, part in parts:
                    if name == "database.dump":
                        phase = "restoring the database"
                        reader = _Counting(
                            part, partial(progress, phase), sizes.get("database_bytes", 0)
                        )
                        self._load(reader, target, scratch.dbname, "pgdump")
                    elif name == "filestore.tar":
                        phase = "restoring the filestore"
                        reader = _Counting(
                            part, partial(progress, phase), sizes.get("filestore_bytes", 0)
                        )
                        self.docker.filestore_prime(target.odoo_image, target.volume)
                        self.docker.filestore_stage(
                            target.image,
                            target.volume,
                            move.staged,
                            rename_top(_chunks(reader), move.staged),
                        )
                    else:
                        while part.read(CHUNK):
                            pass
            report = self._prepare(
                scratch, target, sanitising, copied=source != target.key, progress=progress
            )
        return {"backup": record.id, "from": str(source), **report}

    def restore_test(
        self, storage: BackupStorage, key: BackupKey, record: BackupRecord, site: Site
    ) -> dict[str, Any]:
        """Restore into a scratch database, check Odoo's module table, drop it again."""
        started = time.monotonic()
        with self.moves.temporary(
            site.key, site.endpoint, site.image, volume=site.volume, owner=site.owner
        ) as move:
            scratch = site.endpoint.with_db(move.scratch)
            dbcopy.create_empty(scratch, site.owner)
            filestore = 0
            with self._open(storage, key, record, site.key) as parts:
                for name, part in parts:
                    if name == "database.dump":
                        self._load(part, site, scratch.dbname, "pgdump")
                    else:
                        while chunk := part.read(CHUNK):
                            filestore += len(chunk)
            with site.login.with_db(scratch.dbname).connect() as conn:
                row = conn.execute(
                    "SELECT count(*) FROM ir_module_module WHERE state = 'installed'"
                ).fetchone()
            modules = int(str(row[0])) if row else 0
            if modules == 0:
                raise BackupCorrupt(
                    f"backup {record.id} of {site.key} restores to a database without any "
                    "installed module",
                    remediation=f"odooops db backup {site.key}  (take a new backup now)",
                )
        return {
            "backup": record.id,
            "modules": modules,
            "seconds": round(time.monotonic() - started, 2),
        }

    # ------------------------------------------------------------------- Odoo dumps
    def export_zip(self, site: Site, out: BinaryIO, odoo_version: str) -> odoozip.ZipStats:
        """Odoo's database-manager zip: ``dump.sql``, ``filestore/``, ``manifest.json``."""
        dbcopy.check_tools()
        modules, pg_version, _ = _inventory(site.login)
        manifest = odoozip.build_manifest(site.database, odoo_version, pg_version, modules)
        proc = subprocess.Popen(
            [client_tool("pg_dump"), "--format=plain", "--no-owner", "--no-acl"],
            env={"PATH": "/usr/bin:/bin", **site.login.env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        err = drain(proc.stderr)

        def dump_sql() -> Iterator[bytes]:
            """The dump, failing at its end when pg_dump failed: the zip then never gets its
            central directory, so a broken export can never pass for a complete one."""
            yield from _chunks(proc.stdout)
            if proc.wait() != 0:
                err.join()
                raise BackupError(
                    f"pg_dump of {site.endpoint} failed: {err.text.strip()[-500:]}",
                    code="export_failed",
                    remediation=f"pg_isready -h {site.endpoint.host} -p {site.endpoint.port}",
                )

        try:
            return odoozip.write_odoo_zip(
                out,
                manifest=manifest,
                dump_sql=dump_sql(),
                filestore_tar=self.docker.filestore_export(site.image, site.volume, site.database),
            )
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            err.join()

    def check_dump(self, path: Path, target: Site) -> str:
        """Refuse a dump before anything is created (or backed up): its format, the
        PostgreSQL versions it names against ``target``'s server and loader, and plain SQL
        read through whole by ``plainsql`` (a zip's ``dump.sql`` as well)."""
        kind = odoozip.detect_format(path)
        if kind == "zip":
            with odoozip.read_odoo_zip(path) as archive:
                shown, load = f"dump.sql in {path.name}", archive.dump_sql_format()
                with archive.open_dump_sql() as dump:
                    head = dump.read(dumpversion.HEAD_BYTES)
                claimed = dumpversion.of_head(head, load)
                claimed = dumpversion.with_manifest(claimed, archive.manifest.pg_version)
                self._check_versions(claimed, target, load, shown)
                if load == "sql":
                    with archive.open_dump_sql() as dump:
                        plainsql.check(_chunks(dump), shown)
        else:
            with path.open("rb") as dump:
                head = dump.read(dumpversion.HEAD_BYTES)
            self._check_versions(dumpversion.of_head(head, kind), target, kind, path.name)
            if kind == "sql":
                with path.open("rb") as dump:
                    plainsql.check(_chunks(dump), path.name)
        return kind

    def _check_versions(
        self,
        claimed: dumpversion.DumpVersions,
        site: Site,
        kind: Literal["pgdump", "sql"],
        shown: str,
    ) -> None:
        """``dump_too_new`` when the dump names a PostgreSQL newer than ``site``'s server or
        the client that would load it (the platform image's, asked once per image)."""
        if claimed.server is None and claimed.pg_dump is None:
            return  # SQL written by hand: nothing to compare
        tool: Literal["psql", "pg_restore"] = "pg_restore" if kind == "pgdump" else "psql"
        client = None
        if claimed.pg_dump is not None:  # only what wrote the dump is compared with the client
            client = dumpversion.of_tool(self.docker.database_tool_version(site.image, tool))
        with site.endpoint.with_db("postgres").connect() as conn:
            server = dumpversion.PgVersion.of_number(
                int(conn.info.server_version), conn.info.parameter_status("server_version") or ""
            )
        refused = dumpversion.refusal(
            claimed,
            name=shown,
            target=server,
            target_name=f"of {site.key} ({site.endpoint.server})",
            client=client,
            tool=tool,
        )
        if refused is not None:
            raise refused

    def import_dump(
        self,
        path: Path,
        target: Site,
        sanitising: Sanitising | None,
        progress: ProgressFn = _no_progress,
    ) -> dict[str, Any]:
        """Replace ``target``'s data by an Odoo dump (zip, or a bare ``pg_dump`` file).

        The dump is loaded in a throw-away container logged in as the target's role; plain
        SQL is checked again line by line on its way there.
        """
        kind = odoozip.detect_format(path)
        files = 0
        with self._move(target, "import") as move:
            scratch = target.endpoint.with_db(move.scratch)
            dbcopy.create_empty(scratch, target.owner)
            progress("loading the database", 0, 0)
            self.docker.filestore_prime(target.odoo_image, target.volume)
            if kind == "zip":
                with odoozip.read_odoo_zip(path) as archive:
                    shown = f"dump.sql in {path.name}"
                    with archive.open_dump_sql() as dump:
                        load: Literal["pgdump", "sql"] = archive.dump_sql_format()
                        self._load(dump, target, scratch.dbname, load, shown)
                    progress("loading the filestore", 0, 0)
                    files = archive.filestore_files()
                    self.docker.filestore_stage(
                        target.image,
                        target.volume,
                        move.staged,
                        archive.filestore_tar(move.staged),
                    )
                    manifest = dict(archive.manifest.raw)
            else:
                with path.open("rb") as dump:
                    self._load(dump, target, scratch.dbname, kind, path.name)
                self.docker.filestore_stage(
                    target.image,
                    target.volume,
                    move.staged,
                    rename_top(empty_tar(move.staged), move.staged),
                )
                manifest = {}
            report = self._prepare(scratch, target, sanitising, copied=True, progress=progress)
        return {
            "format": kind,
            "filestore_files": files,
            "source_db": manifest.get("db_name", ""),
            "source_version": manifest.get("version", ""),
            **report,
        }

    def _load(
        self,
        source: Any,
        site: Site,
        dbname: str,
        kind: Literal["pgdump", "sql"],
        shown: str = "the dump",
    ) -> None:
        """Load a dump into ``dbname`` with ``pg_restore`` or ``psql``, run in a throw-away
        container on ``site``'s network and logged in as its role, so the dump can do
        nothing the environment's own Odoo could not.

        Plain SQL reaches ``psql`` through ``plainsql`` only, behind a ``\\restrict`` with a
        key of ours: ``psql`` itself then refuses every meta-command. Whoever calls, the
        versions the dump's header names are checked before the tool starts.
        """
        head, chunks = _head(_chunks(source), dumpversion.HEAD_BYTES)
        self._check_versions(dumpversion.of_head(head, kind), site, kind, shown)
        if kind == "pgdump":
            command = ["pg_restore", *pg_restore_args(dbname)]
            stdin: Iterator[bytes] = chunks
        else:
            command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null"]
            key = secrets.token_hex(32)
            guarded = plainsql.guarded(chunks, shown)
            stdin = _prefixed(f"\\restrict {key}\n".encode(), guarded)
        code, out = self.docker.run_database_tool(
            site.image,
            site.reach,
            user=site.login.user,
            password=site.login.password or "",
            dbname=dbname,
            command=command,
            stdin=stdin,
        )
        if code == 0:
            return
        remediation = "read the error above; the environment was left unchanged"
        if "\\restrict" in out and "invalid command" in out:
            remediation = (
                "the psql of the platform's image predates \\restrict (PostgreSQL 13.22, "
                "14.19, 15.14, 16.10, 17.6): set dev_database.image in odooops.yaml to a "
                "current postgres image (e.g. postgres:15) and docker pull it"
            )
        raise BackupError(
            f"loading {shown} into {dbname} with {command[0]} failed (exit {code}): "
            f"{out.strip()[-600:]}",
            code="restore_failed",
            remediation=remediation,
        )


# --------------------------------------------------------------------------- helpers
def check_key(record: BackupRecord, key: BackupKey, env: EnvKey) -> None:
    """Refuse, before anything is read or replaced, a backup sealed with another key."""
    want_key = str(record.doc.get("key_id", ""))
    if want_key and want_key != key.key_id:
        raise BackupKeyMismatch(
            f"backup {record.id} of {env} was encrypted with key {want_key}; the configured "
            f"key is {key.key_id}",
            remediation="set backups.encryption_key in odooops.yaml to the key file with id "
            f"{want_key} (`odooops db backups {env}` shows each backup's key id)",
        )


def _admin_login(conn: Any, target: Site) -> None:
    """The target's own administrator password, never the one the data came with."""
    if target.admin_password:
        set_admin_password(conn, target.admin_password)


def _prefix(key: EnvKey) -> str:
    return f"{key.project}/{key.env}/"


def _inventory(endpoint: Endpoint) -> tuple[dict[str, str], str, str]:
    """Installed modules with versions, the server's version and Odoo's (from ``base``)."""
    with endpoint.connect() as conn:
        rows = conn.execute(
            "SELECT name, coalesce(latest_version, '') FROM ir_module_module "
            "WHERE state = 'installed' ORDER BY name"
        ).fetchall()
        server = int(conn.info.server_version)
    modules = {str(n): str(v) for n, v in rows}
    base = modules.get("base", "")
    odoo = ".".join(base.split(".")[:2]) if base else ""
    return modules, odoozip.pg_version_string(server), odoo


def _chunks(stream: Any) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield bytes(chunk)


def _feed(cmd: list[str], env: Mapping[str, str], source: Any, what: str) -> str:
    """Stream ``source`` into a client tool's stdin; its failure is a structured error."""
    proc = subprocess.Popen(
        cmd,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out, err = drain(proc.stdout), drain(proc.stderr)
    try:
        while chunk := source.read(CHUNK):
            try:
                proc.stdin.write(chunk)
            except BrokenPipeError:
                break
    except BaseException:
        proc.kill()
        raise
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        code = proc.wait()
        out.join()
        err.join()
    if code != 0:
        raise BackupError(
            f"{what} failed: {err.text.strip()[-600:]}",
            code="restore_failed",
            remediation="read the error above; the environment was left unchanged",
        )
    return out.text


def _head(chunks: Iterator[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
    """The first ``size`` bytes (or all there are), and the whole stream still to read."""
    taken: list[bytes] = []
    got = 0
    for chunk in chunks:
        taken.append(chunk)
        got += len(chunk)
        if got >= size:
            break
    return b"".join(taken)[:size], itertools.chain(taken, chunks)


def _prefixed(head: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    yield head
    yield from rest


def _check_dump(part: Any) -> int:
    """Feed the dump to ``pg_restore --list``: it parses the whole table of contents."""
    counter = _Counting(part)
    toc = _feed([client_tool("pg_restore"), "--list"], {}, counter, "pg_restore --list")
    while counter.read(CHUNK):  # pg_restore stops after the table of contents
        pass
    if "TABLE DATA" not in toc and "TABLE " not in toc:
        raise BackupCorrupt(
            "the database dump inside the backup holds no table",
            remediation="take a new backup: odooops db backup <env>",
        )
    return counter.count


class _Counting:
    """A reader that counts what passes, and reports it as progress when asked to."""

    def __init__(
        self, inner: Any, report: Callable[[int, int], None] | None = None, total: int = 0
    ) -> None:
        self.inner, self.count, self.report, self.total = inner, 0, report, total
        self._reported = 0

    def read(self, n: int = -1) -> bytes:
        data = bytes(self.inner.read(n))
        self.count += len(data)
        if self.report is not None and (not data or self.count - self._reported >= 8 * CHUNK):
            self._reported = self.count
            self.report(self.count, max(self.total, self.count))
        return data


__all__ = ["BackupRecord", "Lifecycle", "Sanitising", "Site"]

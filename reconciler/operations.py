"""Data operations on declared environments: what ``odooops db ...`` and the schedules run.

The lifecycle module knows how to copy, back up and restore a database it is pointed at; this
module knows *which* database, with which credentials, under which rules: it resolves an
environment of the current desired state to a ``Site``, applies the protection rules (no copy
onto a protected environment, a restore or import into one only with an explicit confirm and
after a safety backup), takes the automatic backups before production updates and destructive
changes, and runs the per-tier schedules (backups, retention, restore tests).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from reconciler.backup.crypto import BackupKey
from reconciler.backup.errors import BackupError
from reconciler.backup.storage import BackupStorage, open_storage
from reconciler.database import masking, neutralize
from reconciler.database.copy import TEMPLATE_BYTES_PER_SECOND
from reconciler.database.endpoint import Endpoint
from reconciler.errors import OdooOpsError
from reconciler.lifecycle import (
    BackupRecord,
    Lifecycle,
    ProgressFn,
    Sanitising,
    Site,
    check_key,
)
from reconciler.mailcatcher import MailCatcher, MailStore, credentials_for
from reconciler.model import (
    MAIL_CATCHER_HOST,
    DesiredEnvironment,
    EnvKey,
    SecretRef,
    StateConfig,
    Tier,
)
from reconciler.schedules import due

if TYPE_CHECKING:
    from reconciler.engine import Engine

log = logging.getLogger("odooops.operations")


def _quiet(_phase: str, _done: int, _total: int) -> None:
    return None


class DataOps:
    """Resolves environments and runs data operations for one engine."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] | None = None) -> None:
        self.engine = engine
        self.clock = clock or (lambda: datetime.now(UTC))
        self.lifecycle = Lifecycle(engine.docker, self.clock)
        self.mail = MailStore(engine.config.data_dir / "mail")
        self._catcher: MailCatcher | None = None
        self._scheduled = ThreadPoolExecutor(max_workers=2, thread_name_prefix="backup")
        self._running: set[tuple[str, EnvKey]] = set()
        self._template_rate = TEMPLATE_BYTES_PER_SECOND
        self._running_lock = threading.Lock()

    def close(self) -> None:
        self.stop_mail_catcher()
        self._scheduled.shutdown(wait=True, cancel_futures=True)

    # --------------------------------------------------------------------- resolution
    def config(self) -> StateConfig:
        return self.engine.last_good_or_raise()

    def environment(self, key: EnvKey) -> DesiredEnvironment:
        """The environment as the last reconcile pass resolved it."""
        current = self.engine.current
        want = current.environments.get(key) if current else None
        if want is not None:
            return want
        why = current.held.get(key) if current else None
        state = f"held: {why}" if why else "not declared (or not resolved yet)"
        raise OdooOpsError(
            f"environment {key} is {state}",
            code="environment_not_found" if not why else "environment_held",
            remediation=f"odooops env list  (and odooops status {key})",
        )

    def site(self, want: DesiredEnvironment) -> Site:
        key = want.key
        if want.server is not None:
            endpoint = Endpoint.of_server(want.server, key.database)
        else:
            address = self.engine.docker.container_address(key.db_container, key.network)
            endpoint = Endpoint(
                address, 5432, key.role, key.database, self.engine.password(key), f"dedicated {key}"
            )
        return Site(
            key=key,
            endpoint=endpoint,
            owner=key.role,
            volume=key.filestore_volume,
            image=want.project.image,
            tier=want.spec.tier,
            protected=want.spec.protected,
            instance=self.engine.config.instance,
            revision=want.revision,
            state_commit=want.state_commit,
        )

    def mail_secret(self) -> bytes:
        return self.engine.secrets.get_or_create("mail/catcher", 48).encode()

    def mail_target(self, key: EnvKey) -> neutralize.MailTarget:
        creds = credentials_for(self.mail_secret(), key)
        port = self.config().platform.mail_catcher.port
        return neutralize.MailTarget(MAIL_CATCHER_HOST, port, creds.user, creds.password)

    def sanitising(self, want: DesiredEnvironment, mask: bool | None = None) -> Sanitising | None:
        """Non-production data is always neutralised; masked as the environment says."""
        if want.spec.tier is Tier.PRODUCTION:
            return None
        config = self.config()
        rules = masking.load_rules(config.masking)
        salt_ref = SecretRef.parse((config.masking or {}).get("salt"))
        salt = salt_ref.resolve() if salt_ref else self.engine.secrets.get_or_create("masking/salt")
        return Sanitising(
            mail=self.mail_target(want.key),
            mask=want.spec.mask if mask is None else mask,
            rules=rules,
            salt=salt,
        )

    def storage(self) -> BackupStorage:
        settings = self.config().platform.backups
        url = settings.storage
        if url is None:  # the default lives in the data directory, made on first use
            default = self.engine.config.data_dir / "backups"
            default.mkdir(mode=0o700, parents=True, exist_ok=True)
            url = default.resolve().as_uri()
        s3 = settings.s3
        return open_storage(
            url,
            endpoint_url=s3.endpoint,
            region=s3.region,
            access_key=s3.access_key.resolve() if s3.access_key else None,
            secret_key=s3.secret_key.resolve() if s3.secret_key else None,
        )

    def backup_key(self) -> BackupKey:
        ref = self.config().platform.backups.encryption_key
        if ref is None:
            raise BackupError(
                "no backup encryption key is configured",
                code="backup_key_missing",
                remediation="odooops init-key /etc/odooops/backup.key, then set "
                "backups.encryption_key: {file: /etc/odooops/backup.key} in odooops.yaml "
                "(keep a copy of the key elsewhere: backups cannot be read without it)",
            )
        return BackupKey.from_ref(ref)

    # ------------------------------------------------------------- engine's hooks
    def copy_for_init(self, want: DesiredEnvironment) -> dict[str, Any]:
        """A new environment declared ``db.source: <env>`` starts as a sanitised copy."""
        source_key = EnvKey(want.key.project, want.spec.db_source)
        source = self.environment(source_key)
        if not self.engine.is_initialised(source):
            raise OdooOpsError(
                f"{want.key} is a copy of {source_key}, whose database is not initialised yet",
                code="copy_source_not_ready",
                retryable=True,
                remediation=f"odooops status {source_key}  (the copy is retried by itself)",
            )
        # Inside a pass: no trigger (the pass itself goes on to start Odoo).
        return self._clone(source, want, _quiet, initialised=False, trigger=False)

    def ensure_neutralized(self, want: DesiredEnvironment) -> None:
        """Checked before any non-production Odoo starts: never run un-neutralised data."""
        if want.spec.tier is Tier.PRODUCTION:
            return
        site = self.site(want)
        with site.endpoint.connect() as conn:
            if neutralize.is_neutralized(conn):
                return
            log.info("%s: neutralising before Odoo starts", want.key)
            neutralize.neutralize(conn, self.mail_target(want.key))
        self.engine.status.note(str(want.key), "Neutralized", True, "BeforeStart")

    def backup_before(self, want: DesiredEnvironment, reason: str) -> BackupRecord:
        """The automatic backup before a production update or a destructive change."""
        return self._backup(want, reason, _quiet)

    # --------------------------------------------------------------- imperative
    def clone(
        self, source_key: EnvKey, target_key: EnvKey, progress: ProgressFn = _quiet
    ) -> dict[str, Any]:
        if source_key == target_key:
            raise OdooOpsError(
                f"{source_key} cannot be copied onto itself",
                code="invalid_request",
                remediation=f"odooops db clone {source_key.env} --to OTHER-ENV",
            )
        target = self.environment(target_key)
        if target.spec.protected:
            raise OdooOpsError(
                f"{target_key} is protected: a copy never replaces its database",
                code="copy_onto_protected",
                remediation=f"restore a backup instead: odooops db restore {source_key.env} "
                f"--backup=ID --to={target_key.env} --confirm",
            )
        source = self.environment(source_key)
        with self.lifecycle.exclusive(target_key):
            self._safety_backup(target, f"before copy of {source_key}")
            return self._clone(source, target, progress)

    def _clone(
        self,
        source: DesiredEnvironment,
        target: DesiredEnvironment,
        progress: ProgressFn,
        initialised: bool = True,
        trigger: bool = True,
    ) -> dict[str, Any]:
        copy = self.config().platform.copy
        result = self.lifecycle.clone(
            self.site(source),
            self.site(target),
            self.sanitising(target),
            max_quiesce_seconds=copy.max_quiesce_seconds,
            jobs=copy.jobs,
            initialised=initialised,
            template_rate=self._template_rate,
            progress=progress,
        )
        if result["strategy"] == "template" and result["seconds"] >= 0.5:
            # Measured, not assumed: the next choice uses this server's real throughput
            # (smoothed, and never above the optimistic default, so the pause errs long).
            measured = result["bytes"] / result["seconds"]
            self._template_rate = min(
                TEMPLATE_BYTES_PER_SECOND, 0.5 * self._template_rate + 0.5 * measured
            )
        self.engine.status.note(
            str(target.key), "Copied", True, result["strategy"], f"from {source.key}"
        )
        if trigger:
            self.engine.trigger_soon()
        return {"from": str(source.key), "to": str(target.key), **result}

    def backup(self, key: EnvKey, reason: str, progress: ProgressFn = _quiet) -> dict[str, Any]:
        want = self.environment(key)
        with self.lifecycle.exclusive(key):
            record = self._backup(want, reason, progress)
        return dict(record.doc)

    def _backup(self, want: DesiredEnvironment, reason: str, progress: ProgressFn) -> BackupRecord:
        key, storage = self.backup_key(), self.storage()
        level = self.config().platform.backups.compression_level
        try:
            record = self.lifecycle.backup(
                self.site(want), storage, key, reason=reason, level=level, progress=progress
            )
        except OdooOpsError as exc:
            self.engine.metrics.backups.labels("failed").inc()
            self.engine.status.note(str(want.key), "Backup", False, exc.code, exc.message)
            raise
        self.engine.metrics.backups.labels("good").inc()
        self.engine.status.update(
            str(want.key),
            want.key.project,
            want.key.env,
            last_backup=str(record.doc.get("finished_at", "")),
            last_backup_id=record.id,
        )
        self.engine.status.note(str(want.key), "Backup", True, "Good", f"{record.id} ({reason})")
        return record

    def backups(self, key: EnvKey) -> list[dict[str, Any]]:
        return [dict(r.doc) for r in self.lifecycle.list_backups(self.storage(), key)]

    def restore(
        self,
        target_key: EnvKey,
        backup_id: str,
        source_key: EnvKey | None = None,
        *,
        confirm: bool = False,
        progress: ProgressFn = _quiet,
    ) -> dict[str, Any]:
        """Restore ``source_key``'s backup (default: the target's own) into ``target_key``."""
        source_key = source_key or target_key
        target = self.environment(target_key)
        self._confirmed(
            target,
            confirm,
            f"odooops db restore {source_key.env} "
            f"--backup={backup_id} --to={target_key.env} --confirm",
        )
        storage, key = self.storage(), self.backup_key()
        record = self.lifecycle.find_backup(storage, source_key, backup_id)
        check_key(record, key, source_key)
        with self.lifecycle.exclusive(target_key):
            self._safety_backup(target, f"before restore of {source_key} {record.id}")
            result = self.lifecycle.restore(
                storage,
                key,
                record,
                source_key,
                self.site(target),
                self.sanitising(target),
                progress,
            )
        self.engine.status.note(str(target_key), "Restored", True, record.id, f"from {source_key}")
        self.engine.trigger_soon()
        return result

    def export(self, key: EnvKey, out: BinaryIO) -> dict[str, Any]:
        want = self.environment(key)
        stats = self.lifecycle.export_zip(self.site(want), out, want.project.odoo_version)
        return {"files": stats.files, "bytes": stats.bytes_in}

    def import_dump(
        self, key: EnvKey, path: Path, *, confirm: bool = False, progress: ProgressFn = _quiet
    ) -> dict[str, Any]:
        target = self.environment(key)
        self._confirmed(target, confirm, f"odooops db import {key.env} FILE --confirm")
        with self.lifecycle.exclusive(key):
            self._safety_backup(target, "before import")
            result = self.lifecycle.import_dump(
                path, self.site(target), self.sanitising(target), progress
            )
        self.engine.status.note(str(key), "Imported", True, result["format"], path.name)
        self.engine.trigger_soon()
        return result

    def _confirmed(self, target: DesiredEnvironment, confirm: bool, command: str) -> None:
        if target.spec.protected and not confirm:
            raise OdooOpsError(
                f"{target.key} is protected: replacing its data needs an explicit confirmation",
                code="confirm_required",
                remediation=command,
            )

    def _safety_backup(self, target: DesiredEnvironment, reason: str) -> None:
        """Before data is replaced: always for protected environments, and for any tier
        that is backed up on a schedule (dev tiers are not)."""
        if not (target.spec.protected or target.settings.backup_schedule != "never"):
            return
        if not self.engine.is_initialised(target):
            return
        self._backup(target, reason, _quiet)

    # ----------------------------------------------------------------- mail catcher
    def start_mail_catcher(self) -> None:
        settings = self.config().platform.mail_catcher
        self.mail = MailStore(self.engine.config.data_dir / "mail", keep=settings.keep)
        self._catcher = MailCatcher(self.mail, self.mail_secret(), settings.listen, settings.port)
        self._catcher.start()

    def stop_mail_catcher(self) -> None:
        if self._catcher is not None:
            self._catcher.stop()
            self._catcher = None

    # ---------------------------------------------------------------------- schedules
    def run_schedules(self, now: datetime | None = None, wait: bool = False) -> list[str]:
        """Start the backups, retention runs and restore tests that are due; return them.

        Each runs in a small pool (at most two at once), never in the reconcile loop, and one
        environment never has the same task twice in flight.
        """
        now = now or self.clock()
        current = self.engine.current
        if current is None or self.engine.last_good is None:
            return []
        started: list[str] = []
        futures = []
        restore_schedule = self.config().platform.backups.restore_test
        for key, want in sorted(current.environments.items()):
            status = self.engine.status.get(str(key))
            last = _parse_time(status.last_backup) if status else None
            if due(want.settings.backup_schedule, last, now) and self.engine.is_initialised(want):
                futures.append(self._submit("backup", key, partial(self._scheduled_backup, want)))
                started.append(f"backup {key}")
            if want.settings.backup_schedule == "never" or last is None:
                continue
            tested = _parse_time(status.last_restore_test) if status else None
            if due(restore_schedule, tested, now):
                futures.append(self._submit("restore-test", key, partial(self.restore_test, want)))
                started.append(f"restore test {key}")
        if wait:
            for future in futures:
                if future is not None:
                    future.result()
        return started

    def _submit(self, kind: str, key: EnvKey, fn: Callable[[], object]) -> Any:
        with self._running_lock:
            if (kind, key) in self._running:
                return None
            self._running.add((kind, key))

        def run() -> None:
            try:
                fn()
            except OdooOpsError as exc:
                log.error("%s of %s failed: %s", kind, key, exc.render())
            except Exception:
                log.exception("%s of %s crashed", kind, key)
            finally:
                with self._running_lock:
                    self._running.discard((kind, key))

        return self._scheduled.submit(run)

    def _scheduled_backup(self, want: DesiredEnvironment) -> None:
        with self.lifecycle.exclusive(want.key):
            self._backup(want, "scheduled", _quiet)
        self.prune(want)

    def prune(self, want: DesiredEnvironment, now: datetime | None = None) -> list[str]:
        doomed = self.lifecycle.prune(
            self.storage(), want.key, want.settings.backup_retention, now or self.clock()
        )
        if doomed:
            self.engine.status.note(
                str(want.key), "Retention", True, "Pruned", ", ".join(doomed)[:400]
            )
        return doomed

    def restore_test(self, want: DesiredEnvironment) -> dict[str, Any]:
        storage, key = self.storage(), self.backup_key()
        try:
            record = self.lifecycle.find_backup(storage, want.key, "latest")
            result = self.lifecycle.restore_test(storage, key, record, self.site(want))
        except OdooOpsError as exc:
            self.engine.metrics.restore_tests.labels("failed").inc()
            self.engine.status.note(str(want.key), "RestoreTest", False, exc.code, exc.message)
            raise
        self.engine.metrics.restore_tests.labels("passed").inc()
        self.engine.status.update(
            str(want.key),
            want.key.project,
            want.key.env,
            last_restore_test=self.clock().isoformat(timespec="seconds"),
        )
        self.engine.status.note(
            str(want.key), "RestoreTest", True, "Passed", f"backup {record.id} restored"
        )
        return result

    def mail_list(self, key: EnvKey, limit: int, query: str | None) -> list[dict[str, Any]]:
        return [m.to_dict() for m in self.mail.list(key, limit=limit, query=query)]

    def mail_get(self, key: EnvKey, mail_id: str) -> dict[str, Any]:
        return self.mail.get(key, mail_id).to_dict()


def _parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)

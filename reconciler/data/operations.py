"""Data operations on declared environments: what ``odooops db ...`` and the schedules run.

The lifecycle module knows how to copy, back up and restore a database it is pointed at; this
module knows *which* database, with which credentials, under which rules: it resolves an
environment of the current desired state to a ``Site``, applies the protection rules (no copy
onto a protected environment, a restore or import into one only with an explicit confirm and
after a safety backup), takes the automatic backups before production updates and destructive
changes, and runs the per-tier schedules (backups, retention, restore tests).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from reconciler.core import golden as goldens
from reconciler.core.errors import OdooOpsError
from reconciler.core.faults import boundary
from reconciler.core.model import (
    HOST_GATEWAY,
    MAIL_CATCHER_HOST,
    Desired,
    DesiredEnvironment,
    EnvKey,
    SecretRef,
    StateConfig,
    Tier,
)
from reconciler.core.modules import ModuleSnapshot
from reconciler.data.backup.crypto import BackupKey
from reconciler.data.backup.errors import BackupError
from reconciler.data.backup.storage import BackupStorage, open_storage
from reconciler.data.credentials import AdminPasswords
from reconciler.data.database import copy as dbcopy
from reconciler.data.database import masking, modules, neutralize
from reconciler.data.database.copy import TEMPLATE_BYTES_PER_SECOND
from reconciler.data.database.endpoint import Endpoint
from reconciler.data.golden import KIND as GOLDEN
from reconciler.data.golden import GoldenCopies, GoldenJournal
from reconciler.data.lifecycle import (
    BackupRecord,
    Lifecycle,
    ProgressFn,
    Sanitising,
    Site,
    check_key,
)
from reconciler.data.mailcatcher import MailCatcher, MailStore, credentials_for, tls_context
from reconciler.data.moves import KIND as MOVE
from reconciler.data.moves import JournalEntryLike, Keeping, Moves, Recorded
from reconciler.drivers.docker import DockerDriver, database_reach
from reconciler.drivers.postgres import database_note
from reconciler.drivers.secrets import SecretStore

log = logging.getLogger("odooops.operations")


def _quiet(_phase: str, _done: int, _total: int) -> None:
    return None


class DataHost(Protocol):
    """What data operations need of the engine that runs them.

    Handed in, never imported: the engine sits above the data plane, so the data plane sees it
    only through these few methods.
    """

    @property
    def instance(self) -> str: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def docker(self) -> DockerDriver: ...

    @property
    def secrets(self) -> SecretStore: ...

    def desired(self) -> Desired | None:
        """What the last reconcile resolved (None before the first)."""
        ...

    def state(self) -> StateConfig | None:
        """The last valid state commit."""
        ...

    def password(self, key: EnvKey) -> str: ...

    def is_initialised(self, want: DesiredEnvironment) -> bool: ...

    def database_revision(self, key: EnvKey) -> str:
        """The revision the environment's database was last initialised or updated to."""
        ...

    def changed(self, key: EnvKey) -> None:
        """Data of ``key`` changed outside a reconcile: reconcile it soon."""
        ...

    def note(self, key: EnvKey, kind: str, ok: bool, reason: str, message: str = "") -> None:
        """An event on the environment (a backup, a copy, a restore)."""
        ...

    def backed_up(self, key: EnvKey, finished: str, backup_id: str) -> None: ...

    def restore_tested(self, key: EnvKey, when: str) -> None: ...

    def count(self, metric: str, result: str) -> None:
        """A counter: ``backups`` (good, failed) or ``restore_tests`` (passed, failed)."""
        ...

    def journal(self) -> GoldenJournal:
        """Where data moves are journalled and golden copies recorded (the daemon's ledger)."""
        ...

    def database_replaced(
        self,
        key: EnvKey,
        initialised: bool,
        revision: str = "",
        modules: Mapping[str, Any] | None = None,
    ) -> None:
        """A move swapped a new database in: the daemon records it as its own (with the
        revision and module record of the new data, when the move knows them)."""
        ...

    def journal_entries(self, key: EnvKey | None) -> Sequence[JournalEntryLike]:
        """Open moves (of one environment, or all)."""
        ...


def _iso(at: datetime) -> str:
    """A UTC time as kept data's ``until`` (ISO, seconds: compared as text)."""
    return at.astimezone(UTC).isoformat(timespec="seconds")


# How long a protected export waits for another operation on its environment to end.
EXPORT_WAIT_SECONDS = 30.0
# How long a data operation waits for the Odoo it started again to answer its health check.
RESTART_WAIT = 180.0
# `odoo neutralize --stdout` only reads the module table and the addons' files.
NEUTRALIZE_TIMEOUT = 300.0
NEUTRALIZE_SQL_CACHED = 64  # outputs of it kept (a few KB each), oldest dropped first
# The module states whose data/neutralize.sql Odoo's `neutralize` runs (its own query).
_NEUTRALIZED_STATES = ("installed", "to upgrade", "to remove")
# How long marking (or unmarking) kept data for a data rollback waits for a run or another
# operation on the environment; then it answers operation_busy (retry it).
MARK_WAIT_SECONDS = 30.0
# How long a rotation of the administrator's password waits for one (a pass, a backup).
ROTATION_WAIT_SECONDS = 30.0


class DataOps:
    """Resolves environments and runs data operations for one engine."""

    def __init__(self, host: DataHost, clock: Callable[[], datetime] | None = None) -> None:
        self.host = host
        self.clock = clock or (lambda: datetime.now(UTC))
        self.moves = Moves(
            host.docker,
            host.journal,
            host.database_replaced,
            lambda key: database_note(host.instance, key),
        )
        self.lifecycle = Lifecycle(host.docker, self.moves, self.clock)
        self.golden = GoldenCopies(host.docker, host.journal, self.clock)
        self.mail = MailStore(host.data_dir / "mail")
        self._catcher: MailCatcher | None = None
        self._template_rate = TEMPLATE_BYTES_PER_SECOND
        # odoo neutralize --stdout, by (image, base image, installed modules): see its use.
        self._neutralize_sql: dict[tuple[str, str, tuple[str, ...]], str] = {}
        self.export_wait = EXPORT_WAIT_SECONDS

    def close(self) -> None:
        self.stop_mail_catcher()

    @property
    def admins(self) -> AdminPasswords:
        """The environments' Odoo administrator passwords, in the engine's secret store."""
        return AdminPasswords(self.host.secrets)

    # --------------------------------------------------------------------- resolution
    def config(self) -> StateConfig:
        state = self.host.state()
        if state is None:
            raise OdooOpsError(
                "no valid state commit loaded",
                code="no_state",
                remediation="odooops status (the daemon reports why)",
            )
        return state

    def environment(self, key: EnvKey) -> DesiredEnvironment:
        """The environment as the last reconcile pass resolved it."""
        current = self.host.desired()
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
        """The environment's database reached two ways: as the admin, which only creates,
        drops and renames databases (on a dedicated server that is the environment's own
        role, its superuser), and as the environment's role, for everything that touches
        the data. Helpers and database tools run in the platform's image, never the
        project's."""
        key = want.key
        password = self.host.password(key)
        if want.server is not None:
            endpoint = Endpoint.of_server(want.server, key.database, self.host.secrets)
        else:
            address = self.host.docker.container_address(key.db_container, key.network)
            endpoint = Endpoint(
                address,
                5432,
                key.role,
                key.database,
                password,
                f"dedicated {key}",
                catalog_only=True,
            )
        return Site(
            key=key,
            endpoint=endpoint,
            login=endpoint.as_login(key.role, password),
            reach=database_reach(key, want.server),
            volume=key.filestore_volume,
            image=want.dev_db_image,
            odoo_image=want.project.image,
            tier=want.spec.tier,
            protected=want.spec.protected,
            instance=self.host.instance,
            revision=want.revision,
            state_commit=want.state_commit,
            admin_password=self.admins.password(key),
        )

    def mail_secret(self) -> bytes:
        return self.host.secrets.get_or_create("mail/catcher", 48).encode()

    def mail_target(self, key: EnvKey) -> neutralize.MailTarget:
        creds = credentials_for(self.mail_secret(), key)
        port = self.config().platform.mail_catcher.port
        return neutralize.MailTarget(MAIL_CATCHER_HOST, port, creds.user, creds.password)

    def sanitising(self, want: DesiredEnvironment, mask: bool | None = None) -> Sanitising | None:
        """Non-production data is always neutralised (with the scripts of the environment's
        own image); masked as the environment says."""
        if want.spec.tier is Tier.PRODUCTION:
            return None
        rules, salt = self._masking()
        return Sanitising(
            mail=self.mail_target(want.key),
            mask=want.spec.mask if mask is None else mask,
            rules=rules,
            salt=salt,
            odoo_sql=lambda database: self.odoo_neutralize_sql(want, database),
        )

    def _masking(self) -> tuple[masking.MaskingRules, str]:
        """masking.yaml's rules and the salt masked values are derived with."""
        config = self.config()
        rules = masking.load_rules(config.masking)
        salt_ref = SecretRef.parse((config.masking or {}).get("salt"))
        secrets = self.host.secrets
        salt = secrets.resolve(salt_ref) if salt_ref else secrets.get_or_create("masking/salt")
        return rules, salt

    def odoo_neutralize_sql(self, want: DesiredEnvironment, database: str) -> str:
        """The SQL ``odoo neutralize -d DATABASE --stdout`` prints in a one-off container of
        the environment's own image: the ``data/neutralize.sql`` of every installed module,
        custom addons included, which no fixed list in the platform can know.

        The environment's image, not the project's base: a copy made before the image of its
        revision exists waits for it (the engine builds it before it initialises anything).
        """
        # The output is the data/neutralize.sql of each installed module, read from the
        # image: the same for the same image and module set, so it is asked once for them.
        states = self.module_snapshot(want, database).states
        installed = tuple(sorted(n for n, st in states.items() if st in _NEUTRALIZED_STATES))
        cached = (want.image, want.base_image_id, installed)
        if cached in self._neutralize_sql:
            return self._neutralize_sql[cached]
        docker = self.host.docker
        if not docker.has_image(want.image):
            raise OdooOpsError(
                f"{want.key}: the image of revision {want.revision[:12]} is not built yet, and "
                "its modules' neutralisation scripts are read from it",
                code="image_not_built",
                retryable=True,
                remediation=f"odooops status {want.key}  (the daemon builds it; then retry the "
                "copy)",
            )
        run = docker.run_once(
            want,
            self.host.password(want.key),
            ["-d", database, "--stdout"],
            NEUTRALIZE_TIMEOUT,
            command="neutralize",
            stdout=True,
        )
        if run.code != 0:
            raise OdooOpsError(
                f"odoo neutralize -d {database} --stdout exited {run.code} in the image of "
                f"{want.key}; nothing was changed:\n{run.logs[-1500:]}",
                code="neutralize_failed",
                remediation=f"odooops logs {want.key}; fix the module named in the log and "
                "push, then: odooops reconcile",
            )
        if len(self._neutralize_sql) >= NEUTRALIZE_SQL_CACHED:
            self._neutralize_sql.pop(next(iter(self._neutralize_sql)))
        self._neutralize_sql[cached] = run.stdout
        return run.stdout

    def module_snapshot(
        self, want: DesiredEnvironment, database: str | None = None
    ) -> ModuleSnapshot:
        """The module table after an ``odoo -i``/``-u``, read as the environment's role (of
        ``database``, a copy being updated, instead of the environment's own)."""
        login = self.site(want).login
        with (login.with_db(database) if database else login).connect() as conn:
            return modules.snapshot(conn)

    def update_on_copy(
        self,
        want: DesiredEnvironment,
        update: Callable[[str], object],
        previous: Recorded = None,
        result: Recorded = None,
    ) -> dict[str, Any]:
        """Run ``update`` on a copy of the environment's data; swap it in when it returns.
        The data it replaces is kept for ``keep_previous``, labelled with ``previous`` (the
        revision and module record it was at); the swap records ``result`` for the new."""
        # Kept even without keep_previous, until now: the schedules drop it after the run,
        # outside the maintenance window (dropping a large database takes a while).
        kept_for = want.settings.keep_previous
        until = _iso(self.clock() + (kept_for or timedelta(0)))
        report = self.lifecycle.update_on_copy(
            self.site(want), update, Keeping(until, previous, result)
        )
        previous_revision = previous[0] if previous else ""
        if kept_for is not None:
            report["kept_until"] = until
            self.host.note(
                want.key,
                "PreviousData",
                True,
                "Kept",
                f"the data as it was at revision {previous_revision[:12] or 'unknown'} is kept "
                f"until {until}",
            )
        return report

    # ------------------------------------------------------------------ data rollback
    def request_rollback(self, key: EnvKey, confirm: bool = False) -> dict[str, Any]:
        """Mark the environment's kept data to be put back (``odooops db rollback``); the
        caller then pins the environment to the kept data's revision (a commit), and the
        rollback runs when that revision is deployed (``roll_back_data``), so the code that
        serves the data is always the code it was at. Returns the kept data's record."""
        target = self.environment(key)
        self._confirmed(target, confirm, f"odooops db rollback {key} --confirm")
        # Under the operation lock: a run replacing the kept data (an update) or the schedules
        # removing it must not drop the mark between this read and the write.
        with self.lifecycle.exclusive(key, wait=MARK_WAIT_SECONDS):
            return self._mark_rollback(key)

    def _mark_rollback(self, key: EnvKey) -> dict[str, Any]:
        journal = self.host.journal()
        kept = journal.kept(key)
        now = _iso(self.clock())
        if kept is None or str(kept.get("until", "")) <= now or not kept.get("revision"):
            raise OdooOpsError(
                f"{key} has no kept data to roll back to: the data an update on a copy replaces "
                "is kept only for keep_previous (production: 24h), and only when the update "
                "ran behind the proxy",
                code="nothing_kept",
                remediation=f"odooops db backups {key}  (then: odooops db restore {key} "
                "--backup=ID, after pinning the code to the backup's revision)",
            )
        journal.put_kept(key, {**kept, "rollback": True})
        revision = str(kept["revision"])
        self.host.note(
            key,
            "DataRollback",
            True,
            "Requested",
            f"the data as it was at revision {revision[:12]} is put back when that revision "
            "is deployed",
        )
        return dict(kept)

    def cancel_rollback(self, key: EnvKey) -> None:
        """The pin that goes with a requested rollback could not be committed: nothing
        should happen, so the mark is taken back."""
        with self.lifecycle.exclusive(key, wait=MARK_WAIT_SECONDS):
            journal = self.host.journal()
            kept = journal.kept(key)
            if kept is not None and kept.get("rollback"):
                journal.put_kept(key, {k: v for k, v in kept.items() if k != "rollback"})

    def rollback_requested(self, key: EnvKey, revision: str) -> bool:
        """Whether a data rollback waits for ``revision`` (the kept data's) to be deployed."""
        kept = self.host.journal().kept(key)
        return bool(kept and kept.get("rollback") and kept.get("revision") == revision)

    def roll_back_data(
        self, want: DesiredEnvironment, current: Recorded, fallback: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Put the kept data back (Odoo stopped: the engine's step); the swap records its
        revision and module record (``fallback`` when the kept data has none). The data it
        replaces, at ``current`` (revision, module record), is kept in turn, for
        ``keep_previous`` or as long as the data put back would have been: a rollback can
        itself be rolled back."""
        kept = self.host.journal().kept(want.key)
        if kept is None:
            raise OdooOpsError(
                f"{want.key}: the kept data is gone (its time was up)",
                code="nothing_kept",
                remediation=f"odooops db backups {want.key}",
            )
        kept_for = want.settings.keep_previous
        until = str(kept.get("until", "")) if kept_for is None else _iso(self.clock() + kept_for)
        if want.spec.protected or want.spec.tier is Tier.PRODUCTION:
            self._backup(want, f"before data rollback to {str(kept['revision'])[:12]}", _quiet)
        back = (str(kept["revision"]), kept.get("modules") or fallback)
        report = self.lifecycle.restore_kept(self.site(want), kept, Keeping(until, current, back))
        self.host.note(
            want.key,
            "DataRollback",
            True,
            "Done",
            f"the data as it was at revision {str(kept['revision'])[:12]} is back; the data it "
            f"replaced is kept until {until}",
        )
        return report

    # ------------------------------------------------- rollback from a pre-update backup
    def request_restore(
        self, key: EnvKey, revision: str, backup_id: str, data_revision: str
    ) -> dict[str, Any]:
        """Mark the environment's data to be restored from ``backup_id`` (taken before an
        update moved it away from ``revision``) when ``revision`` is deployed again
        (``odooops rollback --with-data``); the caller then pins the environment to it (a
        commit). The mark is in the ledger, so a daemon killed anywhere between the commit
        and the restore still restores, once: ``restore_for_rollback``. It holds only while
        the data is at ``data_revision``, the data the person asking saw: data updated since
        (the pin's change request waited) is never replaced by it. Returns the mark."""
        self.environment(key)
        record = self.lifecycle.find_backup(self.storage(), key, backup_id)
        check_key(record, self.backup_key(), key)
        mark = {
            "revision": revision,
            "backup": record.id,
            "data_revision": data_revision,
            "requested": _iso(self.clock()),
        }
        with self.lifecycle.exclusive(key, wait=MARK_WAIT_SECONDS):
            self.host.journal().put_restore_mark(key, mark)
        self.host.note(
            key,
            "DataRollback",
            True,
            "Requested",
            f"backup {record.id} (the data as revision {revision[:12]} left it) is restored "
            "when that revision is deployed; the current data is backed up first",
        )
        return mark

    def cancel_restore(self, key: EnvKey) -> None:
        """The pin that goes with a requested restore could not be committed: no restore."""
        with self.lifecycle.exclusive(key, wait=MARK_WAIT_SECONDS):
            self.host.journal().forget_restore_mark(key)

    def restore_requested(self, key: EnvKey, revision: str, data_revision: str) -> bool:
        """Whether a rollback's restore waits for ``revision`` to be deployed on the data as
        it was when it was asked for (``data_revision`` now). A mark the data moved on from
        is dropped: restoring it would lose what the newer update and its users wrote."""
        journal = self.host.journal()
        mark = journal.restore_mark(key)
        if not mark or mark.get("revision") != revision:
            return False
        asked_on = str(mark.get("data_revision", ""))
        if data_revision not in (asked_on, revision) and asked_on:
            journal.forget_restore_mark(key)
            self.host.note(
                key,
                "DataRollback",
                False,
                "Dropped",
                f"the restore of backup {mark.get('backup')} was asked on the data of revision "
                f"{asked_on[:12]}, and the data is at {data_revision[:12]} now: not restored",
            )
            return False
        return True

    def restore_for_rollback(
        self, want: DesiredEnvironment, data_revision: str, modules_at: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Odoo stopped (the engine's step): back up the current data, then restore the
        marked backup, whose swap records the pinned revision and its module record
        (``modules_at``) in the ledger. Each boundary is safe to die at: the safety backup
        is recorded in the mark once taken (not taken twice), the restore is a journalled
        move (finished or undone at the next start), and data the ledger already records at
        the pinned revision (``data_revision``: the swap happened) is not restored again."""
        journal, key = self.host.journal(), want.key
        mark = journal.restore_mark(key)
        if mark is None or mark.get("revision") != want.revision:
            raise OdooOpsError(
                f"{key}: no restore is requested for revision {want.revision[:12]}",
                code="nothing_kept",
                remediation=f"odooops db backups {key}",
            )
        if data_revision == want.revision:
            journal.forget_restore_mark(key)
            return {"backup": mark["backup"], "restored": "already"}
        storage, backup_key = self.storage(), self.backup_key()
        record = self.lifecycle.find_backup(storage, key, str(mark["backup"]))
        check_key(record, backup_key, key)
        site = self.site(want)
        self.lifecycle.check_restore(record, site)
        if not mark.get("safety"):
            safety = self._backup(
                want,
                f"before rollback to {want.revision[:12]}",
                _quiet,
                data_revision=data_revision,
            )
            mark = {**mark, "safety": safety.id}
            journal.put_restore_mark(key, mark)
        boundary("steps", "rollback: current data backed up")
        report = self.lifecycle.restore(
            storage,
            backup_key,
            record,
            key,
            site,
            self.sanitising(want),
            keeping=Keeping("", None, (want.revision, modules_at)),
        )
        boundary("steps", "rollback: backup restored")
        journal.forget_restore_mark(key)
        self.host.note(
            key,
            "DataRollback",
            True,
            "Done",
            f"backup {record.id} restored: the data as revision {want.revision[:12]} left it; "
            f"the data it replaced is in backup {mark['safety']}",
        )
        return {**report, "safety_backup": mark["safety"]}

    def kept_expired(self, key: EnvKey, now: datetime) -> bool:
        """Whether the environment has kept data to remove: superseded by a newer update, or
        past its ``keep_previous``."""
        kept = self.host.journal().kept(key)
        if kept is None:
            return False
        return bool(kept.get("superseded")) or str(kept.get("until", "")) <= _iso(now)

    def expire_kept(self, want: DesiredEnvironment) -> list[str]:
        """Remove the environment's superseded kept data, and its kept data once its
        ``keep_previous`` time is up (not while another operation or a run moves its data)."""
        site = self.site(want)
        with self.lifecycle.exclusive(want.key):
            dropped = self.moves.expire_kept(
                want.key, site.endpoint, site.image, _iso(self.clock())
            )
        if dropped:
            self.host.note(want.key, "PreviousData", False, "Removed", ", ".join(dropped))
        return dropped

    def storage(self) -> BackupStorage:
        settings = self.config().platform.backups
        url = settings.storage
        if url is None:  # the default lives in the data directory, made on first use
            default = self.host.data_dir / "backups"
            default.mkdir(mode=0o700, parents=True, exist_ok=True)
            url = default.resolve().as_uri()
        s3 = settings.s3
        return open_storage(
            url,
            endpoint_url=s3.endpoint,
            region=s3.region,
            access_key=self.host.secrets.resolve(s3.access_key) if s3.access_key else None,
            secret_key=self.host.secrets.resolve(s3.secret_key) if s3.secret_key else None,
        )

    def backup_key(self) -> BackupKey:
        ref = self.config().platform.backups.encryption_key
        if ref is None:
            raise BackupError(
                "no backup encryption key is configured",
                code="backup_key_missing",
                remediation="odooops init-key /etc/odooops/secrets/backup.key, then set "
                "backups.encryption_key: {file: /etc/odooops/secrets/backup.key} in odooops.yaml "
                "(keep a copy of the key elsewhere: backups cannot be read without it)",
            )
        return BackupKey.from_ref(ref, self.host.secrets.resolve)

    # ------------------------------------------------------------- engine's hooks
    @contextlib.contextmanager
    def scratch_database(self, want: DesiredEnvironment) -> Iterator[str]:
        """An empty database beside the environment's, owned by its role, for a one-off run
        (the tests of a gate): journalled, so a crash never leaves one behind, and dropped
        at the end."""
        site = self.site(want)
        with self.moves.temporary(
            site.key, site.endpoint, site.image, volume=site.volume, owner=site.owner
        ) as move:
            dbcopy.create_empty(site.endpoint.with_db(move.scratch), site.owner)
            yield move.scratch

    def copy_for_init(self, want: DesiredEnvironment) -> dict[str, Any]:
        """A new environment declared ``db.source: <env>`` starts as a sanitised copy."""
        source_key = EnvKey(want.key.project, want.spec.db_source)
        source = self.environment(source_key)
        if not self.host.is_initialised(source):
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
        with site.login.connect() as conn:
            if neutralize.is_neutralized(conn):
                return
        log.info("%s: neutralising before Odoo starts", want.key)
        odoo_sql = self.odoo_neutralize_sql(want, want.key.database)
        with site.login.connect() as conn:
            neutralize.neutralize(conn, self.mail_target(want.key), odoo_sql=odoo_sql)
        self.host.note(want.key, "Neutralized", True, "BeforeStart")

    def recover(self, key: EnvKey | None = None) -> list[str]:
        """Finish or roll back the open moves of one environment (or of all, at start-up).

        Refreshes of golden copies only at start-up: an environment's run must not take a
        refresh going on beside it in this daemon for a crashed one."""
        entries = self.host.journal_entries(key)
        done = [self.recover_entry(e) for e in entries if e.kind == MOVE]
        if key is None:
            done.extend(self._recover_golden(e) for e in entries if e.kind == GOLDEN)
        return done

    def _recover_golden(self, entry: JournalEntryLike) -> str:
        doc = entry.doc
        endpoint = self._endpoint_of(entry.key, str(doc.get("server", "")), str(doc["database"]))
        outcome = self.golden.recover(entry.id, doc, endpoint, self._helper_image(entry.key))
        self.host.note(entry.key, "Recovered", True, "golden-refresh", outcome)
        return outcome

    def recover_entry(self, entry: JournalEntryLike) -> str:
        doc = entry.doc
        endpoint = self._endpoint_of(entry.key, str(doc.get("server", "")), str(doc["live"]))
        outcome = self.moves.recover(
            entry.key, entry.id, doc, endpoint, self._helper_image(entry.key)
        )
        self.host.note(entry.key, "Recovered", True, str(doc.get("op", "move")), outcome)
        return outcome

    def _endpoint_of(self, key: EnvKey, server: str, database: str) -> Endpoint:
        """The admin endpoint of the server holding ``key``'s database, from the journal."""
        if server == "dedicated":
            address = self.host.docker.container_address(key.db_container, key.network)
            return Endpoint(
                address,
                5432,
                key.role,
                database,
                self.host.password(key),
                f"dedicated {key}",
                catalog_only=True,
            )
        servers = self.config().platform.database_servers
        if server not in servers:
            raise OdooOpsError(
                f"an interrupted data move of {key} is on server {server!r}, which is no longer "
                "declared",
                code="move_server_missing",
                remediation=f"declare database_servers.{server} in odooops.yaml again",
            )
        return Endpoint.of_server(servers[server], database, self.host.secrets)

    def _helper_image(self, key: EnvKey) -> str:
        """The platform's image that runs filestore helpers (never a project's)."""
        return self.config().platform.dev_db_image

    def backup_before(
        self, want: DesiredEnvironment, reason: str, data_revision: str = ""
    ) -> BackupRecord:
        """The automatic backup before a production update or a destructive change;
        ``data_revision``: the revision the data is still at (an update's previous one), the
        revision a rollback with data finds the backup by."""
        return self._backup(want, reason, _quiet, data_revision)

    def prepare_admin_login(self, want: DesiredEnvironment) -> None:
        """Hash the new database's administrator password while its ``odoo -i`` runs."""
        self.admins.prepare(want.key)

    def set_admin_login(self, want: DesiredEnvironment) -> None:
        """A new database, just initialised, gets its own administrator password (a copy got
        it with its data: ``Lifecycle._prepare``)."""
        admin = self.admins.set(want.key, self.site(want).login)
        self.host.note(want.key, "AdminLogin", True, "Set", f"password of {admin.login} set")

    # ------------------------------------------------------- the administrator's login
    def admin_credentials(self, key: EnvKey) -> dict[str, Any]:
        """The administrator's login and password (``verified``: the database holds it)."""
        want = self._initialised(key)
        return self.admins.show(key, self.site(want).login).to_dict()

    def rotate_admin_password(self, key: EnvKey) -> dict[str, Any]:
        """A new administrator password, under the operation lock: a copy or a restore in
        flight wrote the password in force into its new data, which a rotation meanwhile
        would find outdated once it is swapped in."""
        want = self._initialised(key)
        with self.lifecycle.exclusive(key, wait=ROTATION_WAIT_SECONDS):
            credentials = self.admins.rotate(key, self.site(want).login)
        self.host.note(key, "AdminLogin", True, "Rotated", f"new password of {credentials.login}")
        return credentials.to_dict()

    def _initialised(self, key: EnvKey) -> DesiredEnvironment:
        want = self.environment(key)
        if not self.host.is_initialised(want):
            raise OdooOpsError(
                f"the database of {key} is not initialised yet: it has no administrator "
                "password to show or change",
                code="database_not_initialised",
                remediation=f"odooops status {key}  (it is set when the database is made)",
            )
        return want

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
        with self.lifecycle.exclusive(target_key), self._serving_again(target_key):
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
        config = self.config()
        copy = config.platform.copy
        sanitising = self.sanitising(target)
        if sanitising is not None and goldens.through_golden(
            config.policies, source.spec.tier, target.spec.tier, sanitising.mask
        ):
            golden = self._clone_golden(source, target, progress, initialised)
            if trigger:
                self.host.changed(target.key)
            return {"from": str(source.key), "to": str(target.key), **golden}
        result = self.lifecycle.clone(
            self.site(source),
            self.site(target),
            sanitising,
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
        self.host.note(target.key, "Copied", True, result["strategy"], f"from {source.key}")
        if trigger:
            self.host.changed(target.key)
        return {"from": str(source.key), "to": str(target.key), **result}

    def _clone_golden(
        self,
        source: DesiredEnvironment,
        target: DesiredEnvironment,
        progress: ProgressFn,
        initialised: bool,
    ) -> dict[str, Any]:
        """A masked copy of production: a template copy of its golden copy, made first when
        there is none yet (that refresh is reported apart, under ``golden_refresh``)."""
        site = self.site(source)
        out: dict[str, Any] = {}
        if self.golden.current(site) is None:
            first = self._refresh_golden(
                source, f"the first golden copy, for {target.key}", progress, when_missing=True
            )
            if first is not None:
                out["golden_refresh"] = first
        with self.golden.using(source.key):
            golden = self.golden.current(site)
            if golden is None:
                raise OdooOpsError(
                    f"the golden copy of {source.key} is gone (dropped while {target.key} "
                    "waited for it)",
                    code="golden_missing",
                    retryable=True,
                    remediation=f"odooops db golden {source.key} --refresh  (the copy is "
                    "retried by itself)",
                )
            result = self.lifecycle.clone_golden(
                golden,
                self.site(target),
                self.mail_target(target.key),
                initialised=initialised,
                jobs=self.config().platform.copy.jobs,
                progress=progress,
            )
        self.host.note(
            target.key,
            "Copied",
            True,
            f"golden-{result['strategy']}",
            f"from the golden copy of {source.key} refreshed at {golden.refreshed_at} "
            f"(revision {golden.revision[:12]}); not masked again",
        )
        return {**result, **out}

    # ------------------------------------------------------------------ golden copies
    def golden_sanitising(self, source: DesiredEnvironment) -> Sanitising:
        """A golden copy is neutralised with production's own scripts, with no catcher (each
        copy of it gets its own) and masked."""
        rules, salt = self._masking()
        return Sanitising(
            mail=None,
            mask=True,
            rules=rules,
            salt=salt,
            odoo_sql=lambda database: self.odoo_neutralize_sql(source, database),
        )

    def _production(self, key: EnvKey) -> DesiredEnvironment:
        want = self.environment(key)
        if want.spec.tier is not Tier.PRODUCTION:
            raise OdooOpsError(
                f"{key} is a {want.spec.tier.value} environment: only production environments "
                "have a golden copy",
                code="golden_not_production",
                remediation="odooops env list  (and name the production environment)",
            )
        return want

    def refresh_golden(
        self, key: EnvKey, reason: str = "on demand", progress: ProgressFn = _quiet
    ) -> dict[str, Any]:
        """Make the golden copy of production environment ``key`` again (``odooops db golden
        ENV --refresh``, the schedules): in the background, production keeps serving."""
        report = self._refresh_golden(self._production(key), reason, progress)
        assert report is not None  # only a refresh asked for when missing may do nothing
        return report

    def _refresh_golden(
        self,
        source: DesiredEnvironment,
        reason: str,
        progress: ProgressFn,
        when_missing: bool = False,
    ) -> dict[str, Any] | None:
        if not self.host.is_initialised(source):
            raise OdooOpsError(
                f"the database of {source.key} is not initialised yet: there is nothing to make "
                "a golden copy of",
                code="copy_source_not_ready",
                retryable=True,
                remediation=f"odooops status {source.key}  (the copy is retried by itself)",
            )
        # The revision its data is at (a golden copy made while production updates is at
        # the old one, and refreshed again once the update is recorded).
        site = replace(self.site(source), revision=self.host.database_revision(source.key))
        try:
            record = self.golden.refresh(
                site,
                self.golden_sanitising(source),
                reason=reason,
                jobs=self.config().platform.copy.jobs,
                progress=progress,
                when_missing=when_missing,
            )
        except OdooOpsError as exc:
            self.host.note(source.key, "GoldenCopy", False, exc.code, exc.message)
            raise
        if record is None:
            return None
        self.host.note(
            source.key,
            "GoldenCopy",
            True,
            "Refreshed",
            f"{reason}: {record['masked_rows']} rows masked in {record['masking_seconds']} s, "
            f"{record['seconds']} s in all",
        )
        return {"source": str(source.key), **record}

    def golden_status(self, key: EnvKey) -> dict[str, Any]:
        """The golden copy of ``key``: whether one is kept and why, its age, size, revision."""
        source = self._production(key)
        config = self.config()
        desired = self.host.desired()
        why = goldens.wanted(desired, config.policies).get(key, ()) if desired else ()
        doc = self.golden.describe(self.site(source))
        state = goldens.state_of(doc)
        age = None if state is None else (self.clock() - state.refreshed_at).total_seconds()
        policy = config.policies.golden
        return {
            "source": str(key),
            "kept": bool(why),
            "why": list(why),
            "refresh": policy.refresh if policy is not None else None,
            "age_seconds": None if age is None else int(age),
            **doc,
        }

    def golden_state(self, key: EnvKey) -> tuple[goldens.GoldenState | None, str]:
        """The golden copy of ``key`` at its last refresh (None: none yet), and the revision
        production's database is at now: what decides whether a refresh is due."""
        record = goldens.state_of(self.host.journal().golden(key))
        return record, self.host.database_revision(key)

    def golden_unwanted(self) -> list[EnvKey]:
        """Golden copies whose production environment is still declared but that nothing
        copies any more (or the policy went): theirs to drop. An undeclared one is dropped
        with production's database, never on a guess."""
        desired, state = self.host.desired(), self.host.state()
        if desired is None or state is None:
            return []
        wanted = goldens.wanted(desired, state.policies)
        return [
            key
            for key in self.host.journal().goldens()
            if key in desired.environments and key not in wanted and key not in desired.held
        ]

    def drop_golden(self, key: EnvKey) -> bool:
        site = self.site(self.environment(key))
        dropped = self.golden.drop(key, site.endpoint, site.image, site.volume)
        if dropped:
            self.host.note(key, "GoldenCopy", True, "Dropped", "nothing copies it any more")
        return dropped

    def backup(self, key: EnvKey, reason: str, progress: ProgressFn = _quiet) -> dict[str, Any]:
        want = self.environment(key)
        with self.lifecycle.exclusive(key):
            record = self._backup(want, reason, progress)
        return dict(record.doc)

    def _backup(
        self,
        want: DesiredEnvironment,
        reason: str,
        progress: ProgressFn,
        data_revision: str = "",
    ) -> BackupRecord:
        key, storage = self.backup_key(), self.storage()
        level = self.config().platform.backups.compression_level
        try:
            record = self.lifecycle.backup(
                self.site(want),
                storage,
                key,
                reason=reason,
                level=level,
                progress=progress,
                data_revision=data_revision,
            )
        except OdooOpsError as exc:
            self.host.count("backups", "failed")
            self.host.note(want.key, "Backup", False, exc.code, exc.message)
            raise
        self.host.count("backups", "good")
        self.host.backed_up(want.key, str(record.doc.get("finished_at", "")), record.id)
        self.host.note(want.key, "Backup", True, "Good", f"{record.id} ({reason})")
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
        self.lifecycle.check_restore(record, self.site(target))
        with self.lifecycle.exclusive(target_key), self._serving_again(target_key):
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
        self.host.note(target_key, "Restored", True, record.id, f"from {source_key}")
        self.host.changed(target.key)
        return result

    def export(self, key: EnvKey, out: BinaryIO) -> dict[str, Any]:
        """Odoo's zip of the environment. A protected environment's export is its real data,
        so it holds the operation lock (no restore, import or deployment swaps the database
        under pg_dump). It waits for the lock a little (a reconcile run after a copy, which
        restarts the source, holds it for seconds) and then refuses rather than holding a
        download open behind an hour-long restore."""
        want = self.environment(key)
        lock = (
            self.lifecycle.exclusive(key, wait=self.export_wait)
            if want.spec.protected
            else nullcontext()
        )
        with lock:
            stats = self.lifecycle.export_zip(self.site(want), out, want.project.odoo_version)
        return {"files": stats.files, "bytes": stats.bytes_in}

    def import_dump(
        self, key: EnvKey, path: Path, *, confirm: bool = False, progress: ProgressFn = _quiet
    ) -> dict[str, Any]:
        target = self.environment(key)
        self._confirmed(target, confirm, f"odooops db import {key.env} FILE --confirm")
        # A refused dump changes nothing, not even a backup.
        self.lifecycle.check_dump(path, self.site(target))
        with self.lifecycle.exclusive(key), self._serving_again(key):
            self._safety_backup(target, "before import")
            result = self.lifecycle.import_dump(
                path, self.site(target), self.sanitising(target), progress
            )
        self.host.note(key, "Imported", True, result["format"], path.name)
        self.host.changed(target.key)
        return result

    @contextlib.contextmanager
    def _serving_again(self, key: EnvKey) -> Iterator[None]:
        """A restore, import or copy stops Odoo for its swap; it starts it again itself when
        it ends (done or rolled back), instead of leaving the environment down until the
        next pass. Non-production data was neutralised before the swap, fail-closed."""
        docker = self.host.docker
        was_running = docker.running(key.odoo_container)
        try:
            yield
        finally:
            if was_running and docker.running(key.odoo_container) is False:
                try:
                    docker.start(key.odoo_container)
                    ok, detail = docker.wait_healthy(key.odoo_container, RESTART_WAIT)
                    if not ok:
                        log.warning("%s: Odoo started again but %s", key, detail)
                except OdooOpsError as exc:  # the engine's next run starts it or says why
                    log.warning("%s: starting Odoo again failed: %s", key, exc.message)

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
        if not self.host.is_initialised(target):
            return
        self._backup(target, reason, _quiet)

    # ----------------------------------------------------------------- mail catcher
    def start_mail_catcher(self) -> None:
        """Listen where environments reach the catcher (``host-gateway`` is the Docker bridge
        gateway's address) with STARTTLS on the daemon's own certificate."""
        settings = self.config().platform.mail_catcher
        self.mail = MailStore(self.host.data_dir / "mail", keep=settings.keep)
        hosts = tuple(
            self.host.docker.host_gateway() if host == HOST_GATEWAY else host
            for host in settings.listen
        )
        tls = tls_context(self.host.data_dir / "mail-tls")
        self._catcher = MailCatcher(self.mail, self.mail_secret(), tls, hosts, settings.port)
        self._catcher.start()

    def stop_mail_catcher(self) -> None:
        if self._catcher is not None:
            self._catcher.stop()
            self._catcher = None

    def scheduled_backup(self, want: DesiredEnvironment) -> None:
        """A backup on the tier's schedule, then the retention run."""
        with self.lifecycle.exclusive(want.key):
            self._backup(want, "scheduled", _quiet)
        self.prune(want)

    def prune(self, want: DesiredEnvironment, now: datetime | None = None) -> list[str]:
        doomed = self.lifecycle.prune(
            self.storage(), want.key, want.settings.backup_retention, now or self.clock()
        )
        if doomed:
            self.host.note(want.key, "Retention", True, "Pruned", ", ".join(doomed)[:400])
        return doomed

    def restore_test(self, want: DesiredEnvironment) -> dict[str, Any]:
        storage, key = self.storage(), self.backup_key()
        try:
            record = self.lifecycle.find_backup(storage, want.key, "latest")
            result = self.lifecycle.restore_test(storage, key, record, self.site(want))
        except OdooOpsError as exc:
            self.host.count("restore_tests", "failed")
            self.host.note(want.key, "RestoreTest", False, exc.code, exc.message)
            raise
        self.host.count("restore_tests", "passed")
        self.host.restore_tested(want.key, self.clock().isoformat(timespec="seconds"))
        self.host.note(want.key, "RestoreTest", True, "Passed", f"backup {record.id} restored")
        return result

    def mail_list(self, key: EnvKey, limit: int, query: str | None) -> list[dict[str, Any]]:
        return [m.to_dict() for m in self.mail.list(key, limit=limit, query=query)]

    def mail_get(self, key: EnvKey, mail_id: str) -> dict[str, Any]:
        return self.mail.get(key, mail_id).to_dict()

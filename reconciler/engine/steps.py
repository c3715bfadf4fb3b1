"""One environment's actions as ordered steps, each idempotent, each with a typed result.

A step is the unit of work the daemon may be killed in: every one checks before it acts (a
network that exists is not created again, a database the ledger records as initialised is not
initialised twice) and writes the ledger *before* the change it describes, so re-running any
step after a crash at any point converges instead of doubling or losing work (the Flux
source-controller shape: small steps, typed results, stop at the first error).

Destructive steps (dropping or recreating a database, removing a volume) pass one guard,
``Steps.guard``, inside apply and not only in the planner: it re-reads the ledger and the live
state at that moment, refuses anything protected, refuses what the ledger does not record as
the daemon's own, and takes a backup first where one is due.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from reconciler.core.errors import OdooOpsError, sanitize
from reconciler.core.faults import boundary
from reconciler.core.golden import is_golden
from reconciler.core.ingress import Maintenance
from reconciler.core.model import DatabaseServer, DesiredEnvironment, EnvKey, Tier
from reconciler.core.modules import (
    ModuleSnapshot,
    applied,
    explaining_lines,
    problems,
    update_plan,
)
from reconciler.core.planner import Action, Kind
from reconciler.core.sleep import Rest
from reconciler.core.testgate import TestReport, gate_key, parse, selector
from reconciler.data.moves import Recorded, kept_databases
from reconciler.drivers.protocols import DatabaseAdmin, Runtime, server_name
from reconciler.engine import images
from reconciler.engine.buildqueue import BuildQueue
from reconciler.engine.commitstatus import CommitStatuses
from reconciler.engine.ledger import DatabaseRecord, DbState, Ledger

log = logging.getLogger("odooops.steps")

INIT_TIMEOUT = 1800.0
# Where a test run's Odoo keeps its files: inside its one-off container, gone with it.
TEST_DATA_DIR = "/tmp/odooops-tests"
DB_READY_TIMEOUT = 120.0


class DeployFailed(OdooOpsError):
    code = "deploy_failed"
    retryable = True


class ModulesNotInstalled(DeployFailed):
    """``odoo -i``/``-u`` exited 0 and the database says a wanted module is not installed."""

    code = "modules_not_installed"
    retryable = False


class PartiallyUpdated(DeployFailed):
    """Odoo commits module by module: a failure part-way leaves the first ones updated."""

    code = "partially_updated"
    retryable = False


class OutOfMemory(DeployFailed):
    """The one-off container was killed by its memory limit (exit 137, OOMKilled)."""

    code = "out_of_memory"
    retryable = False


class TestsFailed(DeployFailed):
    """The tier's test gate failed (or ran no test, or past its timeout): nothing deployed."""

    code = "tests_failed"
    retryable = False

    def __init__(self, message: str, image: str) -> None:
        super().__init__(
            message,
            remediation=f"odooops builds list (the build of {image} holds the test report); "
            "fix the tests or the code and push a new commit",
        )


class Superseded(OdooOpsError):
    """A newer revision (or setting) was committed while this rollout waited for its new
    container: the wait ends, the new container goes, and the newer one is rolled out."""

    code = "superseded"
    retryable = True


class _Either(threading.Event):
    """Set when any of ``events`` is (only ``is_set`` is asked of a cancel event)."""

    def __init__(self, *events: threading.Event) -> None:
        super().__init__()
        self._events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self._events)


class MigrationPending(OdooOpsError):
    """A module update would show the maintenance page, which the tier does not allow."""

    code = "migration_pending"
    retryable = False


class Interrupted(OdooOpsError):
    """The daemon is stopping: the run ends after its current step, the next start resumes."""

    code = "interrupted"
    retryable = True


class DestructiveRefused(OdooOpsError):
    """The guard said no: what was planned would destroy data it may not destroy."""

    code = "destructive_refused"


class DatabaseNotOwned(OdooOpsError):
    code = "database_not_owned"


class ClaimedElsewhere(OdooOpsError):
    """Another daemon instance on the same server declares an environment of the same name."""

    code = "claimed_by_other_instance"


@dataclass(frozen=True)
class StepResult:
    """What one step did: ``done``, or ``skipped`` with why (the live check said it was done)."""

    kind: Kind
    target: str
    outcome: str
    detail: str = ""
    seconds: float = 0.0

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.kind.value} {self.target}: {self.outcome}{extra}"


class DataHooks(Protocol):
    """The data plane's part in a reconcile (``reconciler.data.operations.DataOps``)."""

    def ensure_neutralized(self, want: DesiredEnvironment) -> None:
        """Non-production data is neutralised before any Odoo starts on it."""
        ...

    def copy_for_init(self, want: DesiredEnvironment) -> object:
        """A new environment declared as a copy starts as a sanitised copy of its source."""
        ...

    def scratch_database(self, want: DesiredEnvironment) -> contextlib.AbstractContextManager[str]:
        """An empty database beside the environment's, dropped at the end (and after a
        crash): its name."""
        ...

    def backup_before(
        self, want: DesiredEnvironment, reason: str, data_revision: str = ""
    ) -> object:
        """The automatic backup before a production update (of the data at
        ``data_revision``, the revision being updated away from)."""
        ...

    def module_snapshot(
        self, want: DesiredEnvironment, database: str | None = None
    ) -> ModuleSnapshot:
        """What the module table says after a run, read as the environment's role (of
        ``database``, a copy being updated, instead of the environment's own)."""
        ...

    def update_on_copy(
        self,
        want: DesiredEnvironment,
        update: Callable[[str], object],
        previous: Recorded = None,
        result: Recorded = None,
    ) -> object:
        """Run ``update`` (given the copy's database name) on a journalled copy of the
        environment's database and filestore; swap the copy in only when it returns,
        recording ``result`` (revision, module record) in the ledger at the swap; the
        replaced data is kept for ``keep_previous``, labelled with ``previous``."""
        ...

    def rollback_requested(self, key: EnvKey, revision: str) -> bool:
        """Whether a data rollback (``odooops db rollback``) waits for ``revision``."""
        ...

    def roll_back_data(
        self, want: DesiredEnvironment, current: Recorded, fallback: Mapping[str, Any]
    ) -> object:
        """Put the data an update replaced back in place (Odoo is stopped), recording its
        revision and module record (``fallback`` if it has none) at the swap; the data it
        replaces, at ``current`` (revision, module record), is kept in turn."""
        ...

    def restore_requested(self, key: EnvKey, revision: str, data_revision: str) -> bool:
        """Whether a rollback with data (``odooops rollback --with-data``) waits for
        ``revision`` to restore a pre-update backup (asked on the data at ``data_revision``)."""
        ...

    def restore_for_rollback(
        self, want: DesiredEnvironment, data_revision: str, modules_at: Mapping[str, Any]
    ) -> object:
        """Back up the current data (at ``data_revision``), then restore the marked backup
        (Odoo is stopped), recording the pinned revision and ``modules_at`` at the swap."""
        ...

    def prepare_admin_login(self, want: DesiredEnvironment) -> None:
        """The administrator password's hash is computed while ``odoo -i`` runs."""
        ...

    def set_admin_login(self, want: DesiredEnvironment) -> None:
        """A new database gets its own administrator password, never Odoo's admin/admin."""
        ...


# The final backup of a database about to be dropped (its environment is no longer declared,
# so only the key and the ledger's record are known).
FinalBackup = Callable[[EnvKey, DatabaseRecord], None]
# The build context of an environment's image ("image": the generated recipe's) or of its
# app's own Dockerfile ("app"), made from the git trees of its build plan.
BuildContext = Callable[[DesiredEnvironment, str], bytes]


class Router(Protocol):
    """What a blue/green rollout needs of the shared reverse proxy (``engine.routing``)."""

    def attach(self, key: EnvKey, network: str) -> None:
        """Route ``key`` now: the proxy joins ``network`` and loads the table."""

    def serve(
        self,
        key: EnvKey,
        upstreams: tuple[str, ...] | None = None,
        maintenance: Maintenance | None = None,
    ) -> None:
        """Send ``key``'s traffic to ``upstreams``, in that order, or answer with the
        ``maintenance`` page; loaded when it returns."""

    def release(self, key: EnvKey) -> None:
        """``key``'s default route again (its own container, then its ``-next``)."""


class _NoRouter:
    """Without ingress nothing routes: an environment is published on its host port, and a
    step that asks for a route is a bug."""

    def attach(self, key: EnvKey, network: str) -> None:
        raise AssertionError(f"{key}: routed without a router")

    def serve(
        self,
        key: EnvKey,
        upstreams: tuple[str, ...] | None = None,
        maintenance: Maintenance | None = None,
    ) -> None:
        raise AssertionError(f"{key}: routed without a router")

    def release(self, key: EnvKey) -> None:
        raise AssertionError(f"{key}: routed without a router")


PhaseReport = Callable[[EnvKey, str, bool, str], None]
"""``(key, phase, in_progress, message)``: a rollout's phase, for the ``Rollout`` condition
(Building, UpdatingCopy, CheckingCopy, RollingBackData, Starting, Switching, Draining while
in progress; Complete, RolledBack, BuildFailed once over)."""

# How long a new environment's run waits for its route to be loaded (a proxy that does not
# answer is the route's condition, not the run's failure).
ROUTE_WAIT = 60.0
DRAIN_SECONDS = 30
"""How long the old container of a rollout gets to finish its requests (Odoo stops its HTTP
workers gracefully on SIGTERM) once the proxy sends nothing new to it."""


class Steps:
    """Applies actions for the engine; holds nothing but what it is given."""

    def __init__(
        self,
        runtime: Runtime,
        ledger: Ledger,
        admin: Callable[[EnvKey, DatabaseServer | None], DatabaseAdmin],
        admin_named: Callable[[EnvKey, str], DatabaseAdmin | None],
        password: Callable[[EnvKey], str],
        data: DataHooks,
        context: BuildContext,
        final_backup: FinalBackup,
        health_timeout: float,
        cancel: threading.Event,
        routes: Router | None = None,
        phase: PhaseReport | None = None,
        builds: BuildQueue | None = None,
        statuses: CommitStatuses | None = None,
    ) -> None:
        self.runtime, self.ledger = runtime, ledger
        self.builds = builds
        self.statuses = statuses
        self.routes: Router = routes or _NoRouter()
        self._phase: PhaseReport = phase or (lambda key, phase, active, message: None)
        # When each environment's maintenance page went up (a module update on a copy): the
        # rollout that lifts it reports the window's length.
        self._maintenance_since: dict[EnvKey, float] = {}
        # A new routed environment's route, loaded while its database is initialised.
        self._attaching: dict[EnvKey, threading.Thread] = {}
        # Per environment whose run is going on: set by the engine when a newer revision of
        # it is committed, which ends that run's wait for a new container's health.
        self.superseded: dict[EnvKey, threading.Event] = {}
        self._admin, self._admin_named = admin, admin_named
        self._password, self._data, self._context = password, data, context
        self._final_backup = final_backup
        self.health_timeout = health_timeout
        self.cancel = cancel
        self._build_locks: dict[str, threading.Lock] = {}
        self._guard_lock = threading.Lock()

    def run(self, want: DesiredEnvironment | None, action: Action) -> StepResult:
        if self.cancel.is_set():
            raise Interrupted(
                f"stopped before {action.kind.value} {action.target}",
                remediation="the daemon resumes it at its next start",
            )
        started = time.monotonic()
        handler = _HANDLERS[action.kind]
        outcome, detail = handler(self, want, action)
        if want is not None and outcome == "done":
            images.record(self.runtime, self.ledger, want, action.kind)  # builds, rollouts
        boundary("steps", f"after {action.kind.value} {action.target}")
        return StepResult(
            action.kind, action.target, outcome, detail, round(time.monotonic() - started, 3)
        )

    # ------------------------------------------------------------------------ the guard
    def guard(self, action: Action, want: DesiredEnvironment | None) -> DatabaseRecord | None:
        """Re-check, at the moment of acting, that a destructive action may destroy.

        Refused: anything of a protected environment (the ledger's word, which changes only
        when a committed ``protected: false`` has been applied, or the desired spec's), a
        database the ledger does not record as the daemon's, a recreate of a database the
        ledger records as initialised, and a drop of a database that no longer exists.
        """
        key = action.key
        record = self.ledger.database(key)
        protected = (record is not None and record.protected) or (
            want is not None and want.spec.protected
        )
        if protected:
            raise DestructiveRefused(
                f"{action.kind.value} {action.target} refused: {key} is protected",
                remediation=f"commit protected: false in environments/{key}.yaml first (a "
                "change request: odooops requests list --state-repo URL), let the daemon apply "
                "it, then remove the file",
            )
        if action.kind is Kind.REMOVE_VOLUME:
            return record
        if record is None:
            raise DestructiveRefused(
                f"{action.kind.value} {action.target} refused: the daemon's ledger does not "
                f"record database {action.target} as its own",
                remediation=f"odooops status {key}; inspect the database and drop it yourself "
                "if it is not needed",
            )
        if action.kind is Kind.RECREATE_DATABASE and record.state is DbState.INITIALISED:
            raise DestructiveRefused(
                f"recreate of {action.target} refused: the ledger records it as initialised",
                remediation=f"odooops plan; odooops status {key}",
            )
        return record

    # ------------------------------------------------------------------ containers, net
    def _remove_container(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        self.runtime.remove_container(a.target)
        return "done", ""

    def _remove_network(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        self.runtime.remove_network(a.target)
        return "done", ""

    def _remove_volume(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        self.guard(a, want)
        self.runtime.remove_volume(a.target)
        return "done", ""

    def _create_network(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        w = _need(want, a)
        self.runtime.create_network(w.key, w.spec.protected, w.spec.origin)
        if w.routed:
            # The proxy joins the network and loads the route while the database is made and
            # initialised (it needs no container: a request would fail over until one runs);
            # CREATE_ODOO waits for it. ``attach`` reports its own failures, never raises.
            attaching = threading.Thread(
                target=self._attach, args=(w.key,), name=f"attach-{w.key}", daemon=True
            )
            self._attaching[w.key] = attaching
            attaching.start()
        return "done", ""

    def _attach(self, key: EnvKey) -> None:
        try:
            self.routes.attach(key, key.network)
        except Exception:  # a background thread's error would be lost: logged, retried
            log.exception("%s: routing the new environment failed (the next pass retries)", key)

    def _create_volume(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        w = _need(want, a)
        self.runtime.create_volume(w.key, a.target, w.spec.protected)
        return "done", ""

    def _create_db_container(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        w = _need(want, a)
        if a.kind is Kind.REPLACE_DB_CONTAINER:
            self.runtime.remove_container(w.key.db_container)
        if a.kind is Kind.START_DB_CONTAINER:
            self.runtime.start(w.key.db_container)
        else:
            self.runtime.create_db_container(w, self._password(w.key))
        self._wait(w.key.db_container, DB_READY_TIMEOUT)
        return "done", ""

    # ---------------------------------------------------------------------- databases
    def _create_database(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        w = _need(want, a)
        key = w.key
        if w.server is None:
            self._wait(key.db_container, DB_READY_TIMEOUT)
        record = self.ledger.database(key)
        if record is not None and record.state is DbState.INITIALISED:
            return "skipped", "the ledger records it as initialised"
        admin = self._admin(key, w.server)
        if record is None:
            self._refuse_foreign(admin, key)
        # Written before the database exists: a crash after CREATE DATABASE leaves a record
        # that says "ours, never initialised", which makes the next run recreate it.
        self.ledger.put_database(
            DatabaseRecord(
                key,
                server_name(w.server),
                key.database,
                DbState.CREATING,
                w.spec.protected,
                w.spec.tier.value,
            )
        )
        admin.ensure_role(key, self._password(key))
        admin.create_database(key)
        self.ledger.update_database(key, state=DbState.CREATED)
        return "done", ""

    def _adopt_database(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        """A database of our name that the ledger does not record: adopt it only when it holds
        Odoo (a daemon upgraded from labels, or a lost data directory); never drop it."""
        w = _need(want, a)
        key = w.key
        if self.ledger.database(key) is not None:
            return "skipped", "already in the ledger"
        admin = self._admin(key, w.server)
        if w.server is None:
            self._wait(key.db_container, DB_READY_TIMEOUT)
        self._refuse_foreign(admin, key)
        if admin.has_odoo(key):
            state, detail = DbState.INITIALISED, "holds Odoo: adopted as initialised"
        elif w.server is None:
            # The container is ours (its labels are the daemon's); its database, then, too.
            state, detail = DbState.CREATED, "empty database of our own container"
        else:
            raise DatabaseNotOwned(
                f"database {key.database} on {admin.name} exists, holds no Odoo, and this "
                f"daemon's ledger does not record it: {key} is left alone",
                remediation=f"look at it (psql -d {key.database}), then drop or rename it "
                "yourself if it is not needed, then: odooops reconcile (a fresh one is created)",
            )
        admin.ensure_role(key, self._password(key))
        self.ledger.put_database(
            DatabaseRecord(
                key,
                server_name(w.server),
                key.database,
                state,
                w.spec.protected,
                w.spec.tier.value,
            )
        )
        return "done", detail

    def _recreate_database(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        w = _need(want, a)
        with self._guard_lock:
            self.guard(a, w)
            self._admin(w.key, w.server).drop_database(w.key)
            self.ledger.update_database(w.key, state=DbState.CREATING)
        return self._create_database(w, a)

    def _drop_database(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        key = a.key
        with self._guard_lock:
            record = self.guard(a, want)
            assert record is not None  # the guard refuses a drop without a record
            admin = self._admin_named(key, record.server)
            if admin is None:
                raise DestructiveRefused(
                    f"drop of {a.target} refused: its server {record.server} is no longer "
                    "declared in odooops.yaml",
                    remediation="declare the server again in database_servers, or drop the "
                    "database yourself",
                )
            kept = self.ledger.kept(key)
            if kept is not None:  # data updates replaced (owned by the role: before it)
                for name in kept_databases(kept):
                    if name.startswith("odooops_old_"):
                        admin.drop_database(key, name)
                self.ledger.forget_kept(key)
            golden = self.ledger.golden(key)
            if golden is not None:  # production's golden copy, owned by its role: before it
                if is_golden(str(golden.get("database", ""))):
                    admin.drop_database(key, str(golden["database"]))
                self.ledger.forget_golden(key)
            if not admin.existing([record.name]):
                self.ledger.forget_database(key)
                return "skipped", "already gone"
            if record.initialised:
                self._final_backup(key, record)  # never dropped without a last backup
            admin.drop_database(key)
            admin.drop_role(key)
            self.ledger.forget_database(key)
        return "done", ""

    # ------------------------------------------------------------------ image and Odoo
    def _build_image(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        """Build once per tag: environments with the same inputs share the image (and the
        lock). The app's own Dockerfile, when there is one, builds the base stage first."""
        w = _need(want, a)
        with self._guard_lock:
            lock = self._build_locks.setdefault(w.image, threading.Lock())
        with lock:
            if self.runtime.has_image(w.image):
                return "skipped", "built meanwhile"
            self._phase(w.key, "Building", True, f"image of revision {w.revision[:12]}")
            labels = {"odooops.project": w.project.name, "odooops.revision": w.revision}
            plan = w.build

            def work(on_line: Callable[[str], None], deadline: float) -> None:
                if plan is not None and plan.app_base and not self.runtime.has_image(plan.app_base):
                    self.runtime.build_image(
                        plan.app_base,
                        self._context(w, "app"),
                        labels,
                        {"ODOO_IMAGE": plan.base},
                        on_line=on_line,
                        deadline=deadline,
                    )
                self.runtime.build_image(
                    w.image, self._context(w, "image"), labels, on_line=on_line, deadline=deadline
                )

            def queued(position: int, of: int) -> None:
                self._phase(w.key, "Building", True, f"queued for a build slot: {position} of {of}")

            self._status(w, "odooops/build", "pending", "building the image")
            try:
                if self.builds is None:
                    work(lambda line: None, math.inf)
                else:
                    done = self.builds.run(
                        w.image, w.project.name, str(w.key), w.revision, work, queued
                    )
                    self._status(w, "odooops/build", "success", f"image {done.state}", done.id)
                    return "done", f"build {done.id}: {done.state}"
            except OdooOpsError as exc:
                self._phase(w.key, "BuildFailed", False, f"revision {w.revision[:12]} not built")
                latest = self.builds.latest(w.image) if self.builds is not None else None
                self._status(
                    w,
                    "odooops/build",
                    "failure",
                    exc.message.splitlines()[0],
                    latest.id if latest else "",
                )
                raise
            self._status(w, "odooops/build", "success", "image built")
        return "done", ""

    def _run_tests(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        """The tier's test gate: the Odoo tests of the modules this deployment installs or
        updates (only the repositories' own, not Odoo's), run by the new image on a fresh
        scratch database with demo data, as Odoo.sh's dev builds do. A failure stops the
        run here, before any data or container changes: the previous version keeps serving.
        The report is kept with the build and in the ledger (a passed gate is not run again
        for the same image)."""
        w = _need(want, a)
        gate = w.tests
        assert gate is not None  # planned only for a gated tier
        record = self.ledger.database(w.key)
        ours = {name for name, _ in w.addons}
        if record is not None and record.initialised:
            plan = update_plan(
                self.ledger.modules(w.key), dict(w.addons), w.base_image_id, w.modules
            )
            wanted = (*plan.install, *plan.update)
        else:
            wanted = w.modules
        modules = tuple(m for m in dict.fromkeys(wanted) if m in ours)
        spec = selector(modules, gate.tags)
        if not modules:
            note = "no module of the repositories is installed or updated: nothing to test"
            self._record_gate(w, True, {"result": "passed", "modules": [], "note": note})
            return "skipped", "no module of the repositories changed"
        self._phase(w.key, "Testing", True, f"tests of {', '.join(modules)}")
        self._status(w, f"odooops/tests {w.key.env}", "pending", f"testing {spec}")
        with self._data.scratch_database(w) as scratch:
            boundary("steps", "tests: scratch database made")
            args = [
                "-d",
                scratch,
                "-i",
                ",".join(modules),
                "--with-demo",
                "--test-enable",
                f"--test-tags={spec}",
                "--stop-after-init",
                f"--data-dir={TEST_DATA_DIR}",  # the scratch filestore dies with the container
            ]
            run = self.runtime.run_once(
                w, self._password(w.key), args, gate.timeout.total_seconds(), self.cancel
            )
            boundary("steps", "tests: ran, the scratch database not dropped yet")
        if run.code == 130:
            raise Interrupted("tests interrupted: the daemon is stopping", remediation="")
        report = parse(run.logs, run.code, modules, spec)
        doc = report.to_dict()
        if run.code == 124:
            doc["note"] = f"the tests ran longer than {gate.timeout} (tests.timeout)"
        self._record_gate(w, report.ok and run.code != 124, doc)
        if report.ok and run.code != 124:
            self._phase(w.key, "Tested", False, f"{report.passed} tests passed")
            return "done", f"{report.passed} of {report.total} tests passed ({spec})"
        self._phase(w.key, "TestsFailed", False, f"revision {w.revision[:12]} not deployed")
        raise TestsFailed(_gate_message(w, report, run.code, gate.timeout, run.logs), w.image)

    def _record_gate(self, w: DesiredEnvironment, passed: bool, doc: dict[str, Any]) -> None:
        self.ledger.put_gate(gate_key(w), w.key, w.image, passed, doc)
        build = ""
        if self.builds is not None:
            self.builds.attach_tests(w.image, str(w.key), doc)
            latest = self.builds.latest(w.image)
            build = latest.id if latest else ""
        total = doc.get("total", 0)
        self._status(
            w,
            f"odooops/tests {w.key.env}",
            "success" if passed else "failure",
            f"{doc.get('passed', 0)} of {total} tests passed" if total else doc.get("note", ""),
            build,
        )

    def _status(
        self, w: DesiredEnvironment, context: str, state: str, text: str, build: str = ""
    ) -> None:
        if self.statuses is not None:
            self.statuses.post(w, context, state, text, build)

    def _init_database(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        w = _need(want, a)
        record = self.ledger.database(w.key)
        if record is not None and record.initialised:  # re-checked: never initialised twice
            return "skipped", "the ledger records it as initialised"
        mods = ",".join(m for m in w.modules if m != "base") or "base"
        if w.spec.db_source != "fresh":
            # A sanitised copy of the source, then the target's own code updates it.
            self._data.copy_for_init(w)
            self._odoo(
                w,
                ["-d", w.key.database, "-i", mods, "-u", mods, "--stop-after-init"],
                "module update of the copy",
            )
            detail = f"copy of {w.spec.db_source}"
        else:
            args = ["-d", w.key.database, "-i", ",".join(w.modules), "--stop-after-init"]
            # Odoo 19 loads demo data only when asked (--without-demo takes a boolean now and
            # logs "invalid boolean value" for the old `all`).
            if w.settings.demo:
                args.append("--with-demo")
            self._data.prepare_admin_login(w)
            self._odoo(w, args, "database initialisation")
            self._data.set_admin_login(w)  # before the ledger says initialised: a crash redoes it
            detail = f"odoo -i {','.join(w.modules)}"
        self.ledger.put_modules(w.key, applied(dict(w.addons), w.base_image_id, w.modules))
        self.ledger.update_database(w.key, state=DbState.INITIALISED, revision=w.revision)
        return "done", detail

    def _update_modules(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        """``-u`` only the installed modules whose addon folder changed in git since the last
        successful update, ``-i`` the newly wanted ones, nothing at all when neither (a
        code-only deploy takes no backup and runs no Odoo)."""
        w = _need(want, a)
        record = self.ledger.database(w.key)
        snapshot = self._data.module_snapshot(w)
        installed = [name for name, state in snapshot.states.items() if state == "installed"]
        plan = update_plan(
            self.ledger.modules(w.key), dict(w.addons), w.base_image_id, w.modules, installed
        )
        done = applied(dict(w.addons), w.base_image_id, w.modules)
        current = (record.revision if record else "", self.ledger.modules(w.key))
        if self._data.rollback_requested(w.key, w.revision):
            # The environment is pinned to the revision its kept data was at: that data goes
            # back instead of an update (its swap records the modules as they were then).
            detail = self._roll_back_data(w, current, done)
            # Older data is in place: the next update away from it takes a backup of its own.
            self.ledger.update_database(w.key, backup_revision="")
            return "done", detail
        if self._data.restore_requested(w.key, w.revision, current[0]):
            # Pinned back by ``odooops rollback --with-data``: the backup taken before the
            # update away from this revision goes back instead of an update.
            detail = self._restore_for_rollback(w, current[0], done)
            self.ledger.update_database(w.key, backup_revision="")
            return "done", detail
        if plan.empty and not snapshot.partially_updated:
            self.ledger.put_modules(w.key, done)
            self.ledger.update_database(w.key, revision=w.revision)
            return "skipped", str(plan)
        # Migrations cannot be undone: the way back is this backup, taken once per target
        # revision (a failing update retried ten times takes one backup, not ten).
        backed_up = record is not None and record.backup_revision == w.revision
        if (w.spec.protected or w.spec.tier is Tier.PRODUCTION) and not backed_up:
            self._data.backup_before(
                w, f"before update to {w.revision[:12]}", record.revision if record else ""
            )
            self.ledger.update_database(w.key, backup_revision=w.revision)
        args = plan.args() or ["-u", ",".join(m for m in w.modules if m != "base") or "base"]
        # ``migrate`` approves the update of exactly one revision (``odooops db migrate``):
        # a later revision updating modules is held again.
        if w.routed and not w.settings.maintenance and w.spec.migrate != w.revision:
            raise MigrationPending(
                f"{w.key}: revision {w.revision[:12]} updates modules ({plan}), which takes the "
                "site down behind the maintenance page, and this tier says maintenance: false; "
                "the previous revision keeps serving",
                remediation=f"approve this update (it shows the maintenance page while it "
                f"runs): odooops db migrate {w.key}",
            )
        if w.routed:
            detail = self._update_on_copy(w, args, snapshot, str(plan), current, done)
        else:
            self._odoo(
                w, ["-d", w.key.database, *args, "--stop-after-init"], "module update", snapshot
            )
            detail = str(plan)
        self.ledger.put_modules(w.key, done)
        self.ledger.update_database(w.key, revision=w.revision)
        return "done", detail

    def _update_on_copy(
        self,
        w: DesiredEnvironment,
        args: list[str],
        before: ModuleSnapshot,
        plan: str,
        current: tuple[str, Mapping[str, Any] | None],
        done: Mapping[str, Any],
    ) -> str:
        """The update runs on a copy, never on the live database: the proxy shows the
        maintenance page, the old container stops (no write is lost to the copy), the
        database and filestore are copied (a template copy, hard links), ``odoo -u`` runs on
        the copy and is judged there, and only then is the copy swapped in. On failure the
        copy is dropped and the old container serves the untouched database again. The new
        container is started by the REPLACE_ODOO step that follows, which lifts the page."""
        rt, key, name = self.runtime, w.key, w.key.odoo_container
        self.routes.serve(key, maintenance=Maintenance(w.maintenance_text))
        started = self._maintenance_since.setdefault(key, time.monotonic())
        self._phase(key, "UpdatingCopy", True, f"maintenance page up; {plan} on a copy")
        rt.stop(name, timeout=DRAIN_SECONDS)
        boundary("steps", "update on a copy: old container stopped")

        def update(database: str) -> None:
            self._odoo(
                w,
                ["-d", database, *args, "--stop-after-init"],
                "module update (on a copy)",
                before,
                database=database,
            )
            self._phase(
                key, "CheckingCopy", True, "the new revision serves the updated copy on trial"
            )
            self._trial(w, database)

        try:
            report = self._data.update_on_copy(w, update, current, (w.revision, done))
        except OdooOpsError as exc:
            failed = time.monotonic()
            self._serve_again(w)
            self._maintenance_since.pop(key, None)
            self._phase(
                key,
                "RolledBack",
                False,
                f"the update failed on the copy; revision {w.revision[:12]} not deployed; the "
                f"previous revision serves again {time.monotonic() - failed:.1f} s after the "
                f"failure (maintenance window {time.monotonic() - started:.1f} s)",
            )
            # A copy left half-updated is dropped: the live database is not partially updated.
            code = "deploy_failed" if exc.code == PartiallyUpdated.code else exc.code
            raise DeployFailed(
                f"{exc.message}\nthe live database was not touched: the update ran on a copy, "
                f"which is dropped; {name} serves the previous revision again",
                code=code,
                retryable=exc.retryable,
                remediation=exc.remediation,
            ) from exc
        log.info(
            "%s: modules updated on a copy in %.1f s (%s)", key, time.monotonic() - started, report
        )
        return f"{plan}, on a copy swapped in"

    def _roll_back_data(
        self,
        w: DesiredEnvironment,
        current: tuple[str, Mapping[str, Any] | None],
        done: Mapping[str, Any],
    ) -> str:
        """``odooops db rollback``: behind the maintenance page (routed), the old container
        stops and the kept data is swapped in (a journalled move from a copy of it, so the
        kept data stays intact until the swap); the REPLACE_ODOO step that follows starts the
        pinned revision on it. On failure nothing changed and the old container serves."""
        rt, key, name = self.runtime, w.key, w.key.odoo_container
        if w.routed:
            self.routes.serve(key, maintenance=Maintenance(w.maintenance_text))
            self._maintenance_since.setdefault(key, time.monotonic())
        self._phase(key, "RollingBackData", True, f"the data of revision {w.revision[:12]} back")
        rt.stop(name, timeout=DRAIN_SECONDS)
        boundary("steps", "data rollback: old container stopped")
        try:
            self._data.roll_back_data(w, current, done)
        except OdooOpsError as exc:
            self._serve_again(w)
            self._maintenance_since.pop(key, None)
            self._phase(key, "RolledBack", False, "the data rollback failed; nothing changed")
            raise DeployFailed(
                f"{exc.message}\nthe data rollback did not happen: the live data is as it was "
                f"and {name} serves it again",
                code=exc.code,
                retryable=exc.retryable,
                remediation=exc.remediation,
            ) from exc
        return f"data of revision {w.revision[:12]} put back (the replaced data is kept)"

    def _restore_for_rollback(
        self, w: DesiredEnvironment, data_revision: str, done: Mapping[str, Any]
    ) -> str:
        """``odooops rollback --with-data`` from a pre-update backup: behind the maintenance
        page (routed), the old container stops, the current data is backed up and the backup
        restored (a journalled move: the live data is untouched until the swap); the
        REPLACE_ODOO step that follows starts the pinned revision on it. On failure the old
        container serves the data it had."""
        rt, key, name = self.runtime, w.key, w.key.odoo_container
        if w.routed:
            self.routes.serve(key, maintenance=Maintenance(w.maintenance_text))
            self._maintenance_since.setdefault(key, time.monotonic())
        self._phase(key, "RestoringData", True, f"the data of revision {w.revision[:12]} back")
        rt.stop(name, timeout=DRAIN_SECONDS)
        boundary("steps", "rollback with data: old container stopped")
        try:
            self._data.restore_for_rollback(w, data_revision, done)
        except OdooOpsError as exc:
            self._serve_again(w)
            self._maintenance_since.pop(key, None)
            self._phase(key, "RolledBack", False, "the restore failed; the data is as it was")
            raise DeployFailed(
                f"{exc.message}\nthe rollback's restore did not happen: the live data is as it "
                f"was and {name} serves it again",
                code=exc.code,
                retryable=exc.retryable,
                remediation=exc.remediation,
            ) from exc
        return f"the backup of revision {w.revision[:12]} restored (the replaced data backed up)"

    def _trial(self, w: DesiredEnvironment, database: str) -> None:
        """The new revision serves the updated copy in a trial container, which must pass the
        health check and the smoke paths before the copy may replace the live database: an
        update that succeeds but leaves a server that cannot start or render a page is
        rolled back like a failed one. The trial runs no cron and is removed either way."""
        rt, trial = self.runtime, w.key.odoo_check_container
        rt.remove_container(trial)
        rt.create_odoo(w, self._password(w.key), name=trial, trial_database=database)
        try:
            rt.start(trial)
            self._wait_odoo(w, trial)
            boundary("steps", "update on a copy: trial server passed")
        finally:
            rt.remove_container(trial)

    def _serve_again(self, w: DesiredEnvironment) -> None:
        """After a failed update on a copy: the old container on the untouched database, and
        the page lifted once it answers (left up if it does not: better than errors)."""
        self.runtime.start(w.key.odoo_container)
        # The old revision served before: its health decides (the smoke paths are the new's).
        self._wait_odoo(w, w.key.odoo_container, smoke=False)
        if w.routed:
            self.routes.release(w.key)

    def _create_odoo(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        w = _need(want, a)
        key = w.key
        self._before_odoo(w)
        self.runtime.remove_container(key.odoo_container)
        self.runtime.create_odoo(w, self._password(key))
        self.runtime.start(key.odoo_container)
        attaching = self._attaching.pop(key, None)
        if w.routed and attaching is None:
            self.routes.attach(key, key.network)
        self._wait_odoo(w, key.odoo_container)
        if attaching is not None:
            attaching.join(ROUTE_WAIT)
        return "done", ""

    def _finish_rollout(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        """The daemon stopped between a rollout's switch (the old container stopped) and its
        rename: the new container, serving already, takes the environment's name. If it does
        not answer after all it is removed, and the next run starts the environment again."""
        w = _need(want, a)
        rt, name, nxt = self.runtime, w.key.odoo_container, w.key.odoo_next_container
        try:
            rt.start(nxt)  # idempotent: it is running unless something stopped it
            self._wait_odoo(w, nxt)
        except OdooOpsError:
            rt.remove_container(nxt)
            raise
        rt.remove_container(name)
        rt.rename(nxt, name)
        self.routes.release(w.key)
        return "done", f"{nxt} renamed {name}"

    def _start_odoo(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        w = _need(want, a)
        self._before_odoo(w)
        self.runtime.start(w.key.odoo_container)
        self._wait_odoo(w, w.key.odoo_container)
        return "done", ""

    def _stop_odoo(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        self.runtime.stop(a.target)
        return "done", ""

    def _stop_db_container(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        """A sleeping dev tier's own database server: stopped, its volume kept."""
        self.runtime.stop(a.target)
        return "done", ""

    def _wake(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        """A sleeping environment that needs a deploy is woken first: recorded as waking,
        so the next steps start it and the run's end, once Odoo answers, gives its route
        back to Odoo (the waking page shows until then)."""
        w = _need(want, a)
        self.ledger.put_rest(w.key, Rest.WAKING, datetime.now(UTC))
        return "done", ""

    def _replace_odoo(self, want: DesiredEnvironment | None, a: Action) -> tuple[str, str]:
        """Start the new container; only when it is healthy is the old one removed.

        The old container is kept (stopped, renamed) until then, so a failed rollout puts the
        previous revision back in service instead of leaving the environment down.
        """
        w = _need(want, a)
        if w.routed:
            return self._blue_green(w)
        rt, name = self.runtime, w.key.odoo_container
        self._before_odoo(w)
        previous = f"{name}-previous"
        rt.remove_container(previous)
        rt.rename(name, previous)
        boundary("steps", "replace: old container set aside")
        rt.stop(previous)
        boundary("steps", "replace: old container stopped")
        try:
            rt.create_odoo(w, self._password(w.key))
            boundary("steps", "replace: new container created")
            rt.start(name)
            self._wait_odoo(w, name)
        except OdooOpsError as exc:
            rt.remove_container(name)
            rt.rename(previous, name)
            rt.start(name)
            raise DeployFailed(
                f"rollout of revision {w.revision[:12]} failed; the previous container is "
                f"serving again. {exc.message}",
                remediation=exc.remediation,
            ) from exc
        rt.remove_container(previous)
        return "done", ""

    def _blue_green(self, w: DesiredEnvironment) -> tuple[str, str]:
        """The new container starts beside the old one; traffic moves to it only once it is
        healthy, when the old one stops; then the new one takes the old one's name.

        The proxy's route lists both names, ``<odoo>`` then ``<odoo>-next``, and sends each
        request to the first that accepts a connection: a refused or unresolvable dial is
        retried on the other, never failed. So the switch needs no configuration reload
        (a reload can cut a request the replaced server had just accepted): stopping the old
        container (Odoo finishes its requests in flight on SIGTERM) moves the traffic, and
        the rename is invisible. A new container that does not become healthy is removed;
        the old one never stopped serving. After a kill: before the stop, the next run
        removes the ``-next`` container (the old one serves); after it, the next run finishes
        the rollout (``FINISH_ROLLOUT``).
        """
        rt, key = self.runtime, w.key
        name, nxt = key.odoo_container, key.odoo_next_container
        started = time.monotonic()
        self._before_odoo(w)
        rt.remove_container(nxt)
        self._phase(key, "Starting", True, f"{nxt} starting on revision {w.revision[:12]}")
        rt.create_odoo(w, self._password(key), name=nxt)
        boundary("steps", "blue/green: new container created")
        try:
            rt.start(nxt)
            self._wait_odoo(w, nxt)
        except OdooOpsError as exc:
            rt.remove_container(nxt)
            self._phase(key, "RolledBack", False, f"{nxt} never got healthy; {name} keeps serving")
            if isinstance(exc, Superseded | Interrupted):
                raise
            raise DeployFailed(
                f"rollout of revision {w.revision[:12]} failed; {name} keeps serving the "
                f"previous revision. {exc.message}",
                remediation=exc.remediation,
            ) from exc
        self._phase(key, "Switching", True, f"{nxt} healthy; the proxy's route made sure of")
        self.routes.attach(key, key.network)  # the proxy is on the network, the route loaded
        boundary("steps", "blue/green: new container healthy")
        self._phase(key, "Draining", True, f"{name} finishes its requests and stops")
        rt.stop(name, timeout=DRAIN_SECONDS)
        boundary("steps", "blue/green: old container stopped, traffic on the new one")
        rt.remove_container(name)
        rt.rename(nxt, name)
        boundary("steps", "blue/green: new container renamed")
        self.routes.release(key)
        done = f"blue/green to {w.revision[:12]} in {time.monotonic() - started:.1f} s"
        since = self._maintenance_since.pop(key, None)
        if since is not None:
            done += f"; maintenance window {time.monotonic() - since:.1f} s"
        self._phase(key, "Complete", False, done)
        return "done", done

    # ------------------------------------------------------------------------- helpers
    def _refuse_foreign(self, admin: DatabaseAdmin, key: EnvKey) -> None:
        """Before the ledger takes a database it does not record: never take another daemon
        instance's (adopting would give its role this daemon's password: its Odoo could no
        longer log in). Once recorded, the ledger decides, so a renamed instance goes on."""
        other = admin.foreign_claim(key)
        if other is None:
            return
        raise ClaimedElsewhere(
            f"{key}: role {key.role} on {admin.name} belongs to daemon instance {other!r}, "
            f"which runs an environment of the same name; {key.database} is left alone",
            remediation=f"name the project differently, or run it from instance {other}; to "
            f"hand the environment over to this daemon, stop the other one first, then: "
            f"psql -d postgres -c 'COMMENT ON ROLE \"{key.role}\" IS NULL'; then: "
            "odooops reconcile",
        )

    def _before_odoo(self, want: DesiredEnvironment) -> None:
        """Before any Odoo starts: its role has the store's password (kept data re-declared
        gets it back), and non-production data is neutralised."""
        self._admin(want.key, want.server).ensure_role(want.key, self._password(want.key))
        self._data.ensure_neutralized(want)

    def _odoo(
        self,
        want: DesiredEnvironment,
        args: list[str],
        what: str,
        before: ModuleSnapshot | None = None,
        database: str | None = None,
    ) -> None:
        """Run ``odoo ARGS`` and judge it by what the database says, not by the exit code:
        every wanted module ``installed``, none left pending, no partial update (against
        ``before``, the module table as the run found it)."""
        run = self.runtime.run_once(want, self._password(want.key), args, INIT_TIMEOUT, self.cancel)
        if run.code == 130:
            raise Interrupted(f"{what} interrupted: the daemon is stopping", remediation="")
        command = f"odoo {' '.join(args)}"
        if run.oom_killed:
            limit = f"{run.memory_limit / 2**20:.0f}Mi"
            raise OutOfMemory(
                f"{what} ran out of memory: {command} was killed at the one-off container's "
                f"limit of {limit} (resource_limits.init_memory)",
                remediation=f"raise resource_limits.init_memory (now {limit}) for the "
                f"{want.spec.tier.value} tier in odooops.yaml or in environments/{want.key}.yaml "
                f"overrides, commit, then: odooops status {want.key}",
            )
        snapshot = self._data.module_snapshot(want, database)
        found = problems(snapshot, want.modules)
        if run.code == 0 and not found and not snapshot.partially_updated:
            return
        advanced = snapshot.advanced(before) if before is not None and run.code != 0 else []
        lines = explaining_lines(run.logs, [p.name for p in found])
        said: list[str] = []
        if advanced:
            said.append(
                "the database is half-updated: Odoo commits module by module, and "
                f"{', '.join(advanced)} were updated before the failure; the rest were not"
            )
        if snapshot.partially_updated:
            said.append(
                "the database is half-updated: modules are left pending and Odoo set "
                "base.partially_updated_database, so the next start of any Odoo on it goes "
                "on with them"
            )
        said.extend(str(p) for p in found)
        kind: type[DeployFailed] = DeployFailed
        if snapshot.partially_updated or advanced:
            kind = PartiallyUpdated
        elif run.code == 0:
            kind = ModulesNotInstalled
        if run.code != 0:
            head = f"{what} failed ({command} exited {run.code})"
            tail = "\n".join(lines) or run.logs[-1500:]
        else:
            head = f"{what} left modules out ({command} exited 0)"
            tail = "\n".join(lines)
        raise kind(
            head + "".join(f"\n- {s}" for s in said) + (f"\nlog:\n{tail}" if tail else ""),
            retryable=False,
            remediation=f"fix the code of revision {want.revision[:12]} (the modules named "
            f"above) and push a new commit, or fix database_servers in odooops.yaml; "
            f"odooops logs {want.key}; odooops status {want.key}",
        )

    def _wait(self, name: str, timeout: float) -> None:
        ok, detail = self.runtime.wait_healthy(name, timeout, self.cancel)
        if self.cancel.is_set():
            raise Interrupted(f"stopped while waiting for {name}", remediation="")
        if not ok:
            raise DeployFailed(
                f"{name} did not become ready: {detail}", remediation=f"docker logs {name}"
            )

    def _wait_odoo(self, want: DesiredEnvironment, name: str, smoke: bool = True) -> None:
        """Until ``name`` is healthy and (``smoke``) answers the tier's smoke paths."""
        newer = self.superseded.get(want.key)
        cancel = self.cancel if newer is None else _Either(self.cancel, newer)
        ok, detail = self.runtime.wait_healthy(name, self.health_timeout, cancel)
        if self.cancel.is_set():
            raise Interrupted(f"stopped while waiting for {name}", remediation="")
        if newer is not None and newer.is_set():
            raise Superseded(
                f"{name} (revision {want.revision[:12]}) was still not healthy when a newer "
                "commit changed the environment: the newer one is rolled out instead",
                remediation=f"odooops status {want.key}",
            )
        if ok and smoke:
            ok, detail = self.runtime.smoke(name, want.settings.smoke_paths)
            detail = detail if ok else f"its smoke check failed: {detail}"
        if not ok:
            # The log tail reaches status and errors: the password is cut out of it first.
            password = self._password(want.key)
            tail = sanitize(self.runtime.logs(name, 15).replace(password, "***"))
            raise DeployFailed(
                f"{name} is not healthy: {detail}\n{tail}", remediation=f"docker logs {name}"
            )


def _gate_message(
    w: DesiredEnvironment, report: TestReport, code: int, timeout: timedelta, logs: str
) -> str:
    """What a red gate says: the counts, and each failing test with its first lines."""
    head = f"tests of revision {w.revision[:12]} ({report.selector}) "
    if code == 124:
        return head + f"did not finish within {_span(timeout)} (tests.timeout in policies.yaml)"
    if not report.summary:
        tail = "\n".join(logs.strip().splitlines()[-10:])
        return head + f"did not run: Odoo ended (exit {code}) before its test summary\n{tail}"
    lines = [head + f"failed: {report.failed} failed, {report.errors} error(s) of {report.total}"]
    for failure in report.failures[:5]:
        lines.append(f"{failure.kind}: {failure.module}: {failure.test}")
        lines.extend(f"  {line}" for line in failure.output[-6:])
    return "\n".join(lines)


def _span(t: timedelta) -> str:
    seconds = int(t.total_seconds())
    return f"{seconds // 60} min" if seconds >= 120 else f"{seconds} s"


def _need(want: DesiredEnvironment | None, action: Action) -> DesiredEnvironment:
    if want is None:
        raise AssertionError(f"{action.kind.value} needs a desired environment")
    return want


_Handler = Callable[[Steps, DesiredEnvironment | None, Action], tuple[str, str]]
_HANDLERS: dict[Kind, _Handler] = {
    Kind.REMOVE_STALE: Steps._remove_container,
    Kind.REMOVE_ODOO: Steps._remove_container,
    Kind.REMOVE_DB_CONTAINER: Steps._remove_container,
    Kind.REMOVE_VOLUME: Steps._remove_volume,
    Kind.REMOVE_NETWORK: Steps._remove_network,
    Kind.DROP_DATABASE: Steps._drop_database,
    Kind.CREATE_NETWORK: Steps._create_network,
    Kind.CREATE_VOLUME: Steps._create_volume,
    Kind.CREATE_DB_CONTAINER: Steps._create_db_container,
    Kind.REPLACE_DB_CONTAINER: Steps._create_db_container,
    Kind.START_DB_CONTAINER: Steps._create_db_container,
    Kind.CREATE_DATABASE: Steps._create_database,
    Kind.ADOPT_DATABASE: Steps._adopt_database,
    Kind.RECREATE_DATABASE: Steps._recreate_database,
    Kind.BUILD_IMAGE: Steps._build_image,
    Kind.RUN_TESTS: Steps._run_tests,
    Kind.INIT_DATABASE: Steps._init_database,
    Kind.UPDATE_MODULES: Steps._update_modules,
    Kind.CREATE_ODOO: Steps._create_odoo,
    Kind.FINISH_ROLLOUT: Steps._finish_rollout,
    Kind.REPLACE_ODOO: Steps._replace_odoo,
    Kind.START_ODOO: Steps._start_odoo,
    Kind.STOP_ODOO: Steps._stop_odoo,
    Kind.STOP_DB_CONTAINER: Steps._stop_db_container,
    Kind.WAKE: Steps._wake,
}
assert set(_HANDLERS) == set(Kind), "every kind of action has a step"

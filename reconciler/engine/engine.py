"""The engine: from git to live state, one environment at a time.

Two kinds of work, both level-triggered (each recomputes from scratch, so a missed webhook, a
restart or a manual ``docker rm`` is healed):

- a **refresh** fetches the sources, validates the state, resolves the desired world, observes
  everything once and plans everything once; it writes the status of every environment that
  needs nothing and names the ones that need a run;
- an **environment run** (``reconcile_env``) finishes or rolls back an open journal of that
  environment, checks its services answer, observes that environment alone, plans it, and
  applies the plan as ordered steps (``reconciler.engine.steps``), writing its status in a
  ``finally``. One slow environment holds one run, never the others: the daemon runs them on a
  keyed work queue (``reconciler.engine.queue``).

What the daemon owns, and how far it got, is in its ledger (``reconciler.engine.ledger``);
labels on live objects serve listing and humans. A failing environment never stops the others:
its failure becomes a condition and a back-off, so a broken commit is tried once, not in a
tight loop, and a new commit is tried at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.core import config as state_format
from reconciler.core.buildplan import Source
from reconciler.core.caddyconfig import ACCESS_LOG_NAME
from reconciler.core.errors import DriverError, ErrorInfo, InvalidState, OdooOpsError, SourceError
from reconciler.core.faults import boundary
from reconciler.core.model import (
    DatabaseServer,
    Desired,
    DesiredEnvironment,
    EnvKey,
    Project,
    Quotas,
    StateConfig,
    Tier,
)
from reconciler.core.observed import Observed, ObservedDatabase, ObservedEnvironment, Role
from reconciler.core.planner import Kind, Plan, guarded_by_empty_state, plan, plan_environment
from reconciler.core.promotion import image_check
from reconciler.core.sleep import Activity, Rest, should_sleep, span
from reconciler.data.database.endpoint import Endpoint
from reconciler.data.lifecycle import OperationBusy, Site
from reconciler.data.operations import DataOps
from reconciler.drivers.docker import PASSWORD_FILE, DockerDriver, ShellSession, database_reach
from reconciler.drivers.postgres import DedicatedDatabase, PostgresDriver
from reconciler.drivers.protocols import DatabaseAdmin, Listing
from reconciler.drivers.secrets import SecretStore
from reconciler.engine import images
from reconciler.engine.buildqueue import BuildQueue
from reconciler.engine.builds import Wheelhouse, app_context, image_context
from reconciler.engine.commitstatus import CommitStatuses
from reconciler.engine.images import ImageCollector
from reconciler.engine.ledger import DatabaseRecord, DbState, JournalEntry, Ledger
from reconciler.engine.metrics import Metrics
from reconciler.engine.routing import Routes
from reconciler.engine.schedules import DataSchedules
from reconciler.engine.sleeper import Sleeper
from reconciler.engine.sources import Sources
from reconciler.engine.status import (
    Condition,
    DaemonStatus,
    EnvironmentStatus,
    Health,
    StatusStore,
    Sync,
    now,
)
from reconciler.engine.steps import Interrupted, StepResult, Steps
from reconciler.engine.sweeper import Sweeper
from reconciler.gitops.changes import UnknownEnvironment
from reconciler.gitops.gitsource import GitSource

log = logging.getLogger("odooops.engine")

HEALTH_TIMEOUT = 300.0
BACKOFF_START, BACKOFF_CAP = 5.0, 180.0
# A service that does not answer is retried sooner and more often than a failing deployment:
# nothing was changed, and the environment should heal as soon as the service is back.
UNAVAILABLE_CAP = 60.0
# Errors that say "not yet" (an order between environments), retried like an unavailable service
# and logged as waiting, not as failures: a first `make run` prints no error for its staging copy.
WAITING_CODES = frozenset({"copy_source_not_ready"})
BUSY_RETRY = 5.0  # seconds before a run that met a data operation of its environment retries


def retry_delay(exc: OdooOpsError, attempts: int) -> float:
    """Seconds before an environment's run is retried after its ``attempts``-th failure in a row:
    at once after an interrupted step, doubling from 5 s otherwise, capped sooner for a service
    that does not answer or an order to wait for (nothing was changed, and it should go on as
    soon as it can)."""
    if isinstance(exc, Interrupted):
        return 0.0
    unavailable = exc.code in ("docker_unreachable", "database_unreachable") or (
        exc.code in WAITING_CODES
    )
    cap = UNAVAILABLE_CAP if unavailable else BACKOFF_CAP
    return float(min(cap, BACKOFF_START * 2 ** (attempts - 1)))


def report_failure(key: EnvKey, exc: OdooOpsError) -> None:
    """An error with its remediation, or a waiting line for an order between environments."""
    if exc.code in WAITING_CODES:
        log.info("%s: waiting: %s", key, exc.message)
    else:
        log.error("%s: %s", key, exc.render())


# The actions that put a new version in service: a run with one of them is a deployment,
# reported on the commit (``odooops/deploy <env>``).
DEPLOYING = frozenset(
    {Kind.INIT_DATABASE, Kind.UPDATE_MODULES, Kind.CREATE_ODOO, Kind.REPLACE_ODOO}
)


@dataclass(frozen=True)
class EngineConfig:
    state_url: str
    data_dir: Path
    instance: str = "default"
    state_branch: str = "main"
    docker_url: str | None = None
    health_timeout: float = HEALTH_TIMEOUT
    health_interval: int = 5
    read_only: bool = False  # plan only: no status, ledger or port allocation is written
    # The proxy's admin socket directory (default: <data_dir>/proxy); a unix socket's path has
    # at most 107 bytes, which a deep data directory can exceed.
    proxy_dir: Path | None = None
    # A folder of Python distributions builds install from instead of an index (no network).
    wheelhouse: Path | None = None
    # Where users reach this daemon's API (commit statuses link to the build there).
    public_url: str = ""


@dataclass(frozen=True)
class PassResult:
    state_commit: str
    plan: Plan
    errors: Mapping[EnvKey, ErrorInfo] = field(default_factory=dict)
    state_error: ErrorInfo | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    """What the last refresh resolved: the state in force and the desired world."""

    config: StateConfig
    desired: Desired
    guarded: frozenset[EnvKey]  # kept by the empty-state guard


@dataclass(frozen=True)
class Refresh:
    """A refresh's outcome: its plan, and the environments that need a run."""

    snapshot: Snapshot | None
    plan: Plan
    to_run: tuple[EnvKey, ...]
    error: ErrorInfo | None = None


@dataclass
class _Backoff:
    fingerprint: str
    attempts: int
    next_at: float


class Engine:
    """Owns the sources, drivers and stores of one daemon instance."""

    def __init__(
        self,
        config: EngineConfig,
        secrets: SecretStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.secrets = secrets
        self.status = StatusStore(config.data_dir / "status.json", config.read_only)
        self.ledger = Ledger(config.data_dir / "ledger.db", config.read_only)
        self.metrics = Metrics(self.status.all)
        self.docker = DockerDriver(config.instance, config.docker_url, config.health_interval)
        self.wheelhouse = Wheelhouse(config.wheelhouse) if config.wheelhouse else None
        self.commit_statuses = CommitStatuses(
            secrets.credential,
            (lambda build_id: f"{config.public_url.rstrip('/')}/v1/builds/{build_id}")
            if config.public_url
            else None,
        )
        self.builds = BuildQueue(
            config.data_dir / "builds",
            limit=lambda: self._quotas().max_concurrent_builds,
            timeout=lambda: self._quotas().build_timeout.total_seconds(),
            read_only=config.read_only,
        )
        self.sources = Sources(
            config.state_url,
            config.state_branch,
            config.data_dir,
            self.status,
            self.image_id,
            secrets,
            config.wheelhouse,
        )
        self.state_repo = self.sources.state_repo
        self.cancel = threading.Event()  # set when the daemon stops: runs end after a step
        self._pg: dict[str, PostgresDriver] = {}
        self._backoff: dict[EnvKey, _Backoff] = {}
        self._clock = clock
        self._pass_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._guard = threading.Lock()
        self._running_spec: dict[EnvKey, str | None] = {}  # what each run in progress rolls out
        self.snapshot: Snapshot | None = None
        self.errors: dict[EnvKey, ErrorInfo] = {}  # the last run's failure, per environment
        self.on_change: Callable[[], None] = lambda: None  # the daemon's refresh trigger
        self.on_env: Callable[[EnvKey, str], None] = lambda key, why: None  # queue one env
        self.data = DataOps(self)
        self.schedules = DataSchedules(
            self.data,
            lambda: self.current,
            self.status.all,
            self.is_initialised,
            lambda: self.last_good_or_raise().platform.backups.restore_test,
            state=lambda: self.last_good,
        )
        self.images = ImageCollector(self.docker, self.ledger, lambda: self.current)
        self.sweeper = Sweeper(
            self.state_repo,
            config.state_branch,
            lambda: secrets.policy,
            self.ledger,
            read_only=config.read_only,
        )
        proxy_dir = config.proxy_dir or config.data_dir / "proxy"
        self.routes = Routes(
            config.instance,
            proxy_dir,
            self.status,
            secrets.resolve,
            asleep=lambda: {k for k, a in self.ledger.activities().items() if a.shows_waking_page},
        )
        self.sleeper = Sleeper(
            proxy_dir / ACCESS_LOG_NAME, self.ledger, self.routes, lambda: self.current
        )
        self.steps = Steps(
            runtime=self.docker,
            ledger=self.ledger,
            admin=self.admin,
            admin_named=self._admin_named,
            password=self.password,
            data=self.data,
            context=self._build_context,
            final_backup=self._final_backup,
            health_timeout=config.health_timeout,
            cancel=self.cancel,
            routes=self.routes,
            phase=lambda key, phase, active, message: self._mark(
                key, Condition("Rollout", active, phase, message)
            ),
            builds=self.builds,
            statuses=self.commit_statuses,
        )

    def close(self) -> None:
        """Stop the data workers and the mail catcher, release the Docker client."""
        self.cancel.set()
        self.schedules.close()
        self.data.close()
        self.routes.close()
        self.commit_statuses.close()
        self.docker.close()
        self.ledger.close()

    # ----------------------------------------------------------------------- accessors
    @property
    def last_good(self) -> StateConfig | None:
        return self.sources.last_good

    @property
    def current(self) -> Desired | None:
        """What the last refresh resolved (for data operations and schedules)."""
        return self.snapshot.desired if self.snapshot else None

    def _quotas(self) -> Quotas:
        return self.last_good.platform.quotas if self.last_good is not None else Quotas()

    def last_good_or_raise(self) -> StateConfig:
        if self.last_good is None:
            raise OdooOpsError(
                "no valid state commit loaded",
                code="no_state",
                remediation="odooops status (the daemon reports why)",
            )
        return self.last_good

    def load_state(self, fetch: bool = True) -> StateConfig:
        return self.sources.load_state(fetch)

    def app_repo(self, project: Project) -> GitSource:
        return self.sources.app_repo(project)

    def image_id(self, ref: str) -> str:
        return self.docker.image_id(ref)

    def resolve_desired(self, config: StateConfig, fetch: bool = True) -> Desired:
        desired = self.sources.resolve(config, fetch, allocate=not self.config.read_only)
        return self._hold_moved(desired)

    def _hold_moved(self, desired: Desired) -> Desired:
        """Hold an environment whose database would change placement (``db.placement``, or
        a tier between dedicated and shared): its data lives where the ledger says, and
        nothing moves a database between a container of its own and a shared server, so the
        environment is left exactly as it is until its file says where its data is again."""
        records = self.ledger.databases()
        moved: dict[EnvKey, str] = {}
        for key, want in desired.environments.items():
            record = records.get(key)
            if record is None:
                continue
            if (record.server == "dedicated") != (want.server is None):
                where = (
                    "a container of its own"
                    if record.server == "dedicated"
                    else (f"the shared server {record.server}")
                )
                moved[key] = (
                    f"its database is on {where}; the state asks for the other placement, and "
                    "a database is never moved: set db.placement back (or copy the data with "
                    f"odooops db clone into a new environment)"
                )
        if not moved:
            return desired
        kept = {k: w for k, w in desired.environments.items() if k not in moved}
        return replace(desired, environments=kept, held={**desired.held, **moved})

    def pg(self, name: str, config: StateConfig) -> PostgresDriver:
        server = config.platform.database_servers[name]
        with self._guard:
            driver = self._pg.get(name)
            if driver is None or driver.server != server:
                driver = PostgresDriver(server, self.config.instance, self.secrets)
                self._pg[name] = driver
        return driver

    def admin(self, key: EnvKey, server: DatabaseServer | None) -> DatabaseAdmin:
        """The admin side of the server that holds ``key``'s database."""
        if server is None:
            return DedicatedDatabase(self.docker, key)
        return self.pg(server.name, self.last_good_or_raise())

    def _admin_named(self, key: EnvKey, server: str) -> DatabaseAdmin | None:
        if server == "dedicated":
            return DedicatedDatabase(self.docker, key)
        config = self.last_good_or_raise()
        if server not in config.platform.database_servers:
            return None
        return self.pg(server, config)

    def password(self, key: EnvKey) -> str:
        return self.secrets.get_or_create(f"db/{key}")

    def _pin_repositories(self, config: StateConfig) -> bool:
        """Pin every declared repository that has no pin for its URL and ref yet, by a
        commit of ``projects/<project>.lock.yaml`` to the state repository: the pin is then
        reviewed, diffed and reverted like any other state. Whether it committed. A
        repository that cannot be read or whose ref does not exist is logged and left
        unpinned: its environments wait, saying so."""
        if self.config.read_only:
            return False
        committed = False
        for project in config.projects.values():
            waiting = [r for r in project.repositories if r.commit is None]
            if not waiting:
                continue
            pins: dict[str, str] = {}
            for repo in waiting:
                try:
                    pins[repo.name] = self.sources.head_of(project, repo)
                except OdooOpsError as exc:
                    log.error("cannot pin %s of %s: %s", repo.name, project.name, exc.render())
            if not pins:
                continue
            try:
                self.sources.commit_pins(project, pins, self.config.state_branch)
            except OdooOpsError as exc:  # the state repository refused: tried next pass
                log.error("cannot commit the pins of %s: %s", project.name, exc.render())
                continue
            committed = True
        return committed

    def _build_context(self, want: DesiredEnvironment, which: str) -> bytes:
        plan = want.build
        if plan is None:
            raise OdooOpsError(
                f"{want.key} has no build plan",
                code="build_failed",
                remediation=f"odooops status {want.key}",
            )

        def archive(source: Source, root: str, prefix: str) -> bytes:
            repo = self.sources.repo_for(source.url)
            return repo.archive(source.commit, prefix, root=root)

        if which == "app":
            return app_context(plan, archive)
        return image_context(plan, archive, self.wheelhouse)

    # ------------------------------------------------------------ what the data plane asks
    @property
    def instance(self) -> str:
        return self.config.instance

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    def desired(self) -> Desired | None:
        return self.current

    def state(self) -> StateConfig | None:
        return self.last_good

    def changed(self, key: EnvKey) -> None:
        """Data of an environment changed outside a run (a restore stopped its Odoo)."""
        self.on_env(key, "data operation ended")

    def note(self, key: EnvKey, kind: str, ok: bool, reason: str, message: str = "") -> None:
        self.status.note(str(key), kind, ok, reason, message)

    def backed_up(self, key: EnvKey, finished: str, backup_id: str) -> None:
        self.status.modify(
            str(key),
            lambda s: replace(s, last_backup=finished, last_backup_id=backup_id),
            key.project,
            key.env,
        )

    def restore_tested(self, key: EnvKey, when: str) -> None:
        self.status.modify(
            str(key), lambda s: replace(s, last_restore_test=when), key.project, key.env
        )

    def count(self, metric: str, result: str) -> None:
        counter = self.metrics.backups if metric == "backups" else self.metrics.restore_tests
        counter.labels(result).inc()

    def database_replaced(
        self,
        key: EnvKey,
        initialised: bool,
        revision: str = "",
        modules: Mapping[str, Any] | None = None,
    ) -> None:
        """A data operation swapped a new database in: the ledger records it as ours, with
        the revision and module record of the new data when the move says them (an update
        on a copy, a data rollback): recorded by the swap, a crash after it leaves nothing
        to redo."""
        if modules is not None:
            self.ledger.put_modules(key, modules)
        want = self.current.environments.get(key) if self.current else None
        record = self.ledger.database(key)
        state = DbState.INITIALISED if initialised else DbState.CREATED
        if record is not None:
            fields: dict[str, Any] = {"state": state}
            if revision:
                fields["revision"] = revision
            self.ledger.update_database(key, **fields)
        elif want is not None:
            self.ledger.put_database(
                DatabaseRecord(
                    key,
                    "dedicated" if want.server is None else want.server.name,
                    key.database,
                    state,
                    want.spec.protected,
                    want.spec.tier.value,
                )
            )

    def journal(self) -> Ledger:
        return self.ledger

    def journal_entries(self, key: EnvKey | None) -> list[JournalEntry]:
        return self.ledger.entries(key)

    def database_revision(self, key: EnvKey) -> str:
        """The app revision the environment's database was last initialised or updated to
        (the ledger's; "" when unknown)."""
        record = self.ledger.database(key)
        return record.revision if record is not None else ""

    def is_initialised(self, want: DesiredEnvironment) -> bool:
        """From the ledger: the daemon's own record, never a label a workload could write."""
        record = self.ledger.database(want.key)
        return record is not None and record.initialised

    # --------------------------------------------------------------------------- shells
    def open_shell(self, key: EnvKey, kind: str, tty: bool = True) -> ShellSession:
        """``bash`` or ``odoo shell`` in the Odoo container, ``psql`` where the database is.

        Credentials are read inside the container from its password file, so they never
        travel through the API or show in ``docker inspect`` of the exec. Without a TTY the
        input is a script: psql reads no ~/.psqlrc, pages nothing and stops at the first error
        (its exit status says so), and every kind ends at the end of its input.
        """
        status = self.status.get(str(key))
        if status is None or not status.tier:
            raise UnknownEnvironment(
                f"environment {key} is not known", remediation="odooops env list"
            )
        docker = self.docker
        pw = f'PGPASSWORD="$(cat {PASSWORD_FILE})"'
        psql = "psql" if tty else "psql -X -P pager=off -v ON_ERROR_STOP=1"
        if kind == "bash":
            return docker.open_shell(key.odoo_container, ["bash"], tty)
        want = self.current.environments.get(key) if self.current else None
        dedicated = want.server is None if want else Tier(status.tier).dedicated_database
        if kind == "psql" and dedicated:
            return docker.open_shell(
                key.db_container, [*psql.split(), "-U", key.role, "-d", key.database], tty
            )
        if kind == "psql":
            return docker.open_shell(
                key.odoo_container,
                [
                    "sh",
                    "-c",
                    (f'{pw} exec {psql} -h "$HOST" -p "$PORT" -U "$USER" -d {key.database}'),
                ],
                tty,
            )
        args = " ".join(
            a
            for a in docker.container_args(key.odoo_container)
            if a.startswith(("--addons-path=", "--data-dir="))
        )
        return docker.open_shell(
            key.odoo_container,
            [
                "sh",
                "-c",
                (
                    f'{pw} PGHOST="$HOST" PGPORT="$PORT" PGUSER="$USER" '
                    f"exec odoo shell -d {key.database} {args}"
                ),
            ],
            tty,
        )

    # -------------------------------------------------------------------------- observe
    def observe(self, config: StateConfig, key: EnvKey | None = None) -> Observed:
        """The live world (or one environment of it) joined with the ledger.

        One listing of Docker objects, one ledger read, one existence query per database
        server. A server that does not answer raises: nothing is planned on a guess.
        """
        listing = self.docker.observe(key)
        if key is None:
            records = self.ledger.databases()
        else:
            record = self.ledger.database(key)
            records = {key: record} if record is not None else {}
        desired = self.current
        candidates: dict[EnvKey, str] = {}  # desired envs on a shared server, by server
        for k, want in desired.environments.items() if desired else ():
            if (key is None or k == key) and want.server is not None and k not in records:
                candidates[k] = want.server.name
        names: dict[str, set[str]] = {}
        for r in records.values():
            if r.server != "dedicated":
                names.setdefault(r.server, set()).add(r.name)
        for k, server in candidates.items():
            names.setdefault(server, set()).add(k.database)
        exists: dict[str, set[str]] = {}
        down: dict[str, str] = {}  # server -> why, for a refresh: the others go on
        for server, wanted in names.items():
            if server in config.platform.database_servers:
                try:
                    exists[server] = self.pg(server, config).existing(sorted(wanted))
                except DriverError as exc:
                    if key is not None or exc.code != "database_unreachable":
                        raise
                    down[server] = exc.message
        keys = (
            set(listing.networks)
            | set(listing.volumes)
            | set(listing.containers)
            | set(listing.stale)
            | set(records)
            | {k for k, s in candidates.items() if k.database in exists.get(s, set())}
        )
        unreachable = {
            k: down[s]
            for k, s in [*((k, r.server) for k, r in records.items()), *candidates.items()]
            if s in down
        }
        servers = frozenset(config.platform.database_servers)
        modules = self.ledger.all_modules()
        gates = self.ledger.passed_gates()
        activities = self.ledger.activities()
        envs = {
            k: replace(
                observed_environment(
                    k,
                    listing,
                    records.get(k),
                    candidates.get(k),
                    exists,
                    servers,
                    modules.get(str(k)) if k in records else None,
                ),
                gates=gates.get(str(k), frozenset()),
                asleep_since=_asleep_since(activities.get(k)),
            )
            for k in keys
            if k not in unreachable
        }
        return Observed(envs, listing.images, unreachable)

    # ----------------------------------------------------------------------------- plan
    def plan(self, fetch: bool = True) -> tuple[StateConfig, Desired, Observed, Plan]:
        """What a pass would do. With ``fetch=False`` and a refresh already done, it changes
        nothing anywhere (no fetch, no port, no status): the API's plan."""
        if not fetch:
            if self.snapshot is None:
                raise OdooOpsError(
                    "the daemon has not resolved the state yet",
                    code="no_state",
                    remediation="odooops status (the first refresh runs at start)",
                )
            config, desired = self.snapshot.config, self.snapshot.desired
        else:
            config = self.load_state(fetch)
            desired = self._hold_moved(self.sources.resolve(config, fetch, allocate=False))
        observed = self.observe(config)
        return config, desired, observed, plan(desired, observed)

    def review(self, branch: str) -> tuple[str, StateConfig | InvalidState, Plan | None]:
        """The head of ``branch`` of the state repository (a pull request's), validated, and
        what a pass would do if it were merged: ``(commit, config or why it is invalid,
        plan)``. Nothing changes anywhere, and nothing the branch names is fetched (its
        application repositories are read from the mirrors as they are: a request's text
        never makes the daemon reach a new address); the branch itself is fetched."""
        repo = self.sources.state_repo
        repo.fetch()
        head = repo.branches().get(branch)
        if head is None:
            raise SourceError(
                f"branch {branch} is not in the state repository",
                code="state_branch_missing",
                remediation=f"git ls-remote {repo.display_url} refs/heads/{branch}",
            )
        try:
            config = state_format.load_state(
                repo.read_tree(head), head, self.config.state_url, self.secrets.policy
            )
        except InvalidState as exc:
            return head, exc, None
        desired = self._hold_moved(self.sources.resolve(config, fetch=False, allocate=False))
        return head, config, plan(desired, self.observe(config))

    # -------------------------------------------------------------------------- refresh
    def refresh(
        self, fetch: bool = True, busy: Callable[[EnvKey], bool] = lambda key: False
    ) -> Refresh:
        """Fetch, validate, resolve, observe and plan everything; name what needs a run.

        ``busy`` names the environments running or queued right now: their status is their
        run's to write (a container still starting is not yet converged).
        """
        with self._refresh_lock:
            started = time.monotonic()
            try:
                config = self.load_state(fetch)
                if self._pin_repositories(config):
                    config = self.load_state(fetch)  # the state with the new pins
                desired = self.resolve_desired(config, fetch)
                # The snapshot first: observation looks for the desired databases.
                self.snapshot = Snapshot(config, desired, frozenset())
                observed = self.observe(config)
            except OdooOpsError as exc:
                info = ErrorInfo.of(exc)
                log.error("refresh failed before planning: %s", exc.render())
                self.status.set_daemon(replace(self.status.daemon, last_poll=now()))
                self.metrics.passes.labels("failed").inc()
                return Refresh(self.snapshot, Plan(), (), info)
            with self._guard:
                for key in superseded_runs(self._running_spec, desired):
                    log.info("%s: a newer revision was committed; its rollout is superseded", key)
                    self.steps.superseded[key].set()
            guarded = guarded_by_empty_state(desired, observed)
            self.snapshot = Snapshot(config, desired, guarded)
            the_plan = plan(desired, observed)
            pending = the_plan.by_env()
            open_journal = {e.key for e in self.ledger.entries()}
            # An environment whose server did not answer runs too: its run checks the server
            # first, records why it waits, and backs off until the server is back.
            to_run = sorted(
                set(pending)
                | open_journal
                | self._failing_keys(desired)
                | (set(observed.unreachable) & set(desired.environments))
            )
            running = {k for k in desired.environments if busy(k)}
            self._write_quiet(config, desired, observed, set(to_run) | set(guarded) | running)
            self.routes.sync(
                config.platform.ingress,
                desired,
                (k.network for k, e in observed.environments.items() if e.network),
            )
            # Requests the proxy logged (a sleeping environment asked for) and environments
            # idle for their sleep_after: their runs wake them or put them to sleep.
            sleeping = (set(self.sleeper.read()) | set(self.sleeper.idle())) - set(to_run)
            to_run = sorted({*to_run, *(k for k in sleeping if k in desired.environments)})
            seconds = time.monotonic() - started
            self.metrics.pass_seconds.observe(seconds)
            self.metrics.passes.labels("ok").inc()
            daemon = self.status.daemon
            self.metrics.state_rejected.set(1 if daemon.state_error else 0)
            self.status.set_daemon(
                DaemonStatus(
                    state_commit=config.commit,
                    state_error=daemon.state_error,
                    last_poll=now(),
                    last_pass_seconds=round(seconds, 3),
                    passes=daemon.passes + 1,
                    expired={str(k): why for k, why in sorted(desired.expired.items())},
                )
            )
            return Refresh(self.snapshot, the_plan, tuple(to_run))

    def _failing_keys(self, desired: Desired) -> set[EnvKey]:
        """Environments whose last run failed: a refresh gives each a chance (its back-off
        decides whether it runs now)."""
        return {k for k in self.errors if k in desired.environments}

    def _write_quiet(
        self, config: StateConfig, desired: Desired, observed: Observed, busy: set[EnvKey]
    ) -> None:
        """Status of every environment that needs no run, and of held ones, in one write
        (a held one shows its expiry too: one that cannot run may well be one to let go)."""
        changes: dict[str, Callable[[EnvironmentStatus], EnvironmentStatus]] = {}
        for key, want in desired.environments.items():
            if key in busy:
                continue
            have = observed.environments.get(key, ObservedEnvironment(key))
            changes[str(key)] = _converged_status(want, have)
        expires = {s.key: s.expires for s in config.environments} if desired.held else {}
        for key, why in desired.held.items():
            changes[str(key)] = _held_status(why, key, expires.get(key))
        if changes:
            self.status.modify_many(changes)

    # ------------------------------------------------------------------ one environment
    def reconcile_env(self, key: EnvKey, reasons: Iterable[str] = ()) -> float | None:
        """Bring one environment to its desired state; the seconds until it should run again
        (back-off after a failure), or None."""
        snapshot = self.snapshot
        if snapshot is None:
            return None
        want = snapshot.desired.environments.get(key)
        if key in snapshot.desired.held or key in snapshot.guarded:
            return None
        backoff = self._backoff.get(key)
        if backoff is not None and backoff.fingerprint == _fingerprint(want):
            if backoff.next_at == math.inf:
                return None  # held: the failure needs a change, not time
            wait = backoff.next_at - self._clock()
            if wait > 0:
                return wait
        try:
            # Never during a backup, restore or copy of the same environment: the operation's
            # end queues this environment again.
            with self.data.lifecycle.exclusive(key, wait=0):
                return self._run(key, want, snapshot)
        except OperationBusy as exc:
            # Run again once it is over (a trigger sent from inside the operation lands here).
            self._mark(key, Condition("Reconciling", False, "DataOperation", exc.message))
            return BUSY_RETRY

    def _run(
        self, key: EnvKey, want: DesiredEnvironment | None, snapshot: Snapshot
    ) -> float | None:
        """One run, during which a refresh that finds a newer revision of ``key`` ends the
        run's wait for a new container (``superseded_runs``)."""
        with self._guard:
            self._running_spec[key] = None if want is None else want.odoo_spec_hash()
            self.steps.superseded[key] = threading.Event()
        try:
            return self._run_steps(key, want, snapshot)
        finally:
            with self._guard:
                self._running_spec.pop(key, None)
                self.steps.superseded.pop(key, None)

    def _run_steps(
        self, key: EnvKey, want: DesiredEnvironment | None, snapshot: Snapshot
    ) -> float | None:
        config = snapshot.config
        current = "preflight"
        results: list[StepResult] = []
        error: OdooOpsError | None = None
        have = ObservedEnvironment(key)
        deploying = False
        try:
            self.data.recover(key)
            self._preflight(key, want, config)
            if want is not None:
                self._sync_ledger(want)
                self._settle_sleep(want)
            moved = False
            while True:
                observed = self.observe(config, key)
                have = observed.environments.get(key, ObservedEnvironment(key))
                actions, _kept = plan_environment(snapshot.desired, key, have, observed.images)
                if want is not None and any(a.kind in DEPLOYING for a in actions):
                    deploying = True
                    self.commit_statuses.post(
                        want, f"odooops/deploy {key.env}", "pending", "deploying"
                    )
                    if not any(a.kind is Kind.BUILD_IMAGE for a in actions):
                        self.commit_statuses.post(
                            want, "odooops/build", "success", "image reused: same inputs"
                        )
                try:
                    for action in actions:
                        current = f"{action.kind.value} {action.target}"
                        log.info("%s: %s (%s)", key, current, action.reason)
                        self._mark(key, Condition("Reconciling", True, "Applying", current))
                        results.append(self.steps.run(want, action))
                    break
                except DriverError as exc:
                    if exc.code != "port_in_use" or moved or want is None:
                        raise
                    # Something took the port after it was handed out: another port, once.
                    log.warning("%s: %s; moving to another port", key, exc.message)
                    snapshot = self._move_port(key, config, snapshot)
                    want, moved = snapshot.desired.environments.get(key), True
            self._woken(key)
        except OdooOpsError as exc:
            error = exc
        except Exception as exc:  # a bug must not kill the worker; it becomes a condition
            log.exception("%s: %s crashed", key, current)
            error = OdooOpsError(f"{current} crashed: {exc!r}", code="internal", retryable=True)
        finally:
            ready = self._after_run(key, want, snapshot, current, results, error)
            if want is not None:
                images.record_outcome(self.docker, self.ledger, want, deploying, ready, error)
            if deploying and want is not None:
                self.commit_statuses.post(
                    want,
                    f"odooops/deploy {key.env}",
                    "failure" if error is not None else "success",
                    f"{error.code}: {error.message}" if error is not None else "deployed",
                )
        if error is not None:
            return self._fail(key, want, error)
        self._backoff.pop(key, None)
        self.errors.pop(key, None)
        if want is None:
            self._forget(key)
        else:
            for other in snapshot.desired.environments.values():  # copies of this one
                if other.key.project == key.project and other.spec.db_source == key.env:
                    self.on_env(other.key, f"source {key} converged")
        return None

    def _preflight(self, key: EnvKey, want: DesiredEnvironment | None, config: StateConfig) -> None:
        """Both services answer, or nothing is changed (the run is retried when they do)."""
        self.docker.ping()
        server = want.server if want is not None else None
        if server is None and want is None:
            record = self.ledger.database(key)
            if record is not None and record.server in config.platform.database_servers:
                server = config.platform.database_servers[record.server]
        if server is not None:
            self.pg(server.name, config).ping()

    def _sync_ledger(self, want: DesiredEnvironment) -> None:
        """Protection and tier follow the applied commit: only a committed ``protected:
        false`` makes a protected environment's data removable."""
        record = self.ledger.database(want.key)
        if record is not None and (
            record.protected != want.spec.protected or record.tier != want.spec.tier.value
        ):
            self.ledger.update_database(
                want.key, protected=want.spec.protected, tier=want.spec.tier.value
            )

    def _settle_sleep(self, want: DesiredEnvironment) -> None:
        """Whether ``want`` falls asleep now (``reconciler.core.sleep``), decided in its own
        run so a deploy and a sleep never interleave. Asleep is recorded first, then the
        route shows the waking page, then the plan stops the containers: a kill between
        any two leaves the ledger saying asleep, and the next run finishes the job.
        An environment that can no longer sleep (no proxy, ``sleep_after`` null) wakes."""
        key, at = want.key, datetime.now(UTC)
        activity = self.ledger.activity(key)
        sleep_after = want.settings.sleep_after
        sleeps = want.routed and not want.spec.suspended  # routed: odooops.yaml has ingress
        if activity is None:
            if sleeps and sleep_after is not None:
                self.ledger.put_rest(key, Rest.AWAKE, at)  # first seen: a full sleep_after
            return
        if not sleeps or sleep_after is None:
            if activity.state is Rest.ASLEEP:
                log.info("%s: it can no longer sleep; waking it", key)
                self.ledger.put_rest(key, Rest.AWAKE if want.spec.suspended else Rest.WAKING, at)
            return
        if not should_sleep(activity, sleep_after, at):
            return
        log.info(
            "%s: no request for %s (sleep_after %s): asleep",
            key,
            span(at - activity.idle_since),
            span(sleep_after),
        )
        self.ledger.put_rest(key, Rest.ASLEEP, at)
        boundary("steps", "sleep: recorded asleep, route not switched yet")
        self._reload_routes(key)

    def _woken(self, key: EnvKey) -> None:
        """A waking environment whose run ended with Odoo running (its start waited for
        health and the smoke paths) is awake: its route goes back to Odoo."""
        activity = self.ledger.activity(key)
        if activity is None or activity.state is not Rest.WAKING:
            return
        if not self.docker.running(key.odoo_container):
            return
        took = (datetime.now(UTC) - activity.since).total_seconds()
        self.ledger.put_rest(key, Rest.AWAKE, datetime.now(UTC))
        log.info("%s: awake, %.1f s after it began waking", key, took)
        boundary("steps", "wake: recorded awake, route not switched yet")
        self._reload_routes(key)

    def _reload_routes(self, key: EnvKey) -> None:
        """The route of a sleep or a wake now; a failure is logged, and every pass's sync
        renders the routes from the ledger again."""
        try:
            self.routes.reload()
        except OdooOpsError as exc:
            log.error(
                "%s: its route was not switched (the next pass retries): %s", key, exc.render()
            )

    def _after_run(
        self,
        key: EnvKey,
        want: DesiredEnvironment | None,
        snapshot: Snapshot,
        current: str,
        results: list[StepResult],
        error: OdooOpsError | None,
    ) -> bool:
        """Status of the run, always: conditions, revisions, health (the Flux summary).
        Whether the environment converged Ready."""
        try:
            observed = self.observe(snapshot.config, key)
            have = observed.environments.get(key, ObservedEnvironment(key))
            pending, _ = plan_environment(snapshot.desired, key, have, observed.images)
        except OdooOpsError:
            have, pending = ObservedEnvironment(key), ()
        if want is None:
            if error is not None:
                self._mark(key, Condition("Ready", False, error.code, error.message))
            return False
        done = "; ".join(str(r) for r in results if r.outcome == "done")[:400]

        def change(status: EnvironmentStatus) -> EnvironmentStatus:
            status = replace(
                _base_status(status, want, have),
                sync=Sync.OUT_OF_SYNC if pending else Sync.SYNCED,
            )
            if error is not None:
                info = ErrorInfo.of(error)
                status = status.with_condition(
                    Condition("Reconciling", False, "Failed", f"{current}: {info.message}")
                ).with_condition(Condition("Ready", False, info.code, info.message))
                return status
            status = status.with_condition(Condition("Reconciling", False, "Succeeded", done))
            if pending:
                waiting = ", ".join(a.kind.value for a in pending)
                return status.with_condition(Condition("Ready", False, "Pending", waiting))
            status = replace(status, last_applied=now())
            return status.with_condition(
                Condition("Ready", True, "Converged", f"revision {want.revision[:12]}")
            )

        self.status.modify(str(key), change, key.project, key.env)
        return error is None and not pending

    def _fail(
        self, key: EnvKey, want: DesiredEnvironment | None, exc: OdooOpsError
    ) -> float | None:
        """Record the failure and say when to run again: with back-off while waiting may
        help, never while it cannot (``retryable`` False: a deploy that failed on its code
        runs again only when its inputs change, or on an explicit ``odooops reconcile``, so
        a failing production update does not take a backup on every pass)."""
        self.errors[key] = ErrorInfo.of(exc)
        report_failure(key, exc)
        fp = _fingerprint(want)
        old = self._backoff.get(key)
        attempts = old.attempts + 1 if old and old.fingerprint == fp else 1
        if not exc.retryable:
            self._backoff[key] = _Backoff(fp, attempts, math.inf)
            log.warning(
                "%s: not retried until its inputs change (a commit), or: odooops reconcile",
                key,
            )
            return None
        delay = retry_delay(exc, attempts)
        self._backoff[key] = _Backoff(fp, attempts, self._clock() + delay)
        return max(delay, 0.1)

    def _move_port(self, key: EnvKey, config: StateConfig, snapshot: Snapshot) -> Snapshot:
        """Its port was taken by something else: hand out another and resolve again, so the
        run goes on with a container on the new one."""
        self.status.move_port(str(key))
        desired = self.resolve_desired(config, fetch=False)
        moved = replace(snapshot, desired=desired)
        with self._refresh_lock:
            if self.snapshot is not None and self.snapshot.config.commit == config.commit:
                self.snapshot = replace(self.snapshot, desired=desired)
        return moved

    def release(self, key: EnvKey | None = None) -> None:
        """An explicit request to try again: environments held after a failure that waiting
        cannot fix (or one of them) run on the next trigger."""
        for held in [k for k in self._backoff if key is None or k == key]:
            self._backoff.pop(held, None)

    def _forget(self, key: EnvKey) -> None:
        """An environment is gone: its status, and its secrets unless its data is kept."""
        record = self.ledger.database(key)
        if record is not None and record.server == "dedicated":
            self.ledger.forget_database(key)  # its volume went with it
            record = None
        self.status.remove(str(key))
        self.ledger.forget_activity(key)
        self.data.mail.purge(key)
        if record is None:
            self.secrets.delete(f"db/{key}")
            self.data.admins.forget(key)

    def _mark(self, key: EnvKey, *conds: Condition) -> None:
        def change(status: EnvironmentStatus) -> EnvironmentStatus:
            for cond in conds:
                status = status.with_condition(cond)
            return status

        self.status.modify(str(key), change, key.project, key.env)

    def _final_backup(self, key: EnvKey, record: DatabaseRecord) -> None:
        """A database is never dropped without a last backup when backups are configured."""
        config = self.last_good_or_raise()
        if config.platform.backups.encryption_key is None:
            log.warning("%s: dropping the database without a final backup (no backup key)", key)
            return
        project = config.projects.get(key.project)
        server = config.platform.database_servers.get(record.server)
        if project is None or server is None:
            log.warning("%s: no final backup: its project or server is no longer declared", key)
            return
        try:
            tier = Tier(record.tier)
        except ValueError:
            tier = Tier.STAGING
        admin = Endpoint.of_server(server, key.database, self.secrets)
        site = Site(
            key=key,
            endpoint=admin,
            login=admin.as_login(key.role, self.password(key)),
            reach=database_reach(key, server),
            volume=key.filestore_volume,
            image=config.platform.dev_db_image,
            odoo_image=project.image,
            tier=tier,
            protected=False,
            instance=self.config.instance,
        )
        backup = self.data.lifecycle.backup(
            site, self.data.storage(), self.data.backup_key(), reason="final, before removal"
        )
        log.info("%s: final backup %s taken before the database is dropped", key, backup.id)

    # ---------------------------------------------------------------------- whole pass
    def reconcile(self) -> PassResult:
        """A refresh, then every environment that needs it, in dependency order; returns
        when all are done (``odooops daemon --once`` and tests; the daemon uses the queue)."""
        with self._pass_lock:
            started = time.monotonic()
            refreshed = self.refresh()
            if refreshed.error is not None or refreshed.snapshot is None:
                return PassResult("", Plan(), state_error=refreshed.error)
            desired = refreshed.snapshot.desired
            bound = max(1, refreshed.snapshot.config.platform.quotas.max_concurrent_deployments)
            tiers = {k: r.tier for k, r in self.ledger.databases().items()}
            for wave in _waves(refreshed.to_run, desired, tiers):
                with ThreadPoolExecutor(max_workers=min(bound, len(wave))) as pool:
                    list(pool.map(self.reconcile_env, wave))
            errors = {k: e for k, e in self.errors.items() if k in set(refreshed.to_run)}
            return PassResult(
                refreshed.snapshot.config.commit,
                refreshed.plan,
                errors,
                None,
                time.monotonic() - started,
            )

    def recover(self) -> list[str]:
        """At start-up: finish or roll back every open journal (a crash mid-swap).

        Recovery needs the state (where each server is); when it cannot be loaded yet, each
        environment's run recovers its own journal first, before anything else touches it.
        A helper container a kill left running (a filestore copy) is removed first: the
        move it worked for is rolled back or finished here, without it.
        """
        try:
            if left := self.docker.remove_leftover_helpers():
                log.warning("removed %d helper container(s) a previous run left", left)
        except OdooOpsError as exc:
            log.error("leftover helper containers not removed: %s", exc.render())
        if not self.ledger.entries():
            return []
        try:
            self.load_state(fetch=True)
            return self.data.recover()
        except OdooOpsError as exc:
            log.error("start-up recovery deferred to the environments' runs: %s", exc.render())
            return []


def observed_environment(
    key: EnvKey,
    listing: Listing,
    record: DatabaseRecord | None,
    server: str | None,
    exists: Mapping[str, set[str]],
    servers: frozenset[str],
    modules: Mapping[str, object] | None = None,
) -> ObservedEnvironment:
    """One environment as the planner sees it: the runtime's objects (their labels are the
    daemon's: only the Docker API writes them) joined with the ledger's word on its database.

    ``server`` is the shared server a desired environment's database belongs on (to find a
    database of that name the ledger does not know: ``owned=False``); ``exists`` the database
    names found on each server.
    """
    containers = listing.containers.get(key, {})
    volumes = listing.volumes.get(key, frozenset())
    database: ObservedDatabase | None = None
    if record is not None:
        if record.server == "dedicated":
            present = key.pgdata_volume in volumes
        elif record.server in servers:
            present = record.name in exists.get(record.server, set())
        else:
            present = True  # a server no longer declared: kept, never guessed away
        if present:
            database = ObservedDatabase(
                record.name,
                record.server,
                record.initialised,
                record.protected,
                owned=True,
                modules=modules,
            )
    elif Role.DB in containers:
        database = ObservedDatabase(key.database, "dedicated", False, owned=False)
    elif server is not None and key.database in exists.get(server, set()):
        database = ObservedDatabase(key.database, server, False, owned=False)
    protected = record.protected if record is not None else key in listing.protected
    return ObservedEnvironment(
        key=key,
        network=key in listing.networks,
        volumes=volumes,
        containers=containers,
        database=database,
        protected=protected,
        stale=listing.stale.get(key, ()),
        origin="branch" if key in listing.branch_made else "file",
    )


def _span_of(duration: timedelta | None) -> str:
    return "ever" if duration is None else span(duration)


def _asleep_since(activity: Activity | None) -> datetime | None:
    return activity.since if activity is not None and activity.state is Rest.ASLEEP else None


def _fingerprint(want: DesiredEnvironment | None) -> str:
    return "absent" if want is None else f"{want.state_commit}:{want.odoo_spec_hash()}"


def _waves(
    keys: Iterable[EnvKey], desired: Desired, tiers: Mapping[EnvKey, str] | None = None
) -> list[list[EnvKey]]:
    """Environments that copy another one being applied in the same pass go second, and a
    removed production goes last.

    A staging declared as a copy of production, both new, would otherwise fail its copy (the
    source is not initialised yet) and wait for a later pass. Removed in one commit, the
    other way round: production's role (which owns its golden copy, the source of copies)
    is dropped once the copies are gone, not while one still holds what depends on it.
    """
    todo = list(keys)
    first: list[EnvKey] = []
    second: list[EnvKey] = []
    last: list[EnvKey] = []
    for key in todo:
        want = desired.environments.get(key)
        if want is None and (tiers or {}).get(key) == Tier.PRODUCTION.value:
            last.append(key)
            continue
        source = (
            EnvKey(key.project, want.spec.db_source)
            if want is not None and want.spec.db_source != "fresh"
            else None
        )
        (second if source is not None and source in todo else first).append(key)
    return [w for w in (first, second, last) if w]


def _base_status(
    status: EnvironmentStatus, want: DesiredEnvironment, have: ObservedEnvironment
) -> EnvironmentStatus:
    odoo = have.container(Role.ODOO)
    if want.routed and (want.settings.sleep_after is not None or have.asleep):
        status = status.with_condition(_asleep_condition(want, have))
    return _promoted(
        want,
        replace(
            status,
            branch=want.spec.branch,
            tier=want.spec.tier.value,
            revision=want.revision,
            state_commit=want.state_commit,
            spec_hash=want.odoo_spec_hash(),
            url=want.url,
            health=health_of(want, have),
            serving=(odoo.revision or "") if odoo is not None and odoo.running else "",
            asleep_since=(
                have.asleep_since.isoformat(timespec="seconds") if have.asleep_since else ""
            ),
        ).with_expiry(str(want.key), want.spec.expires, datetime.now(UTC)),
    )


def _promoted(want: DesiredEnvironment, status: EnvironmentStatus) -> EnvironmentStatus:
    """The ``Promoted`` condition of a promoted environment (``promotion.image_check``),
    gone once it moved on from the promoted revision."""
    check = image_check(want)
    if check is None:
        kept = tuple(c for c in status.conditions if c.type != "Promoted")
        return status if kept == status.conditions else replace(status, conditions=kept)
    return status.with_condition(Condition("Promoted", check.same, check.reason, check.message))


def _asleep_condition(want: DesiredEnvironment, have: ObservedEnvironment) -> Condition:
    """``Asleep``: True while it sleeps (since when, and that a request wakes it)."""
    if have.asleep_since is not None:
        return Condition(
            "Asleep",
            True,
            "Idle",
            f"no request through the proxy for {_span_of(want.settings.sleep_after)}; its "
            "containers are stopped, the next request wakes it",
            since=have.asleep_since.isoformat(timespec="seconds"),
        )
    return Condition("Asleep", False, "Awake")


def _converged_status(
    want: DesiredEnvironment, have: ObservedEnvironment
) -> Callable[[EnvironmentStatus], EnvironmentStatus]:
    def change(status: EnvironmentStatus) -> EnvironmentStatus:
        status = replace(
            _base_status(status, want, have),
            sync=Sync.SYNCED,
            last_applied=status.last_applied or now(),
        )
        return status.with_condition(
            Condition("Ready", True, "Converged", f"revision {want.revision[:12]}")
        ).with_condition(Condition("Held", False, "Resolved"))

    return change


def _held_status(
    why: str, key: EnvKey, expires: datetime | None
) -> Callable[[EnvironmentStatus], EnvironmentStatus]:
    def change(status: EnvironmentStatus) -> EnvironmentStatus:
        return (
            replace(status, sync=Sync.UNKNOWN)
            .with_condition(Condition("Held", True, "CannotResolve", why))
            .with_expiry(str(key), expires, datetime.now(UTC))
        )

    return change


def superseded_runs(running: Mapping[EnvKey, str | None], desired: Desired) -> list[EnvKey]:
    """The runs in progress whose environment has since changed what it runs (another
    revision, image or setting: the Odoo spec hash) or was removed; a new state commit that
    leaves an environment's container as it was supersedes nothing."""
    found = []
    for key, spec in running.items():
        if spec is None:
            continue
        want = desired.environments.get(key)
        if want is None or want.odoo_spec_hash() != spec:
            found.append(key)
    return sorted(found)


def health_of(want: DesiredEnvironment, have: ObservedEnvironment) -> Health:
    """Worst health of the parts, in the words users know."""
    if want.spec.suspended:
        return Health.SUSPENDED
    if have.asleep:
        return Health.ASLEEP
    odoo = have.container(Role.ODOO)
    if odoo is None:
        return Health.MISSING
    if not odoo.running:
        return Health.DEGRADED
    if want.server is None:
        db = have.container(Role.DB)
        if db is None or not db.running:
            return Health.DEGRADED
    return {
        "healthy": Health.HEALTHY,
        "starting": Health.PROGRESSING,
        "unhealthy": Health.DEGRADED,
    }.get(odoo.health or "", Health.UNKNOWN)


__all__ = [
    "Engine",
    "EngineConfig",
    "PassResult",
    "Refresh",
    "Snapshot",
    "health_of",
    "superseded_runs",
]

"""The engine: one reconcile pass, level-triggered, from git to live state.

A pass recomputes everything from scratch (fetch -> validate -> resolve -> observe -> plan ->
apply -> observe -> status), so a missed webhook, a daemon restart or a manual ``docker rm`` is
healed by the next pass. Actions of one environment run serially, in plan order; environments
run in parallel, bounded by ``quotas.max_concurrent_deployments``. A failing environment never
stops the others; its failure becomes a status condition and a back-off, so a broken commit
is tried once, not in a tight loop, and a new commit is tried at once.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from reconciler.core import validation
from reconciler.core.config import load_state
from reconciler.core.desired import BranchHead, Inputs, resolve
from reconciler.core.errors import (
    DriverError,
    ErrorInfo,
    InvalidState,
    OdooOpsError,
    SourceError,
    sanitize,
)
from reconciler.core.model import Desired, DesiredEnvironment, EnvKey, Project, StateConfig, Tier
from reconciler.core.observed import Observed, ObservedDatabase, ObservedEnvironment, Role
from reconciler.core.planner import Action, Kind, Plan, plan
from reconciler.data.database.endpoint import Endpoint
from reconciler.data.lifecycle import OperationBusy, Site
from reconciler.data.operations import DataOps
from reconciler.drivers.docker import (
    PASSWORD_FILE,
    DockerDriver,
    DockerListing,
    ShellSession,
    database_reach,
)
from reconciler.drivers.postgres import DatabaseRecord, PostgresDriver
from reconciler.drivers.secrets import SecretStore
from reconciler.engine.metrics import Metrics
from reconciler.engine.schedules import DataSchedules
from reconciler.engine.status import (
    Condition,
    DaemonStatus,
    EnvironmentStatus,
    Health,
    StatusStore,
    Sync,
    now,
)
from reconciler.gitops.changes import UnknownEnvironment
from reconciler.gitops.gitsource import Credentials, GitSource

log = logging.getLogger("odooops.engine")

INIT_TIMEOUT = 1800.0
HEALTH_TIMEOUT = 300.0
DB_READY_TIMEOUT = 120.0
BACKOFF_START, BACKOFF_CAP = 5.0, 180.0


class DeployFailed(OdooOpsError):
    code = "deploy_failed"
    retryable = True


@dataclass(frozen=True)
class EngineConfig:
    state_url: str
    data_dir: Path
    instance: str = "default"
    state_branch: str = "main"
    docker_url: str | None = None
    health_timeout: float = HEALTH_TIMEOUT
    health_interval: int = 5
    read_only: bool = False  # plan only: no status or port allocation is written


@dataclass(frozen=True)
class PassResult:
    state_commit: str
    plan: Plan
    errors: Mapping[EnvKey, ErrorInfo] = field(default_factory=dict)
    state_error: ErrorInfo | None = None
    seconds: float = 0.0


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
        self.metrics = Metrics(self.status.all)
        self.docker = DockerDriver(config.instance, config.docker_url, config.health_interval)
        self.state_repo = GitSource(
            config.state_url, config.data_dir / "git", hint="--state-repo of odooops daemon"
        )
        self._apps: dict[str, GitSource] = {}
        self._pg: dict[str, PostgresDriver] = {}
        self._backoff: dict[EnvKey, _Backoff] = {}
        self._head_cache: dict[str, BranchHead] = {}
        self._build_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._clock = clock
        self._pass_lock = threading.Lock()
        self.last_good: StateConfig | None = None
        self.current: Desired | None = None  # what the last pass resolved (for data operations)
        self.on_change: Callable[[], None] = lambda: None  # the daemon's trigger
        self.data = DataOps(self)
        self.schedules = DataSchedules(
            self.data,
            lambda: self.current,
            self.status.all,
            self.is_initialised,
            lambda: self.last_good_or_raise().platform.backups.restore_test,
        )

    def close(self) -> None:
        """Stop the data workers and the mail catcher, release the Docker client."""
        self.schedules.close()
        self.data.close()
        self.docker.close()

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
        """Data of an environment changed outside a pass (a restore stopped its Odoo)."""
        self.on_change()

    def note(self, key: EnvKey, kind: str, ok: bool, reason: str, message: str = "") -> None:
        self.status.note(str(key), kind, ok, reason, message)

    def backed_up(self, key: EnvKey, finished: str, backup_id: str) -> None:
        self.status.update(
            str(key), key.project, key.env, last_backup=finished, last_backup_id=backup_id
        )

    def restore_tested(self, key: EnvKey, when: str) -> None:
        self.status.update(str(key), key.project, key.env, last_restore_test=when)

    def count(self, metric: str, result: str) -> None:
        counter = self.metrics.backups if metric == "backups" else self.metrics.restore_tests
        counter.labels(result).inc()

    # ------------------------------------------------------------------------- inputs
    def load_state(self, fetch: bool = True) -> StateConfig:
        """The head of the state branch if it validates; otherwise the last valid commit.

        Raises only when no valid commit has ever been seen (then nothing can be applied).
        """
        if fetch:
            self.state_repo.fetch()
        head = self.state_repo.branches().get(self.config.state_branch)
        if head is None:
            raise SourceError(
                f"branch {self.config.state_branch} not found in the state repository",
                code="state_branch_missing",
                retryable=True,
                remediation=f"git push <state-repo> {self.config.state_branch}",
            )
        if self.last_good is not None and self.last_good.commit == head:
            return self.last_good
        try:
            config = load_state(self.state_repo.read_tree(head), head, self.config.state_url)
        except InvalidState as exc:
            self._record_state_error(head, exc)
            fallback = self.last_good or self._previous_good()
            if fallback is None:
                raise
            self.last_good = fallback
            return fallback
        self.last_good = config
        self.status.set_daemon(replace(self.status.daemon, state_commit=head, state_error=None))
        return config

    def _record_state_error(self, head: str, exc: InvalidState) -> None:
        doc = exc.to_dict()
        doc["commit"] = head
        log.error("state commit %s rejected: %s", head[:12], exc.render())
        self.status.set_daemon(replace(self.status.daemon, state_error=doc))

    def _previous_good(self) -> StateConfig | None:
        commit = self.status.daemon.state_commit
        if not commit:
            return None
        try:
            return load_state(self.state_repo.read_tree(commit), commit, self.config.state_url)
        except OdooOpsError:
            return None

    def app_repo(self, project: Project) -> GitSource:
        repo = self._apps.get(project.name)
        if repo is None or repo.url != sanitize(project.repo_url):
            creds = Credentials(
                token=project.token.resolve() if project.token else None,
                ssh_key_path=self._ssh_key_path(project),
            )
            repo = GitSource(
                project.repo_url,
                self.config.data_dir / "git",
                creds,
                hint=f"repository.url in projects/{project.name}.yaml",
            )
            self._apps[project.name] = repo
        return repo

    def _ssh_key_path(self, project: Project) -> str | None:
        """libgit2 reads keys from files: a key given in an environment variable is written to
        a private file in the data directory (0600), never next to the git mirrors' config."""
        ref = project.ssh_key
        if ref is None:
            return None
        if ref.file is not None:
            return ref.file
        path = self.config.data_dir / "keys" / project.name
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(ref.resolve().strip() + "\n")
        return str(path)

    def pg(self, name: str, config: StateConfig) -> PostgresDriver:
        server = config.platform.database_servers[name]
        driver = self._pg.get(name)
        if driver is None or driver.server != server:
            driver = PostgresDriver(server, self.config.instance)
            self._pg[name] = driver
        return driver

    def resolve_desired(self, config: StateConfig, fetch: bool = True) -> Desired:
        apps: dict[str, GitSource | OdooOpsError] = {}
        heads: dict[str, dict[str, BranchHead]] = {}
        for project in config.projects.values():
            try:
                repo = self.app_repo(project)
                if fetch:
                    repo.fetch()
                apps[project.name] = repo
                heads[project.name] = self._heads(repo)
            except OdooOpsError as exc:
                apps[project.name] = exc
        base_images: dict[str, str] = {}
        for image in {p.image for p in config.projects.values()}:
            try:
                base_images[image] = self.docker.image_id(image)
            except DriverError as exc:
                log.error("%s", exc.render())
        busy = self._busy_ports(config)

        def port_for(key: EnvKey) -> int:
            return self.status.port_for(
                str(key), config.platform.port_start, config.platform.port_end, busy
            )

        return resolve(
            config,
            Inputs(
                apps=apps,
                heads=heads,
                base_images=base_images,
                port_for=port_for,
                load_app_config=_load_app_config,
                now=datetime.now(UTC),
            ),
        )

    def _heads(self, repo: GitSource) -> dict[str, BranchHead]:
        """Author and time of each branch head; commits are immutable, so cached by id."""
        out: dict[str, BranchHead] = {}
        for branch, sha in repo.branches().items():
            head = self._head_cache.get(sha)
            if head is None:
                info = repo.commit_info(sha)
                head = self._head_cache[sha] = BranchHead(info.author_email, info.committed_at)
            out[branch] = head
        return out

    def _busy_ports(self, config: StateConfig) -> set[int]:
        """Ports in the range that something else already listens on (never hand those out)."""
        owned = set(self.status.ports().values())
        busy: set[int] = set()
        for port in range(config.platform.port_start, config.platform.port_end + 1):
            if port in owned:
                continue
            if len(busy) > 64:
                break
            with socket.socket() as s:
                try:
                    s.bind((config.platform.publish_host, port))
                except OSError:
                    busy.add(port)
                else:
                    break
        return busy

    # -------------------------------------------------------------------------- observe
    def observe(self, config: StateConfig) -> Observed:
        """One listing of Docker objects and one query per database server."""
        listing = self.docker.observe()
        records: dict[EnvKey, tuple[str, DatabaseRecord]] = {}
        for name in config.platform.database_servers:
            records.update({k: (name, r) for k, r in self.pg(name, config).observe().items()})
        keys = (
            set(listing.networks)
            | set(listing.volumes)
            | set(listing.containers)
            | set(listing.stale)
            | set(records)
        )
        envs: dict[EnvKey, ObservedEnvironment] = {}
        for key in keys:
            envs[key] = self._observe_env(key, listing, records.get(key))
        return Observed(envs, listing.images)

    def _observe_env(
        self, key: EnvKey, listing: DockerListing, record: tuple[str, DatabaseRecord] | None
    ) -> ObservedEnvironment:
        containers = listing.containers.get(key, {})
        database = None
        if record is not None:
            server, rec = record
            database = ObservedDatabase(rec.name, server, rec.initialised, rec.protected)
        elif Role.DB in containers:
            database = self._observe_dedicated(key, containers)
        return ObservedEnvironment(
            key=key,
            network=key in listing.networks,
            volumes=listing.volumes.get(key, frozenset()),
            containers=containers,
            database=database,
            protected=key in listing.protected,
            stale=listing.stale.get(key, ()),
            origin="branch" if key in listing.branch_made else "file",
        )

    def _observe_dedicated(
        self, key: EnvKey, containers: Mapping[Role, Any]
    ) -> ObservedDatabase | None:
        """A dedicated database is initialised once an Odoo container exists for it; otherwise
        ask the database itself (only in that rare case, to keep no-op passes cheap)."""
        db = containers[Role.DB]
        if Role.ODOO in containers:
            return ObservedDatabase(key.database, "dedicated", True, db.protected)
        if not db.running or db.health != "healthy":
            return None
        labels = self._dedicated_labels(key)
        if labels is None:
            return None
        return ObservedDatabase(
            key.database, "dedicated", labels.get("odooops.initialised") == "true", db.protected
        )

    def _dedicated_labels(self, key: EnvKey) -> dict[str, str] | None:
        try:
            out = self.docker.exec_psql(
                key.db_container,
                key.role,
                "postgres",
                f"SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database "
                f"WHERE datname = '{key.database}'",
            )
        except DriverError:
            return None
        if not out:
            return None
        try:
            value = json.loads(out)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    # ----------------------------------------------------------------------------- pass
    def plan(self, fetch: bool = True) -> tuple[StateConfig, Desired, Observed, Plan]:
        config = self.load_state(fetch)
        desired = self.resolve_desired(config, fetch)
        observed = self.observe(config)
        return config, desired, observed, plan(desired, observed)

    def reconcile(self) -> PassResult:
        """One full pass. Serialised: a webhook arriving mid-pass queues the next one."""
        with self._pass_lock:
            started = time.monotonic()
            try:
                config, desired, observed, the_plan = self.plan()
                self.current = desired
            except OdooOpsError as exc:
                info = ErrorInfo.of(exc)
                log.error("reconcile pass failed before planning: %s", exc.render())
                self.status.set_daemon(replace(self.status.daemon, last_poll=now()))
                self.metrics.passes.labels("failed").inc()
                self.metrics.pass_seconds.observe(time.monotonic() - started)
                return PassResult("", Plan(), state_error=info)
            errors = self.apply(config, desired, the_plan)
            after = self.observe(config) if the_plan.has_changes else observed
            final = plan(desired, after)
            self._write_status(desired, after, final, errors)
            seconds = time.monotonic() - started
            self.metrics.pass_seconds.observe(seconds)
            self.metrics.passes.labels("errors" if errors else "ok").inc()
            daemon = self.status.daemon
            self.metrics.state_rejected.set(1 if daemon.state_error else 0)
            self.status.set_daemon(
                DaemonStatus(
                    state_commit=config.commit,
                    state_error=daemon.state_error,
                    last_poll=now(),
                    last_pass_seconds=round(seconds, 3),
                    passes=daemon.passes + 1,
                )
            )
            return PassResult(config.commit, the_plan, errors, None, seconds)

    def apply(
        self, config: StateConfig, desired: Desired, the_plan: Plan
    ) -> dict[EnvKey, ErrorInfo]:
        errors: dict[EnvKey, ErrorInfo] = {}
        work = the_plan.by_env()
        if not work:
            return errors
        bound = max(1, config.platform.quotas.max_concurrent_deployments)
        for wave in _waves(work, desired):
            with ThreadPoolExecutor(
                max_workers=min(bound, len(wave)), thread_name_prefix="apply"
            ) as pool:
                futures = {
                    key: pool.submit(
                        self._apply_env, config, desired.environments.get(key), actions
                    )
                    for key, actions in wave.items()
                    if self._due(key, desired.environments.get(key))
                }
                self.metrics.queue_depth.set(len(futures))
                for key, future in futures.items():
                    error = future.result()
                    self.metrics.queue_depth.dec()
                    if error is not None:
                        errors[key] = error
        self.metrics.queue_depth.set(0)
        return errors

    def _fingerprint(self, want: DesiredEnvironment | None) -> str:
        return "absent" if want is None else f"{want.state_commit}:{want.odoo_spec_hash()}"

    def _due(self, key: EnvKey, want: DesiredEnvironment | None) -> bool:
        """Back off a failing environment unless its inputs changed (a new commit retries now)."""
        backoff = self._backoff.get(key)
        if backoff is None or backoff.fingerprint != self._fingerprint(want):
            return True
        return self._clock() >= backoff.next_at

    def _apply_env(
        self, config: StateConfig, want: DesiredEnvironment | None, actions: tuple[Action, ...]
    ) -> ErrorInfo | None:
        key = actions[0].key
        current = ""
        try:
            # Never during a backup, restore or copy of the same environment: this pass leaves
            # it alone (no back-off) and the operation's end triggers the next pass.
            with self.data.lifecycle.exclusive(key, wait=0):
                for action in actions:
                    current = f"{action.kind.value} {action.target}"
                    log.info("%s: %s (%s)", key, current, action.reason)
                    self._mark(key, want, Condition("Reconciling", True, "Applying", current))
                    self._step(config, want, action)
        except OperationBusy as exc:
            if current:  # raised by a step, not by the lock of this environment
                return self._failed(key, want, current, exc)
            self._mark(key, want, Condition("Reconciling", False, "DataOperation", exc.message))
            return None
        except OdooOpsError as exc:
            return self._failed(key, want, current, exc)
        except Exception as exc:  # a bug must not kill the loop; it becomes a condition
            info = ErrorInfo.of(exc)
            log.exception("%s: %s crashed", key, current)
            self._fail(key, want)
            self._mark(key, want, Condition("Ready", False, "InternalError", info.message))
            return info
        self._backoff.pop(key, None)
        if want is None:
            self.status.remove(str(key))
            self.secrets.delete(f"db/{key}")
            self.data.mail.purge(key)
        else:
            self._mark(key, want, Condition("Reconciling", False, "Succeeded", ""))
        return None

    def _failed(
        self, key: EnvKey, want: DesiredEnvironment | None, current: str, exc: OdooOpsError
    ) -> ErrorInfo:
        info = ErrorInfo.of(exc)
        log.error("%s: %s failed: %s", key, current, exc.render())
        self._fail(key, want)
        self._mark(
            key,
            want,
            Condition("Reconciling", False, "Failed", f"{current}: {info.message}"),
            Condition("Ready", False, info.code, info.message),
        )
        return info

    def _fail(self, key: EnvKey, want: DesiredEnvironment | None) -> None:
        fp = self._fingerprint(want)
        old = self._backoff.get(key)
        attempts = old.attempts + 1 if old and old.fingerprint == fp else 1
        delay = min(BACKOFF_CAP, BACKOFF_START * 2 ** (attempts - 1))
        self._backoff[key] = _Backoff(fp, attempts, self._clock() + delay)

    def _mark(self, key: EnvKey, want: DesiredEnvironment | None, *conds: Condition) -> None:
        status = self.status.get(str(key)) or EnvironmentStatus(key.project, key.env)
        for cond in conds:
            status = status.with_condition(cond)
        self.status.put(str(key), status)

    def open_shell(self, key: EnvKey, kind: str) -> ShellSession:
        """``bash`` or ``odoo shell`` in the Odoo container, ``psql`` where the database is.

        Credentials are read inside the container from its password file, so they never
        travel through the API or show in ``docker inspect`` of the exec.
        """
        status = self.status.get(str(key))
        if status is None or not status.tier:
            raise UnknownEnvironment(
                f"environment {key} is not known", remediation="odooops env list"
            )
        docker = self.docker
        pw = f'PGPASSWORD="$(cat {PASSWORD_FILE})"'
        if kind == "bash":
            return docker.open_shell(key.odoo_container, ["bash"])
        if kind == "psql" and Tier(status.tier).dedicated_database:
            return docker.open_shell(key.db_container, ["psql", "-U", key.role, "-d", key.database])
        if kind == "psql":
            return docker.open_shell(
                key.odoo_container,
                [
                    "sh",
                    "-c",
                    (f'{pw} exec psql -h "$HOST" -p "$PORT" -U "$USER" -d {key.database}'),
                ],
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
        )

    # ---------------------------------------------------------------------------- steps
    def _step(self, config: StateConfig, want: DesiredEnvironment | None, action: Action) -> None:
        key, kind = action.key, action.kind
        d = self.docker
        if (
            kind is Kind.REMOVE_STALE
            or kind is Kind.REMOVE_ODOO
            or kind is Kind.REMOVE_DB_CONTAINER
        ):
            d.remove_container(action.target)
        elif kind is Kind.REMOVE_VOLUME:
            d.remove_volume(action.target)
        elif kind is Kind.REMOVE_NETWORK:
            d.remove_network(action.target)
        elif kind is Kind.DROP_DATABASE:
            record = self._find_server_of(config, key)
            if record is not None:
                self._final_backup(config, key, record)
                record.drop(key)
        else:
            assert want is not None, f"{kind} needs a desired environment"
            self._converge_step(want, action)

    def _find_server_of(self, config: StateConfig, key: EnvKey) -> PostgresDriver | None:
        for name in config.platform.database_servers:
            driver = self.pg(name, config)
            if key in driver.observe():
                return driver
        return None

    def _final_backup(self, config: StateConfig, key: EnvKey, driver: PostgresDriver) -> None:
        """A database is never dropped without a last backup when backups are configured."""
        if config.platform.backups.encryption_key is None:
            log.warning("%s: dropping the database without a final backup (no backup key)", key)
            return
        project = config.projects.get(key.project)
        if project is None:
            log.warning("%s: no final backup: its project is no longer declared", key)
            return
        admin = Endpoint.of_server(driver.server, key.database)
        site = Site(
            key=key,
            endpoint=admin,
            login=admin.as_login(key.role, self._password(key)),
            reach=database_reach(key, driver.server),
            volume=key.filestore_volume,
            image=config.platform.dev_db_image,
            odoo_image=project.image,
            tier=_last_tier(self.status.get(str(key))),
            protected=False,
            instance=self.config.instance,
        )
        record = self.data.lifecycle.backup(
            site, self.data.storage(), self.data.backup_key(), reason="final, before removal"
        )
        log.info("%s: final backup %s taken before the database is dropped", key, record.id)

    def _password(self, key: EnvKey) -> str:
        return self.secrets.get_or_create(f"db/{key}")

    def password(self, key: EnvKey) -> str:
        return self._password(key)

    def _converge_step(self, want: DesiredEnvironment, action: Action) -> None:
        key, kind, d = want.key, action.kind, self.docker
        protected = want.spec.protected
        if kind is Kind.CREATE_NETWORK:
            d.create_network(key, protected, want.spec.origin)
        elif kind is Kind.CREATE_VOLUME:
            d.create_volume(key, action.target, protected)
        elif kind is Kind.CREATE_DB_CONTAINER:
            d.create_db_container(want, self._password(key))
            self._wait(key.db_container, DB_READY_TIMEOUT)
        elif kind is Kind.REPLACE_DB_CONTAINER:
            d.remove_container(key.db_container)
            d.create_db_container(want, self._password(key))
            self._wait(key.db_container, DB_READY_TIMEOUT)
        elif kind is Kind.START_DB_CONTAINER:
            d.start(key.db_container)
            self._wait(key.db_container, DB_READY_TIMEOUT)
        elif kind is Kind.CREATE_DATABASE:
            self._create_database(want)
        elif kind is Kind.RECREATE_DATABASE:
            self._drop_uninitialised(want)
            self._create_database(want)
        elif kind is Kind.BUILD_IMAGE:
            self._build(want)
        elif kind is Kind.INIT_DATABASE:
            self._init_database(want)
        elif kind is Kind.UPDATE_MODULES:
            if want.spec.protected or want.spec.tier is Tier.PRODUCTION:
                # Migrations cannot be undone: the way back is this backup.
                self.data.backup_before(want, f"before update to {want.revision[:12]}")
            mods = ",".join(m for m in want.modules if m != "base") or "base"
            self._run_odoo(
                want,
                ["-d", key.database, "-i", mods, "-u", mods, "--stop-after-init"],
                "module update",
            )
        elif kind is Kind.CREATE_ODOO:
            self.data.ensure_neutralized(want)
            d.remove_container(key.odoo_container)
            d.create_odoo(want, self._password(key))
            d.start(key.odoo_container)
            self._wait_odoo(key.odoo_container, self._password(key))
        elif kind is Kind.REPLACE_ODOO:
            self._replace_odoo(want)
        elif kind is Kind.START_ODOO:
            self.data.ensure_neutralized(want)
            d.start(key.odoo_container)
            self._wait_odoo(key.odoo_container, self._password(key))
        elif kind is Kind.STOP_ODOO:
            d.stop(key.odoo_container)
        else:  # pragma: no cover - the planner has no other kinds
            raise AssertionError(kind)

    def _build(self, want: DesiredEnvironment) -> None:
        """Build once per tag: environments on the same tree share the image (and the lock)."""
        with self._locks_guard:
            lock = self._build_locks.setdefault(want.image, threading.Lock())
        with lock:
            if self.docker.has_image(want.image):
                return
            repo = self._apps[want.project.name]
            self.docker.build_image(
                want.image,
                want.project.image,
                repo.archive(want.revision, root="app"),
                {"odooops.project": want.project.name, "odooops.revision": want.revision},
            )

    def _wait(self, name: str, timeout: float) -> None:
        ok, detail = self.docker.wait_healthy(name, timeout)
        if not ok:
            raise DeployFailed(
                f"{name} did not become ready: {detail}", remediation=f"docker logs {name}"
            )

    def _wait_odoo(self, name: str, password: str) -> None:
        ok, detail = self.docker.wait_healthy(name, self.config.health_timeout)
        if not ok:
            # The log tail reaches status and errors: the password is cut out of it first.
            tail = sanitize(self.docker.logs(name, 15).replace(password, "***"))
            raise DeployFailed(
                f"{name} is not healthy: {detail}\n{tail}", remediation=f"docker logs {name}"
            )

    def _create_database(self, want: DesiredEnvironment) -> None:
        key = want.key
        if want.server is not None:
            self.pg(want.server.name, self.last_good_or_raise()).create(
                key, self._password(key), want.spec.protected
            )
            return
        self._wait(key.db_container, DB_READY_TIMEOUT)
        labels = self._dedicated_labels(key)
        if not labels:
            self._comment_dedicated(want, initialised=False)

    def _comment_dedicated(self, want: DesiredEnvironment, initialised: bool) -> None:
        key = want.key
        doc = json.dumps(
            {
                "odooops.instance": self.config.instance,
                "odooops.project": key.project,
                "odooops.env": key.env,
                "odooops.initialised": str(initialised).lower(),
                "odooops.protected": str(want.spec.protected).lower(),
            },
            sort_keys=True,
        )
        self.docker.exec_psql(
            key.db_container,
            key.role,
            "postgres",
            f"COMMENT ON DATABASE \"{key.database}\" IS '{doc}'",
        )

    def _drop_uninitialised(self, want: DesiredEnvironment) -> None:
        """Only ever called for a database whose labels say it never finished initialising."""
        key = want.key
        if want.server is not None:
            self.pg(want.server.name, self.last_good_or_raise()).drop_database(key)
        else:
            self.docker.exec_psql(
                key.db_container,
                key.role,
                "postgres",
                f'DROP DATABASE IF EXISTS "{key.database}" WITH (FORCE)',
            )
            self.docker.exec_psql(
                key.db_container,
                key.role,
                "postgres",
                f'CREATE DATABASE "{key.database}" OWNER "{key.role}"',
            )

    def is_initialised(self, want: DesiredEnvironment) -> bool:
        """Asked live (not from the last pass): data operations must not act on a guess."""
        try:
            return self._is_initialised(want)
        except OdooOpsError:
            return False

    def _is_initialised(self, want: DesiredEnvironment) -> bool:
        key = want.key
        if want.server is not None:
            rec = self.pg(want.server.name, self.last_good_or_raise()).observe().get(key)
            return rec is not None and rec.initialised
        labels = self._dedicated_labels(key)
        return labels is not None and labels.get("odooops.initialised") == "true"

    def _init_database(self, want: DesiredEnvironment) -> None:
        if self._is_initialised(want):  # re-checked live: never initialise twice
            return
        if want.spec.db_source != "fresh":
            # A sanitised copy of the source, then the target's own code updates it.
            self.data.copy_for_init(want)
            mods = ",".join(m for m in want.modules if m != "base") or "base"
            self._run_odoo(
                want,
                ["-d", want.key.database, "-i", mods, "-u", mods, "--stop-after-init"],
                "module update of the copy",
            )
        else:
            args = ["-d", want.key.database, "-i", ",".join(want.modules), "--stop-after-init"]
            # Odoo 19 loads demo data only when asked; older habits pass --without-demo too.
            args.append("--with-demo" if want.settings.demo else "--without-demo=all")
            self._run_odoo(want, args, "database initialisation")
        if want.server is not None:
            self.pg(want.server.name, self.last_good_or_raise()).mark_initialised(
                want.key, want.spec.protected
            )
        else:
            self._comment_dedicated(want, initialised=True)

    def _run_odoo(self, want: DesiredEnvironment, args: list[str], what: str) -> None:
        code, logs = self.docker.run_once(want, self._password(want.key), args, INIT_TIMEOUT)
        if code != 0:
            raise DeployFailed(
                f"{what} failed (odoo {' '.join(args)} exited {code}):\n{logs[-1500:]}",
                retryable=False,
                remediation=f"read the log above: fix the code of revision {want.revision[:12]} "
                f"and push, or fix database_servers in odooops.yaml; odooops status {want.key}",
            )

    def _replace_odoo(self, want: DesiredEnvironment) -> None:
        """Start the new container; only when it is healthy is the old one removed.

        The old container is kept (stopped, renamed) until then, so a failed rollout puts the
        previous revision back in service instead of leaving the environment down.
        """
        d, name = self.docker, want.key.odoo_container
        self.data.ensure_neutralized(want)
        previous = f"{name}-previous"
        d.remove_container(previous)
        d.rename(name, previous)
        d.stop(previous)
        try:
            d.create_odoo(want, self._password(want.key))
            d.start(name)
            self._wait_odoo(name, self._password(want.key))
        except OdooOpsError as exc:
            d.remove_container(name)
            d.rename(previous, name)
            d.start(name)
            raise DeployFailed(
                f"rollout of revision {want.revision[:12]} failed; the previous container is "
                f"serving again. {exc.message}",
                remediation=exc.remediation,
            ) from exc
        d.remove_container(previous)

    def last_good_or_raise(self) -> StateConfig:
        if self.last_good is None:
            raise OdooOpsError("no valid state commit loaded", code="no_state")
        return self.last_good

    # --------------------------------------------------------------------------- status
    def _write_status(
        self, desired: Desired, observed: Observed, final: Plan, errors: Mapping[EnvKey, ErrorInfo]
    ) -> None:
        pending = final.by_env()
        updates: dict[str, EnvironmentStatus] = {}
        for key, want in desired.environments.items():
            have = observed.environments.get(key, ObservedEnvironment(key))
            status = self.status.get(str(key)) or EnvironmentStatus(key.project, key.env)
            status = replace(
                status,
                branch=want.spec.branch,
                tier=want.spec.tier.value,
                revision=want.revision,
                state_commit=want.state_commit,
                spec_hash=want.odoo_spec_hash(),
                url=want.url,
                sync=Sync.OUT_OF_SYNC if key in pending else Sync.SYNCED,
                health=health_of(want, have),
            )
            if key not in pending:
                status = replace(status, last_applied=status.last_applied or now())
                status = status.with_condition(
                    Condition("Ready", True, "Converged", f"revision {want.revision[:12]}")
                )
            elif key not in errors:
                waiting = ", ".join(a.kind.value for a in pending[key])
                status = status.with_condition(Condition("Ready", False, "Pending", waiting))
            status = status.with_condition(Condition("Held", False, "Resolved"))
            updates[str(key)] = status
        for key, why in desired.held.items():
            status = self.status.get(str(key)) or EnvironmentStatus(key.project, key.env)
            status = replace(status, sync=Sync.UNKNOWN).with_condition(
                Condition("Held", True, "CannotResolve", why)
            )
            updates[str(key)] = status
        self.status.put_many(updates)


def _last_tier(status: EnvironmentStatus | None) -> Tier:
    """The tier an environment had when it was last seen (it is no longer declared)."""
    try:
        return Tier(status.tier) if status is not None and status.tier else Tier.STAGING
    except ValueError:
        return Tier.STAGING


def _waves(
    work: Mapping[EnvKey, tuple[Action, ...]], desired: Desired
) -> list[dict[EnvKey, tuple[Action, ...]]]:
    """Environments that copy another one being applied in the same pass go second.

    A staging declared as a copy of production, both new, would otherwise fail its copy (the
    source is not initialised yet) and wait for a later pass.
    """
    first: dict[EnvKey, tuple[Action, ...]] = {}
    second: dict[EnvKey, tuple[Action, ...]] = {}
    for key, actions in work.items():
        want = desired.environments.get(key)
        source = (
            EnvKey(key.project, want.spec.db_source)
            if want is not None and want.spec.db_source != "fresh"
            else None
        )
        (second if source is not None and source in work else first)[key] = actions
    return [w for w in (first, second) if w]


def health_of(want: DesiredEnvironment, have: ObservedEnvironment) -> Health:
    """Worst health of the parts, in the words users know."""
    if want.spec.suspended:
        return Health.SUSPENDED
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


@functools.lru_cache(maxsize=4096)
def _load_app_config(content: bytes, label: str) -> Mapping[str, Any]:
    """Validated ``.odooops.yaml``; cached because a commit's file never changes and a pass
    would otherwise re-validate it for every environment on that commit."""
    doc = validation.validate_app_config(content, label)
    data = doc.data or {}
    return MappingProxyType(data) if isinstance(data, dict) else MappingProxyType({})


__all__ = ["Engine", "EngineConfig", "PassResult", "health_of"]

"""In-memory implementations of ``Runtime`` and ``DatabaseAdmin``, for fast tests of the engine.

They keep state the way the real drivers do (a created container exists until removed, a
started one runs, a database exists until dropped), so a test states a situation, runs the
engine's steps, and reads the resulting world; nothing asserts which calls were made. Failures
are injected as data: an image that does not build, a module update that exits 1, a health
check that never passes, a server that is down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from reconciler.core.errors import DriverError
from reconciler.core.imagegc import Image
from reconciler.core.model import DesiredEnvironment, EnvKey
from reconciler.core.observed import ObservedContainer, Role
from reconciler.drivers.protocols import ImageListing, Listing, OneOff, RuntimeEvent

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class MemoryContainer:
    name: str
    key: EnvKey
    role: str
    state: str = "created"
    health: str | None = None
    spec_hash: str | None = None
    revision: str | None = None
    image: str | None = None
    port: int | None = None
    protected: bool = False
    password: str = ""
    database: str | None = None  # a trial server's database (None: the environment's)


@dataclass
class MemoryRuntime:
    """A Docker engine in a dict. ``unhealthy`` images never pass their health check,
    ``failing_paths`` never pass a smoke check, ``exit_codes`` maps an argument (``-u``,
    ``-i``) to the exit code of a one-off run."""

    networks: dict[EnvKey, dict[str, str]] = field(default_factory=dict)
    volumes: dict[str, tuple[EnvKey, bool]] = field(default_factory=dict)
    containers: dict[str, MemoryContainer] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)
    unhealthy: set[str] = field(default_factory=set)
    failing_paths: set[str] = field(default_factory=set)  # smoke paths that answer 500
    unbuildable: set[str] = field(default_factory=set)
    exit_codes: dict[str, int] = field(default_factory=dict)
    runs: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    modules: dict[str, dict[str, str]] = field(default_factory=dict)  # database -> name -> state
    uninstallable: set[str] = field(default_factory=set)
    down: bool = False
    pending_events: list[RuntimeEvent] = field(default_factory=list)
    created: dict[str, datetime] = field(default_factory=dict)  # image tag -> built at

    def _up(self) -> None:
        if self.down:
            raise DriverError(
                "the Docker engine is unreachable", code="docker_unreachable", remediation="x"
            )

    def ping(self) -> None:
        self._up()

    def observe(self, key: EnvKey | None = None) -> Listing:
        self._up()
        nets = {k for k in self.networks if key in (None, k)}
        volumes: dict[EnvKey, set[str]] = {}
        protected = {k for k in nets if self.networks[k].get("protected") == "true"}
        for name, (k, prot) in self.volumes.items():
            if key in (None, k):
                volumes.setdefault(k, set()).add(name)
                if prot:
                    protected.add(k)
        containers: dict[EnvKey, dict[Role, ObservedContainer]] = {}
        stale: dict[EnvKey, list[str]] = {}
        for c in self.containers.values():
            if key not in (None, c.key):
                continue
            expected = {Role.ODOO: c.key.odoo_container, Role.DB: c.key.db_container}
            if c.protected:
                protected.add(c.key)
            if c.role not in (Role.ODOO, Role.DB) or c.name != expected[Role(c.role)]:
                stale.setdefault(c.key, []).append(c.name)
                continue
            containers.setdefault(c.key, {})[Role(c.role)] = ObservedContainer(
                c.name,
                Role(c.role),
                c.state,
                c.health,
                c.spec_hash,
                c.revision,
                c.image,
                c.port,
                c.protected,
            )
        return Listing(
            networks=frozenset(nets),
            volumes={k: frozenset(v) for k, v in volumes.items()},
            containers=containers,
            stale={k: tuple(sorted(v)) for k, v in stale.items()},
            protected=frozenset(protected),
            branch_made=frozenset(k for k in nets if self.networks[k].get("origin") == "branch"),
            images=frozenset(self.images),
        )

    def create_network(self, key: EnvKey, protected: bool, origin: str = "file") -> None:
        self._up()
        self.networks.setdefault(key, {"protected": str(protected).lower(), "origin": origin})

    def remove_network(self, name: str) -> None:
        self._up()
        for key in [k for k in self.networks if k.network == name]:
            del self.networks[key]

    def create_volume(self, key: EnvKey, name: str, protected: bool) -> None:
        self._up()
        self.volumes.setdefault(name, (key, protected))

    def remove_volume(self, name: str) -> None:
        self._up()
        self.volumes.pop(name, None)

    def has_image(self, ref: str) -> bool:
        return ref in self.images

    def image_id(self, ref: str, *, pull: bool = True) -> str:
        return f"sha256:{abs(hash(ref)):x}"

    def list_images(self, *, shared: bool = False) -> ImageListing:
        """Every image, built ``created`` (by tag) or at the epoch; users from containers."""
        self._up()
        users: dict[str, set[str]] = {}
        for c in self.containers.values():
            if c.image is not None:
                users.setdefault(self.image_id(c.image), set()).add(str(c.key))
        images = tuple(
            Image(self.image_id(tag), (tag,), self.created.get(tag, EPOCH), size=0, shared_size=0)
            for tag in sorted(self.images)
        )
        return ImageListing(images, {k: tuple(sorted(v)) for k, v in users.items()})

    def remove_image(self, image_id: str) -> None:
        self._up()
        if any(c.image and self.image_id(c.image) == image_id for c in self.containers.values()):
            raise DriverError(f"image {image_id} is in use", code="image_in_use", retryable=True)
        self.images -= {tag for tag in self.images if self.image_id(tag) == image_id}

    def build_image(
        self,
        tag: str,
        context: bytes,
        labels: Mapping[str, str],
        build_args: Mapping[str, str] | None = None,
        *,
        on_line: Callable[[str], None] | None = None,
        deadline: float | None = None,
    ) -> str:
        self._up()
        if tag in self.unbuildable:
            raise DriverError("image build failed", code="build_failed", retryable=False)
        self.images.add(tag)
        return "built"

    def create_odoo(
        self,
        want: DesiredEnvironment,
        password: str,
        name: str | None = None,
        *,
        trial_database: str | None = None,
    ) -> None:
        self._up()
        name = name or want.key.odoo_container
        if name in self.containers:
            raise DriverError(f"container {name} exists")
        self.containers[name] = MemoryContainer(
            name,
            want.key,
            Role.ODOO,
            spec_hash=want.odoo_spec_hash(),
            revision=want.revision,
            image=want.image,
            port=want.port,
            protected=want.spec.protected,
            password=password,
            database=trial_database,
        )

    def create_db_container(self, want: DesiredEnvironment, password: str) -> None:
        self._up()
        self.containers[want.key.db_container] = MemoryContainer(
            want.key.db_container,
            want.key,
            Role.DB,
            state="running",
            health="healthy",
            spec_hash=want.db_spec_hash(),
            protected=want.spec.protected,
            password=password,
        )

    def run_once(
        self,
        want: DesiredEnvironment,
        password: str,
        args: Sequence[str],
        timeout: float,
        cancel: threading.Event | None = None,
        *,
        command: str | None = None,
        stdout: bool = False,
    ) -> OneOff:
        """Runs leave what real Odoo leaves in ``modules``: ``-i``/``-u`` names installed,
        except the ``uninstallable`` ones (exit 0, as Odoo does) or when ``exit_codes``
        fails the run (nothing changes)."""
        self._up()
        self.runs.append((str(want.key), (*((command,) if command else ()), *args)))
        code = max((self.exit_codes.get(a, 0) for a in args), default=0)
        if code == 0 and command is None:
            database = args[args.index("-d") + 1] if "-d" in args else want.key.database
            installed = self.modules.setdefault(database, {})
            for flag in ("-i", "-u"):
                if flag in args:
                    for name in args[args.index(flag) + 1].split(","):
                        if name in self.uninstallable:
                            installed[name] = "uninstallable"
                        else:
                            installed[name] = "installed"
        return OneOff(
            code,
            "" if code == 0 else "odoo failed",
            oom_killed=code == 137,
            memory_limit=want.settings.init_memory,
        )

    def wait_healthy(
        self, name: str, timeout: float, cancel: threading.Event | None = None
    ) -> tuple[bool, str]:
        self._up()
        c = self.containers.get(name)
        if c is None or c.state != "running":
            return False, "container exited with code 1"
        if c.health == "unhealthy":
            return False, "health check on /web/health failed"
        return True, "healthy"

    def smoke(self, name: str, paths: Sequence[str]) -> tuple[bool, str]:
        self._up()
        bad = [p for p in paths if p in self.failing_paths]
        if bad:
            return False, "; ".join(f"{p} answered 500" for p in bad)
        return True, "answered"

    def logs(self, name: str, tail: int = 40) -> str:
        return ""

    def start(self, name: str) -> None:
        self._up()
        c = self.containers[name]
        c.state = "running"
        c.health = "unhealthy" if c.image in self.unhealthy else "healthy"

    def stop(self, name: str, timeout: int = 20) -> None:
        self._up()
        if name in self.containers:
            self.containers[name].state = "exited"

    def rename(self, name: str, new_name: str) -> None:
        self._up()
        c = self.containers.pop(name)
        self.containers[new_name] = replace(c, name=new_name)

    def remove_container(self, name: str) -> None:
        self._up()
        self.containers.pop(name, None)

    def exec_psql(self, container_name: str, user: str, database: str, sql: str) -> str:
        raise DriverError("no psql in memory")

    def events(self, stop: threading.Event) -> Iterator[RuntimeEvent]:
        while self.pending_events:
            yield self.pending_events.pop(0)


@dataclass
class MemoryDatabases:
    """A database server in a dict: databases, roles with passwords, Odoo installed or not."""

    server_name: str = "shared"
    databases: dict[str, str] = field(default_factory=dict)  # name -> owner role
    roles: dict[str, str] = field(default_factory=dict)  # role -> password
    odoo: set[str] = field(default_factory=set)  # databases with Odoo's tables
    claims: dict[str, str] = field(default_factory=dict)  # role -> another instance's name
    down: bool = False

    @property
    def name(self) -> str:
        return self.server_name

    def _up(self) -> None:
        if self.down:
            raise DriverError(
                f"database server {self.server_name} is unreachable",
                code="database_unreachable",
                remediation="pg_isready",
            )

    def ping(self) -> None:
        self._up()

    def existing(self, names: Sequence[str]) -> set[str]:
        self._up()
        return {n for n in names if n in self.databases}

    def ensure_role(self, key: EnvKey, password: str) -> bool:
        self._up()
        existed = key.role in self.roles
        self.roles[key.role] = password
        return existed

    def create_database(self, key: EnvKey) -> None:
        self._up()
        self.databases.setdefault(key.database, key.role)

    def has_odoo(self, key: EnvKey) -> bool:
        self._up()
        return key.database in self.odoo

    def foreign_claim(self, key: EnvKey) -> str | None:
        self._up()
        return self.claims.get(key.role)

    def drop_database(self, key: EnvKey, name: str | None = None) -> None:
        self._up()
        self.databases.pop(name or key.database, None)
        self.odoo.discard(name or key.database)

    def drop_role(self, key: EnvKey) -> None:
        self._up()
        self.roles.pop(key.role, None)

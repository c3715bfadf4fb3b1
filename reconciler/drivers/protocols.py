"""What the engine needs of a container runtime and of a database server: two small protocols.

The engine's steps are written against these, never against Docker or psycopg, so

- a second runtime (Docker Swarm services across hosts) can implement ``Runtime`` without the
  planner or the steps changing: every method speaks of an environment's parts (its network,
  its volumes, its Odoo container), not of one host's objects;
- the engine's steps have fast unit tests against the in-memory implementations of
  ``reconciler.drivers.memory``, which keep state like the real thing instead of asserting calls.

The real implementations are ``DockerDriver`` (drivers/docker.py) and ``PostgresDriver``
(drivers/postgres.py), plus ``DedicatedDatabase`` for a dev environment's own PostgreSQL
container (reached through the runtime).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from reconciler.core.imagegc import Image
from reconciler.core.model import DatabaseServer, DesiredEnvironment, EnvKey
from reconciler.core.observed import ObservedContainer, Role

__all__ = [
    "DatabaseAdmin",
    "ImageListing",
    "Listing",
    "OneOff",
    "Role",
    "Runtime",
    "RuntimeEvent",
]


@dataclass(frozen=True)
class Listing:
    """One look at the runtime's objects of this daemon instance, grouped by environment."""

    networks: frozenset[EnvKey] = frozenset()
    volumes: Mapping[EnvKey, frozenset[str]] = field(default_factory=dict)
    containers: Mapping[EnvKey, Mapping[Role, ObservedContainer]] = field(default_factory=dict)
    stale: Mapping[EnvKey, tuple[str, ...]] = field(default_factory=dict)
    protected: frozenset[EnvKey] = frozenset()
    branch_made: frozenset[EnvKey] = frozenset()  # environments a branch rule created
    images: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ImageListing:
    """The images labelled as built by OdooOps (any instance's: a label is no proof of whose),
    and who uses which: image id -> this instance's environments and the names of every other
    container, running or stopped, whoever made it."""

    images: tuple[Image, ...] = ()
    users: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeEvent:
    """Something happened to one of our containers (it died, was removed, went unhealthy)."""

    key: EnvKey
    container: str
    action: str  # die, destroy, stop, health_status: unhealthy, ...


@dataclass(frozen=True)
class OneOff:
    """How a one-off ``odoo`` run ended.

    ``code`` alone does not say what happened: real Odoo exits 0 with modules left out (see
    ``reconciler.core.modules``), and 137 is any SIGKILL. ``oom_killed`` is the runtime's own
    word that the memory limit (``memory_limit`` bytes) was hit, so the step can say "out of
    memory" instead of "fix the code". ``logs`` is the secret-free tail of both streams;
    ``stdout`` is the standard output alone, kept only when asked (``odoo neutralize --stdout``
    prints SQL there and its log on stderr).
    """

    code: int
    logs: str
    stdout: str = ""
    oom_killed: bool = False
    memory_limit: int = 0


class Runtime(Protocol):
    """Networks, volumes, images and containers of environments."""

    def ping(self) -> None:
        """Raise ``DriverError(code="docker_unreachable")`` when the runtime does not answer."""
        ...

    def observe(self, key: EnvKey | None = None) -> Listing:
        """Everything of this instance, or of one environment only."""
        ...

    def create_network(self, key: EnvKey, protected: bool, origin: str = "file") -> None: ...

    def remove_network(self, name: str) -> None: ...

    def create_volume(self, key: EnvKey, name: str, protected: bool) -> None: ...

    def remove_volume(self, name: str) -> None: ...

    def has_image(self, ref: str) -> bool: ...

    def image_id(self, ref: str, *, pull: bool = True) -> str: ...

    def list_images(self, *, shared: bool = False) -> ImageListing:
        """Images built by OdooOps with their sizes (``shared``: also the bytes each shares
        with others, which costs the engine a disk usage scan), and their users."""
        ...

    def remove_image(self, image_id: str) -> None:
        """Remove one image by id, never forced: ``image_in_use`` when the engine refuses
        (a container uses it, or it has several tags); gone already is fine."""
        ...

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
        """Build the ``Dockerfile`` of the tar ``context`` as ``tag``; the build's log, each
        line also given to ``on_line`` as it comes. ``build_timed_out`` past ``deadline``
        (monotonic seconds)."""
        ...

    def create_odoo(
        self,
        want: DesiredEnvironment,
        password: str,
        name: str | None = None,
        *,
        trial_database: str | None = None,
    ) -> None:
        """Create (not start) the Odoo container, its password file already in place; under
        ``name`` instead of the environment's own (a blue/green rollout's new container);
        ``trial_database``: a trial server on an updated copy (no port, no cron)."""
        ...

    def create_db_container(self, want: DesiredEnvironment, password: str) -> None:
        """Create and start a dev environment's own PostgreSQL container."""
        ...

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
        """``odoo [COMMAND] ARGS`` in a one-off container of the environment's image, on its
        network, as its role, within the one-off memory budget (``Settings.init_memory``)."""
        ...

    def wait_healthy(
        self, name: str, timeout: float, cancel: threading.Event | None = None
    ) -> tuple[bool, str]: ...

    def smoke(self, name: str, paths: Sequence[str]) -> tuple[bool, str]:
        """Each path answers below 400 inside the running container: ``(ok, detail)``."""
        ...

    def logs(self, name: str, tail: int = 40) -> str: ...

    def start(self, name: str) -> None: ...

    def stop(self, name: str, timeout: int = 20) -> None: ...

    def rename(self, name: str, new_name: str) -> None: ...

    def remove_container(self, name: str) -> None: ...

    def exec_psql(self, container_name: str, user: str, database: str, sql: str) -> str:
        """A query inside a dev environment's own PostgreSQL container, as its role."""
        ...

    def events(self, stop: threading.Event) -> Iterator[RuntimeEvent]:
        """Our containers' events until ``stop`` is set (or the stream breaks)."""
        ...


class DatabaseAdmin(Protocol):
    """The admin side of the server that holds an environment's database.

    Only catalog work: roles, databases, renames. Nothing here reads or writes data inside a
    database a workload controls (that runs as the environment's own role).
    """

    @property
    def name(self) -> str:
        """The server's name (``database_servers`` key) or ``dedicated``."""
        ...

    def ping(self) -> None:
        """Raise ``DriverError(code="database_unreachable")`` when the server does not answer."""
        ...

    def existing(self, names: Sequence[str]) -> set[str]:
        """Which of these databases exist."""
        ...

    def ensure_role(self, key: EnvKey, password: str) -> bool:
        """The environment's login role exists with exactly this password (SCRAM); returns
        whether it existed."""
        ...

    def create_database(self, key: EnvKey) -> None:
        """The environment's database, owned by its role (idempotent)."""
        ...

    def foreign_claim(self, key: EnvKey) -> str | None:
        """The other daemon instance the environment's role is noted as belonging to, if any.

        Read only to refuse: names come from projects, not instances, so two daemons sharing a
        server may both declare ``acme/production``. Only an admin can write a role's note (the
        environment's role has no CREATEROLE), and a note can only make the daemon do less.
        """
        ...

    def has_odoo(self, key: EnvKey) -> bool:
        """Whether Odoo is installed in the database (asked live, before anything destructive)."""
        ...

    def drop_database(self, key: EnvKey, name: str | None = None) -> None:
        """Drop the environment's database, or ``name`` (its kept data, ``data.moves``)."""
        ...

    def drop_role(self, key: EnvKey) -> None: ...


def server_name(server: DatabaseServer | None) -> str:
    return "dedicated" if server is None else server.name

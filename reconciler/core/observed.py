"""What the drivers saw, joined with what the daemon's ledger says it owns.

Containers, networks and volumes carry ``odooops.*`` labels (only the Docker API can set them,
and only the daemon holds it), so one listing of each finds them. Databases are different: a
database's labels would be its ``COMMENT``, which its owner (the environment's role) can
rewrite, so whether a database is ours and how far it got comes from the daemon's ledger, and
a database that exists without a ledger record is ``owned=False``: never dropped, never
recreated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from reconciler.core.model import EnvKey


class Role(StrEnum):
    ODOO = "odoo"
    DB = "db"
    INIT = "init"


@dataclass(frozen=True)
class ObservedContainer:
    name: str
    role: Role
    state: str  # Docker's: created, running, paused, restarting, exited, dead
    health: str | None  # starting, healthy, unhealthy, or None without a health check
    spec_hash: str | None
    revision: str | None
    image: str | None = None
    port: int | None = None
    protected: bool = False

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting")


@dataclass(frozen=True)
class ObservedDatabase:
    name: str
    server: str  # a database server name, or "dedicated"
    initialised: bool
    protected: bool = False
    owned: bool = True  # the ledger records it as the daemon's
    # What its modules were at the last successful -i/-u (reconciler.core.modules.applied).
    modules: Mapping[str, object] | None = None


@dataclass(frozen=True)
class ObservedEnvironment:
    key: EnvKey
    network: bool = False
    volumes: frozenset[str] = frozenset()
    containers: Mapping[Role, ObservedContainer] = field(default_factory=dict)
    database: ObservedDatabase | None = None
    protected: bool = False
    stale: tuple[str, ...] = ()  # one-off or previous containers left by an interrupted apply
    origin: str = "file"  # "branch" when a branch rule made it (a network label says so)
    # The test gates this environment passed (``testgate.gate_key``), from the daemon's ledger.
    gates: frozenset[str] = frozenset()
    # When it fell asleep (``reconciler.core.sleep``), from the ledger; None while awake or
    # waking up. Its containers are stopped on purpose: nothing starts them but a request.
    asleep_since: datetime | None = None

    @property
    def asleep(self) -> bool:
        return self.asleep_since is not None

    def container(self, role: Role) -> ObservedContainer | None:
        return self.containers.get(role)


@dataclass(frozen=True)
class Observed:
    environments: Mapping[EnvKey, ObservedEnvironment] = field(default_factory=dict)
    images: frozenset[str] = frozenset()
    # Environments whose database server did not answer: their live state is unknown, so
    # nothing is planned for them (a missing answer is never read as a missing database).
    unreachable: Mapping[EnvKey, str] = field(default_factory=dict)

"""What the drivers saw: live Docker objects and databases that carry our labels.

Observation needs no private database: containers, networks and volumes carry ``odooops.*``
labels, and databases on a shared server carry the same labels as a JSON comment. So a fresh
daemon (or a restarted one) knows everything it owns from one listing of each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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

    def container(self, role: Role) -> ObservedContainer | None:
        return self.containers.get(role)


@dataclass(frozen=True)
class Observed:
    environments: Mapping[EnvKey, ObservedEnvironment] = field(default_factory=dict)
    images: frozenset[str] = frozenset()

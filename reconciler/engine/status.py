"""Status of every environment, as users read it: sync, health, conditions, revisions.

Status is written after every apply step (in a ``finally``, so a failure is recorded too) and
persisted to the data directory, so a restarted daemon and ``odooops status`` show the last
known truth at once. Words follow Argo CD's (Synced/OutOfSync, Healthy/Progressing/Degraded/
Suspended/Missing) because that is what users already read.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from reconciler.core import durations, expiry
from reconciler.core.errors import OdooOpsError


class Sync(StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    UNKNOWN = "Unknown"


class Health(StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    SUSPENDED = "Suspended"
    ASLEEP = "Asleep"  # idle: stopped until the next request through the proxy wakes it
    MISSING = "Missing"
    UNKNOWN = "Unknown"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Condition:
    type: str  # Ready, Reconciling, Stalled, Held, ...
    status: bool
    reason: str
    message: str = ""
    since: str = field(default_factory=now)


@dataclass(frozen=True)
class EnvironmentStatus:
    project: str
    env: str
    branch: str = ""
    tier: str = ""
    revision: str = ""  # wanted: the commit the state asks for (the branch head, or a pin)
    serving: str = ""  # the commit of the Odoo container running now ("" when none runs)
    state_commit: str = ""
    spec_hash: str = ""
    url: str = ""
    sync: Sync = Sync.UNKNOWN
    health: Health = Health.UNKNOWN
    conditions: tuple[Condition, ...] = ()
    last_applied: str = ""
    updated: str = field(default_factory=now)
    last_backup: str = ""  # finish time of the newest good backup (ISO 8601), for the RPO metric
    last_backup_id: str = ""
    last_restore_test: str = ""  # finish time of the newest successful restore test
    certificate_expires: str = ""  # the earliest expiry of its hosts' certificates (ISO 8601)
    expires: str = ""  # when the sweeper removes it (its file's expires, UTC); "" permanent
    asleep_since: str = ""  # when it fell asleep (ISO 8601); "" while awake

    def with_condition(self, cond: Condition) -> EnvironmentStatus:
        """Replace the condition of the same type, keeping ``since`` if nothing changed."""
        kept = [c for c in self.conditions if c.type != cond.type]
        old = next((c for c in self.conditions if c.type == cond.type), None)
        if old is not None and (old.status, old.reason) == (cond.status, cond.reason):
            cond = replace(cond, since=old.since)
        return replace(self, conditions=(*kept, cond), updated=now())

    def without_condition(self, kind: str) -> EnvironmentStatus:
        """Drop the condition of type ``kind`` (one that no longer applies at all)."""
        if not any(c.type == kind for c in self.conditions):
            return self
        kept = tuple(c for c in self.conditions if c.type != kind)
        return replace(self, conditions=kept, updated=now())

    def with_expiry(self, key: str, expires: datetime | None, at: datetime) -> EnvironmentStatus:
        """``expires`` and the ``Expiring`` condition at ``at`` (true within a day of it, its
        message naming the command that keeps the environment); neither when permanent."""
        if expires is None:
            return replace(self, expires="").without_condition("Expiring")
        status, reason, message = expiry.expiring(key, expires, at)
        shown = replace(self, expires=durations.format_instant(expires))
        return shown.with_condition(Condition("Expiring", status, reason, message))

    def to_dict(self) -> dict[str, Any]:
        """Field by field: ``dataclasses.asdict`` deep-copies and was most of a listing's cost."""
        return {
            "project": self.project,
            "env": self.env,
            "branch": self.branch,
            "tier": self.tier,
            "revision": self.revision,
            "serving": self.serving,
            "state_commit": self.state_commit,
            "spec_hash": self.spec_hash,
            "url": self.url,
            "sync": self.sync.value,
            "health": self.health.value,
            "conditions": [
                {
                    "type": c.type,
                    "status": c.status,
                    "reason": c.reason,
                    "message": c.message,
                    "since": c.since,
                }
                for c in self.conditions
            ],
            "last_applied": self.last_applied,
            "updated": self.updated,
            "last_backup": self.last_backup,
            "last_backup_id": self.last_backup_id,
            "last_restore_test": self.last_restore_test,
            "certificate_expires": self.certificate_expires,
            "expires": self.expires or None,
            "asleep_since": self.asleep_since,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EnvironmentStatus:
        data = dict(raw)
        data["sync"] = Sync(data.get("sync", "Unknown"))
        data["health"] = Health(data.get("health", "Unknown"))
        data["conditions"] = tuple(Condition(**c) for c in data.get("conditions", []))
        data["expires"] = data.get("expires") or ""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class DaemonStatus:
    state_commit: str = ""
    state_error: dict[str, Any] | None = None
    last_poll: str = ""
    last_pass_seconds: float = 0.0
    passes: int = 0
    # Branch environments the last pass did not make (or removed), past their TTL: key -> why.
    expired: dict[str, str] = field(default_factory=dict)


EVENTS_KEPT = 50


class StatusStore:
    """Status of environments and of the daemon, persisted atomically as JSON."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        """``read_only`` keeps everything in memory: ``odooops plan`` may share a running
        daemon's data directory and must never overwrite its status."""
        self.path = path
        self.read_only = read_only
        self._lock = threading.Lock()
        self._envs: dict[str, EnvironmentStatus] = {}
        self._ports: dict[str, int] = {}
        self._refused: dict[str, set[int]] = {}  # ports found taken at start, per environment
        self._events: dict[str, list[dict[str, Any]]] = {}
        self.daemon = DaemonStatus()
        if path.exists():
            raw = json.loads(path.read_text())
            self._envs = {k: EnvironmentStatus.from_dict(v) for k, v in raw["environments"].items()}
            self._ports = {k: int(v) for k, v in raw.get("ports", {}).items()}
            self._events = {k: list(v) for k, v in raw.get("events", {}).items()}
            self.daemon = DaemonStatus(**raw.get("daemon", {}))

    def get(self, key: str) -> EnvironmentStatus | None:
        with self._lock:
            return self._envs.get(key)

    def all(self) -> dict[str, EnvironmentStatus]:
        with self._lock:
            return dict(sorted(self._envs.items()))

    def put(self, key: str, status: EnvironmentStatus) -> None:
        with self._lock:
            self._note_events(key, status)
            self._envs[key] = status
            self._save()

    def modify(
        self,
        key: str,
        change: Callable[[EnvironmentStatus], EnvironmentStatus],
        project: str = "",
        env: str = "",
    ) -> EnvironmentStatus:
        """Read, change and write one environment's status under the store's lock.

        Every writer goes through here (or ``modify_many``): a reconcile writing conditions
        and a backup writing ``last_backup`` at the same moment each see the other's change,
        where a separate get and put would lose one of them.
        """
        with self._lock:
            old = self._envs.get(key) or EnvironmentStatus(project, env)
            new = change(old)
            self._note_events(key, new)
            self._envs[key] = new
            self._save()
            return new

    def modify_many(
        self, changes: Mapping[str, Callable[[EnvironmentStatus], EnvironmentStatus]]
    ) -> None:
        """``modify`` for many environments in one write (a refresh of a thousand)."""
        with self._lock:
            for key, change in changes.items():
                project, _, env = key.partition("/")
                old = self._envs.get(key) or EnvironmentStatus(project, env)
                new = change(old)
                self._note_events(key, new)
                self._envs[key] = new
            self._save()

    def put_many(self, statuses: Mapping[str, EnvironmentStatus]) -> None:
        """One write for a whole pass (a write per environment would make a pass quadratic)."""
        with self._lock:
            for key, status in statuses.items():
                self._note_events(key, status)
            self._envs.update(statuses)
            self._save()

    def events(self, key: str) -> list[dict[str, Any]]:
        """Condition changes of one environment, newest first (the last ``EVENTS_KEPT``)."""
        with self._lock:
            return list(reversed(self._events.get(key, [])))

    def _note_events(self, key: str, new: EnvironmentStatus) -> None:
        """An event per condition whose status or reason changed, and per health change."""
        old = self._envs.get(key)
        before = {c.type: c for c in old.conditions} if old else {}
        events = self._events.setdefault(key, [])
        for cond in new.conditions:
            prev = before.get(cond.type)
            if prev is None or (prev.status, prev.reason) != (cond.status, cond.reason):
                events.append(
                    {
                        "time": now(),
                        "type": cond.type,
                        "status": cond.status,
                        "reason": cond.reason,
                        "message": cond.message[:500],
                    }
                )
        if old is not None and old.health != new.health:
            events.append(
                {
                    "time": now(),
                    "type": "Health",
                    "status": True,
                    "reason": new.health.value,
                    "message": f"was {old.health.value}",
                }
            )
        del events[:-EVENTS_KEPT]

    def note(self, key: str, kind: str, ok: bool, reason: str, message: str = "") -> None:
        """An event that is no condition change: a backup, a copy, a restore."""
        with self._lock:
            events = self._events.setdefault(key, [])
            events.append(
                {
                    "time": now(),
                    "type": kind,
                    "status": ok,
                    "reason": reason,
                    "message": message[:500],
                }
            )
            del events[:-EVENTS_KEPT]
            self._save()

    def update(self, key: str, project: str, env: str, **fields: str) -> None:
        """Set plain fields of one environment's status (created when absent), atomically."""
        with self._lock:
            old = self._envs.get(key) or EnvironmentStatus(project, env)
            self._envs[key] = replace(old, **fields)  # type: ignore[arg-type]
            self._save()

    def remove(self, key: str) -> None:
        with self._lock:
            self._envs.pop(key, None)
            self._events.pop(key, None)
            self._ports.pop(key, None)
            self._save()

    def set_daemon(self, status: DaemonStatus) -> None:
        with self._lock:
            self.daemon = status
            self._save()

    def move_port(self, key: str) -> None:
        """Forget the port of ``key`` because something else holds it: the next resolution
        hands out another one (the taken one is skipped while it stays taken, and never
        handed to this environment again in this process)."""
        with self._lock:
            port = self._ports.pop(key, None)
            if port is not None:
                self._refused.setdefault(key, set()).add(port)
                self._save()

    def ports(self) -> dict[str, int]:
        with self._lock:
            return dict(self._ports)

    def port_for(
        self, key: str, start: int, end: int, free: Callable[[int], bool] = lambda port: True
    ) -> int:
        """A stable HTTP port for an environment: reused across replacements and restarts.

        A new one is the first port of the range that no environment holds and ``free`` says
        nothing else listens on (asked per candidate: another program, or another daemon's
        container, may hold any port of the range, not only the first ones)."""
        with self._lock:
            if key in self._ports:
                return self._ports[key]
            taken = set(self._ports.values()) | self._refused.get(key, set())
            for port in range(start, end + 1):
                if port not in taken and free(port):
                    self._ports[key] = port
                    self._save()
                    return port
        raise OdooOpsError(
            f"no free port left in {start}-{end} for {key}: {len(taken)} held by environments, "
            "the others in use by something else",
            code="port_range_exhausted",
            remediation="widen runtime.port_range in odooops.yaml (commit it to the state "
            "repository), or remove environments that are no longer needed",
        )

    def adopt_port(self, key: str, port: int) -> None:
        """Remember the port a live container already uses (a store lost or moved)."""
        with self._lock:
            if self._ports.get(key) != port:
                self._ports[key] = port
                self._save()

    def _save(self) -> None:
        if self.read_only:
            return
        doc = {
            "environments": {k: v.to_dict() for k, v in self._envs.items()},
            "ports": self._ports,
            "events": self._events,
            "daemon": asdict(self.daemon),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

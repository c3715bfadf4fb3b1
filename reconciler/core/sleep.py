"""Sleep and wake: when an idle environment stops, and which request brings it back.

An environment behind the shared proxy that gets no request for its ``sleep_after`` is put to
sleep: its Odoo container (and a dev tier's own database container) is stopped, never removed,
and its route shows a "waking up" page. The next request to one of its hosts gets that page
(503, ``Retry-After``, an automatic refresh) and wakes it: the containers start, and once Odoo
answers its health check the route goes back to Odoo. Asleep is runtime state, like Odoo.sh's,
not a declaration in git (that is ``suspended``): the daemon's ledger holds it, so a restarted
daemon keeps a sleeping environment asleep.

The daemon learns of requests from the proxy's access log (one JSON object per line, written
by Caddy into the directory the daemon shares with it); the same log says when a sleeping
environment is asked for, so one mechanism serves both, and a request that arrives while the
daemon is down is still in the log when it comes back. Everything here is pure: the clock and
the log's lines are arguments.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from reconciler.core.model import EnvKey

__all__ = [
    "Activity",
    "Request",
    "Rest",
    "backup_current",
    "data_tasks_wait",
    "last_requests",
    "parse_access_line",
    "should_sleep",
    "span",
    "woken_by",
]


class Rest(StrEnum):
    """Where an environment is in its sleep cycle."""

    AWAKE = "awake"
    ASLEEP = "asleep"  # stopped; the route shows the waking page
    WAKING = "waking"  # a request came: starting; the route shows the page until Odoo answers


@dataclass(frozen=True)
class Activity:
    """What the ledger keeps of one environment's traffic: its ``state`` and ``since`` when,
    and the time of the last request the proxy logged for it (None: none yet)."""

    key: EnvKey
    state: Rest
    since: datetime
    last_request: datetime | None = None

    @property
    def idle_since(self) -> datetime:
        """The last sign of use: the last request, or when it woke (or was first seen) if
        that is later; a fresh or freshly woken environment gets a full ``sleep_after``."""
        if self.last_request is None or self.last_request < self.since:
            return self.since
        return self.last_request

    @property
    def shows_waking_page(self) -> bool:
        """Asleep or not yet answering: the proxy shows the waking page, not Odoo."""
        return self.state is not Rest.AWAKE

    def heard(self, at: datetime) -> Activity:
        """With a request at ``at`` (an older one than already known changes nothing)."""
        if self.last_request is not None and at <= self.last_request:
            return self
        return replace(self, last_request=at)


def span(duration: timedelta) -> str:
    """``duration`` as the state format writes it: the largest unit that divides it."""
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def should_sleep(activity: Activity, sleep_after: timedelta | None, now: datetime) -> bool:
    """An awake environment idle for at least ``sleep_after`` (None: it never sleeps)."""
    if sleep_after is None or activity.state is not Rest.AWAKE:
        return False
    return now - activity.idle_since >= sleep_after


def woken_by(activity: Activity, request_at: datetime) -> bool:
    """A request at ``request_at`` wakes ``activity``: it is asleep and the request came after
    it fell asleep. An older request (the log read again after a restart) wakes nothing."""
    return activity.state is Rest.ASLEEP and request_at > activity.since


def data_tasks_wait(asleep_since: datetime | None, own_database: bool) -> bool:
    """A sleeping dev tier's scheduled data tasks (backup, restore test, removal of kept
    data) wait until it wakes: its database server sleeps with it. A task that fell due
    meanwhile runs at the first check after the wake, as a missed slot is caught up."""
    return asleep_since is not None and own_database


def backup_current(asleep_since: datetime | None, last_backup: datetime | None) -> bool:
    """A sleeping environment backed up since it fell asleep needs no scheduled backup:
    Odoo is stopped, so nothing was written since."""
    return asleep_since is not None and last_backup is not None and last_backup >= asleep_since


@dataclass(frozen=True)
class Request:
    """One line of the proxy's access log: the host asked for and when. ``at`` is when the
    request ended (Caddy's ``ts`` is the time of the line): a request still running when an
    environment fell asleep, and answered after, wakes it."""

    host: str
    at: datetime
    status: int


def parse_access_line(line: str | bytes) -> Request | None:
    """A Caddy access log line (JSON: ``ts`` in Unix seconds, ``request.host``, ``status``),
    or None for anything else (a partial last line, another logger's line). The host is taken
    in lower case and without a port, as the route table knows it."""
    try:
        entry = json.loads(line)
        ts = float(entry["ts"])
        host = str(entry["request"]["host"])
    except (ValueError, KeyError, TypeError):
        return None
    if not host or ts <= 0:
        return None
    if host.startswith("["):  # an IPv6 literal: no environment is routed by address
        return None
    host = host.rsplit(":", 1)[0].lower().rstrip(".")
    status = entry.get("status")
    return Request(host, datetime.fromtimestamp(ts, UTC), status if isinstance(status, int) else 0)


def last_requests(
    requests: Iterable[Request], lookup: Callable[[str], EnvKey | None]
) -> dict[EnvKey, datetime]:
    """The newest request per environment (``lookup`` maps a host to its environment; a host
    no environment has is left out)."""
    found: dict[EnvKey, datetime] = {}
    for request in requests:
        key = lookup(request.host)
        if key is not None and (key not in found or found[key] < request.at):
            found[key] = request.at
    return found

"""The daemon's side of sleep and wake: read the proxy's access log, wake and put to sleep.

The decisions are pure (``reconciler.core.sleep``); this module feeds them. Twice a second
(``SCAN_SECONDS``) ``scan`` reads the lines the proxy appended to its access log, records each
environment's newest request in the ledger, wakes a sleeping environment a request came for
(asleep -> waking in the ledger, then its run starts it) and names the environments idle for
their ``sleep_after``. Every refresh does the same (``read`` and ``idle``), so a poll catches
up whatever the watch missed, and ``odooops daemon --once`` sleeps and wakes too. It never
stops or starts anything itself: that is each environment's own run
(``Engine.reconcile_env``), serial with its deploys, which decides once more and acts.

Why the access log (a file in the directory the daemon shares with the proxy), and not a
route from the proxy to the daemon: it carries every request of every environment, which idle
detection needs anyway; the proxy writes it whether or not the daemon is up, so a request
made while the daemon restarts still wakes its environment when the daemon reads it; and the
waking page is the proxy's own answer, served at once even with the daemon down. The file is
read from its start after a restart: the ledger keeps the newest time, and a request older
than an environment's sleep wakes nothing (``woken_by``), so reading a line twice is harmless.
When the proxy rolls the file (``ACCESS_LOG_ROLL_MB``) the lines written between the last read
and the roll are not read: an environment then looks idle a little sooner, at worst.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from reconciler.core.model import Desired, EnvKey
from reconciler.core.sleep import (
    Rest,
    last_requests,
    parse_access_line,
    should_sleep,
    woken_by,
)
from reconciler.engine.ledger import Ledger
from reconciler.engine.routing import Routes

__all__ = ["READ_LIMIT", "SCAN_SECONDS", "AccessLog", "Sleeper"]

log = logging.getLogger("odooops.sleep")

SCAN_SECONDS = 0.5
"""How often the access log is read: the longest a request waits before its wake starts."""

READ_LIMIT = 4 * 1024 * 1024
"""At most this much of the log per read: a long log (after a restart) is read over a few."""

_NUDGE_SECONDS = 30.0  # an idle environment whose run did not put it to sleep is named again


class AccessLog:
    """Lines appended to one file since the last read, across the proxy's rolls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._inode: int | None = None
        self._offset = 0
        self._partial = b""

    def read(self) -> list[bytes]:
        """The complete lines written since the last call (a partial last line waits)."""
        try:
            with open(self.path, "rb") as fh:
                stat = os.fstat(fh.fileno())
                if stat.st_ino != self._inode or stat.st_size < self._offset:
                    # A new file (rolled, or the proxy made anew): read it from its start.
                    self._inode, self._offset, self._partial = stat.st_ino, 0, b""
                fh.seek(self._offset)
                chunk = fh.read(READ_LIMIT)
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        return [line for line in lines if line.strip()]


class Sleeper:
    """Feeds the sleep decisions of one daemon from its proxy's access log."""

    def __init__(
        self,
        access_log: Path,
        ledger: Ledger,
        routes: Routes,
        desired: Callable[[], Desired | None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.log = AccessLog(access_log)
        self._ledger = ledger
        self._routes = routes
        self._desired = desired
        self._clock = clock
        self._nudged: dict[EnvKey, float] = {}
        self._lock = threading.Lock()  # the daemon's watch and a refresh both read the log

    def scan(self) -> list[tuple[EnvKey, str]]:
        """The daemon's twice-a-second look: the environments a request woke, and those idle
        for their ``sleep_after`` (each named once, then again only after a while: its run
        may be held or busy, and the queue coalesces, but a line every half second is
        noise), with why."""
        out = [(key, "woken by a request") for key in self.read()]
        at = time.monotonic()
        idle = set(self.idle())
        for key in [k for k in self._nudged if k not in idle]:
            del self._nudged[key]
        for key in sorted(idle):
            last = self._nudged.get(key)
            if last is None or at - last >= _NUDGE_SECONDS:
                self._nudged[key] = at
                out.append((key, "idle, or waking"))
        return out

    def read(self) -> list[EnvKey]:
        """Read the requests the proxy logged since the last read, record each environment's
        newest, and wake the sleeping ones a request came for (asleep -> waking): those
        are returned, for their runs to start them. Nothing before the first routes load
        (the hosts are not known yet): the lines wait in the file."""
        with self._lock:
            table = self._routes.table()
            if not self._routes.enabled or table is None:
                return []
            lines = self.log.read()
        requests = [r for r in map(parse_access_line, lines) if r is not None]
        heard = last_requests(requests, table.lookup)
        self._ledger.heard(heard)
        at = self._clock()
        activities = self._ledger.activities()
        woken: list[EnvKey] = []
        for key, when in sorted(heard.items()):
            activity = activities.get(key)
            if activity is not None and woken_by(activity, when) and self._ledger.wake(key, at):
                log.info("%s: a request at %s wakes it", key, when.isoformat(timespec="seconds"))
                woken.append(key)
        return woken

    def idle(self) -> list[EnvKey]:
        """The environments whose run has sleep work to do now: idle for their
        ``sleep_after`` (routed, not suspended), waking (a run starts it and gives its route
        back), or asleep though they can no longer sleep (no ingress, ``sleep_after`` null,
        suspended, no longer declared). One seen for the first time gets a full
        ``sleep_after`` from now."""
        desired = self._desired()
        if desired is None:
            return []
        at = self._clock()
        activities = self._ledger.activities()
        found: list[EnvKey] = []
        for key, activity in sorted(activities.items()):
            want = desired.environments.get(key)
            can_sleep = (
                want is not None
                and want.routed
                and not want.spec.suspended
                and want.settings.sleep_after is not None
            )
            if activity.state is Rest.WAKING or (activity.state is Rest.ASLEEP and not can_sleep):
                found.append(key)
        for key, want in sorted(desired.environments.items()):
            sleep_after = want.settings.sleep_after
            if not want.routed or want.spec.suspended or sleep_after is None:
                continue
            known = activities.get(key)
            if known is None:
                self._ledger.put_rest(key, Rest.AWAKE, at)
            elif should_sleep(known, sleep_after, at):
                found.append(key)
        return found

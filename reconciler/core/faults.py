"""Fault injection: the daemon kills itself (SIGKILL) at its Nth step boundary, for tests.

Every step of a reconcile and every step of a data move passes a boundary
(``boundary("steps")``, ``boundary("moves")``). With ``ODOOOPS_FAULT_KILL_AT=SCOPE:N`` in its
environment, the daemon dies at the Nth boundary of that scope, as abruptly as an OOM kill or
a power cut: no ``finally``, no status, no flush. The fault-injection suite runs a scenario
once to count its boundaries (``ODOOOPS_FAULT_LOG`` records them), then once per N, restarts
the daemon each time and checks it converges with nothing lost or left behind.

Off unless the variable is set; a daemon never sets it.
"""

from __future__ import annotations

import os
import signal
import threading

_ENV, _LOG = "ODOOOPS_FAULT_KILL_AT", "ODOOOPS_FAULT_LOG"
_lock = threading.Lock()
_counts: dict[str, int] = {}


def boundary(scope: str, what: str = "") -> None:
    """A point between two steps where the daemon may be killed."""
    wanted = os.environ.get(_ENV)
    log = os.environ.get(_LOG)
    if not wanted and not log:
        return
    with _lock:
        count = _counts[scope] = _counts.get(scope, 0) + 1
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"{scope}:{count} {what}\n")
                fh.flush()
                os.fsync(fh.fileno())
        if wanted == f"{scope}:{count}":
            os.kill(os.getpid(), signal.SIGKILL)

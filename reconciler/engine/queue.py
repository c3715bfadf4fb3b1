"""A keyed work queue: one run per key at a time, runs of different keys in parallel.

Every trigger (a poll, a webhook, an API write, a Docker event, a data job's end, a timer)
becomes ``put(key, reason)``. The queue guarantees what a reconciler needs (kopf's one worker
per object, Flux's requeue):

- **never dropped**: a ``put`` for a key that is running marks it dirty, and it runs again
  right after the current run, so a webhook that arrives mid-run is never lost;
- **coalesced**: ten ``put``s for a queued key are one run (their reasons are kept);
- **serial per key, parallel across keys**, bounded by ``workers``: one slow environment (a
  30-minute ``-u``) holds one worker, never the others;
- **requeue with a delay**: a handler returns the seconds after which its key should run again
  (back-off after a failure, a poll for a long operation), unless a trigger comes first.

Stopping sets ``cancel`` for the handlers (they finish their current step, not their whole
run) and waits for the workers.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger("odooops.queue")

K = TypeVar("K", bound=Hashable)

# What a handler gets (the key and why it runs) and returns (run again after N seconds).
Handler = Callable[[K, tuple[str, ...]], float | None]


@dataclass
class _Entry:
    due: float | None = None  # queued to run at this time (None: not queued)
    running: bool = False
    dirty_due: float | None = None  # a put arrived while running: run again at this time
    reasons: set[str] = field(default_factory=set)
    version: int = 0


class WorkQueue(Generic[K]):
    def __init__(
        self,
        name: str,
        handler: Handler[K],
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.cancel = threading.Event()
        self._handler = handler
        self._clock = clock
        self._cond = threading.Condition()
        self._entries: dict[K, _Entry] = {}
        self._heap: list[tuple[float, int, int, K]] = []
        self._seq = itertools.count()
        self._target = max(1, workers)
        self._threads: list[threading.Thread] = []
        self._started = False
        self._stopping = False
        self._running = 0

    # ----------------------------------------------------------------------------- input
    def put(self, key: K, reason: str, delay: float = 0.0) -> None:
        """Run ``key`` (again) no later than ``delay`` seconds from now."""
        with self._cond:
            if self._stopping:
                return
            due = self._clock() + max(0.0, delay)
            entry = self._entries.setdefault(key, _Entry())
            entry.reasons.add(reason)
            if entry.running:
                entry.dirty_due = due if entry.dirty_due is None else min(entry.dirty_due, due)
                return
            if entry.due is not None and entry.due <= due:
                return
            self._schedule(key, entry, due)
            self._cond.notify()

    def _schedule(self, key: K, entry: _Entry, due: float) -> None:
        entry.due = due
        entry.version += 1
        heapq.heappush(self._heap, (due, next(self._seq), entry.version, key))

    # --------------------------------------------------------------------------- workers
    def start(self) -> None:
        with self._cond:
            self._started = True
            self._grow()

    def resize(self, workers: int) -> None:
        """Change the bound (``quotas.max_concurrent_deployments`` changed in git)."""
        with self._cond:
            self._target = max(1, workers)
            if self._started:
                self._grow()
            self._cond.notify_all()

    def _grow(self) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < self._target:
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float) -> bool:
        """Stop taking work; handlers see ``cancel``. True when every worker ended in time."""
        with self._cond:
            self._stopping = True
            self.cancel.set()
            self._cond.notify_all()
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    def _work(self) -> None:
        while True:
            with self._cond:
                item = self._next()
                if item is None:
                    return
                key, entry = item
                reasons = tuple(sorted(entry.reasons))
                entry.reasons.clear()
            retry: float | None = None
            try:
                retry = self._handler(key, reasons)
            except Exception:  # a handler's bug must not kill its worker
                log.exception("%s: run of %s crashed", self.name, key)
                retry = 30.0
            with self._cond:
                self._running -= 1
                entry.running = False
                if entry.dirty_due is not None:
                    self._schedule(key, entry, entry.dirty_due)
                    entry.dirty_due = None
                elif retry is not None and not self._stopping:
                    self._schedule(key, entry, self._clock() + retry)
                elif not entry.reasons:
                    self._entries.pop(key, None)
                self._cond.notify_all()

    def _next(self) -> tuple[K, _Entry] | None:
        """The next due key (called with the lock held); None when this worker should end."""
        while True:
            if self._stopping:
                return None
            self._threads = [t for t in self._threads if t.is_alive()]
            if len(self._threads) > self._target:  # the bound was lowered: this worker ends
                self._threads.remove(threading.current_thread())
                return None
            if self._running >= self._target:
                self._cond.wait(0.5)
                continue
            while self._heap:
                due, _seq, version, key = self._heap[0]
                entry = self._entries.get(key)
                if entry is None or entry.version != version or entry.due != due:
                    heapq.heappop(self._heap)  # superseded by a later schedule
                    continue
                break
            if not self._heap:
                self._cond.wait(0.5)
                continue
            due, _seq, _version, key = self._heap[0]
            wait = due - self._clock()
            if wait > 0:
                self._cond.wait(min(wait, 0.5))
                continue
            heapq.heappop(self._heap)
            entry = self._entries[key]
            entry.due = None
            entry.running = True
            self._running += 1
            return key, entry

    # ------------------------------------------------------------------------- reading
    def depth(self) -> int:
        """Keys waiting to run (not counting the ones running)."""
        with self._cond:
            return sum(1 for e in self._entries.values() if e.due is not None and not e.running)

    def running(self) -> int:
        with self._cond:
            return self._running

    def pending(self, key: K) -> bool:
        with self._cond:
            entry = self._entries.get(key)
            return entry is not None and (
                entry.running or entry.due is not None or entry.dirty_due is not None
            )

    def wait_idle(self, timeout: float, horizon: float = 0.0) -> bool:
        """Wait until nothing runs and nothing is due within ``horizon`` seconds (tests)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = self._clock()
                busy = self._running > 0 or any(
                    (e.due is not None and e.due <= now + horizon) or e.dirty_due is not None
                    for e in self._entries.values()
                )
                if not busy:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))

"""The keyed work queue: never drops a trigger, coalesces, serial per key, parallel across."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from reconciler.engine.queue import WorkQueue


class Recorder:
    """A handler that records its runs and can be told to block on a key."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, tuple[str, ...]]] = []
        self.active: set[str] = set()
        self.overlap = False
        self.gates: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}
        self.retry: dict[str, float | None] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, reasons: tuple[str, ...]) -> float | None:
        with self._lock:
            if key in self.active:
                self.overlap = True
            self.active.add(key)
            self.runs.append((key, reasons))
            self.started.setdefault(key, threading.Event()).set()
        gate = self.gates.get(key)
        if gate is not None:
            gate.wait(10)
        with self._lock:
            self.active.discard(key)
        return self.retry.pop(key, None)

    def count(self, key: str) -> int:
        with self._lock:
            return sum(1 for k, _ in self.runs if k == key)


def started_queue(
    handler: Callable[[str, tuple[str, ...]], float | None], workers: int = 2
) -> WorkQueue[str]:
    queue: WorkQueue[str] = WorkQueue("test", handler, workers=workers)
    queue.start()
    return queue


def test_a_trigger_during_a_run_runs_the_key_again_right_after() -> None:
    """The bug this replaces: a webhook during a pass was dropped until the next poll."""
    rec = Recorder()
    rec.gates["a"] = threading.Event()
    queue = started_queue(rec)
    try:
        queue.put("a", "poll")
        assert rec.started.setdefault("a", threading.Event()).wait(5)
        queue.put("a", "webhook")  # arrives mid-run
        rec.gates["a"].set()
        assert queue.wait_idle(5)
        assert rec.count("a") == 2
        assert rec.runs[-1] == ("a", ("webhook",))
    finally:
        queue.stop(5)


def test_triggers_for_a_queued_key_coalesce_into_one_run() -> None:
    rec = Recorder()
    rec.gates["busy"] = threading.Event()
    queue = started_queue(rec, workers=1)
    try:
        queue.put("busy", "x")
        assert rec.started.setdefault("busy", threading.Event()).wait(5)
        for reason in ("poll", "webhook", "api"):
            queue.put("b", reason)  # queued behind the only worker
        rec.gates["busy"].set()
        assert queue.wait_idle(5)
        assert rec.count("b") == 1
        assert ("b", ("api", "poll", "webhook")) in rec.runs
    finally:
        queue.stop(5)


def test_a_slow_key_never_holds_the_others() -> None:
    """One environment in a 30-minute ``-u`` holds one worker; the others keep running."""
    rec = Recorder()
    rec.gates["slow"] = threading.Event()
    queue = started_queue(rec, workers=2)
    try:
        queue.put("slow", "x")
        assert rec.started.setdefault("slow", threading.Event()).wait(5)
        started = time.monotonic()
        for key in ("b", "c", "d"):
            queue.put(key, "x")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(rec.count(k) for k in "bcd"):
            time.sleep(0.01)
        assert all(rec.count(k) == 1 for k in "bcd")
        assert time.monotonic() - started < 2
        rec.gates["slow"].set()
    finally:
        queue.stop(5)


def test_runs_of_one_key_never_overlap() -> None:
    rec = Recorder()
    queue = started_queue(rec, workers=4)
    try:
        for i in range(200):
            queue.put(f"k{i % 3}", str(i))
        assert queue.wait_idle(10)
        assert not rec.overlap
    finally:
        queue.stop(5)


def test_a_requeue_delay_runs_the_key_again_later_unless_triggered_first() -> None:
    rec = Recorder()
    queue = started_queue(rec)
    try:
        rec.retry["a"] = 0.3
        queue.put("a", "first")
        assert queue.wait_idle(5, horizon=0.0)
        assert rec.count("a") == 1
        time.sleep(0.6)
        assert rec.count("a") == 2  # the back-off expired
        rec.retry["b"] = 60.0
        queue.put("b", "first")
        assert rec.started.setdefault("b", threading.Event()).wait(5)
        time.sleep(0.1)
        queue.put("b", "new commit")  # a trigger does not wait for the back-off
        assert queue.wait_idle(5)
        assert rec.count("b") == 2
    finally:
        queue.stop(5)


def test_a_handler_that_raises_does_not_kill_its_worker() -> None:
    calls: list[str] = []

    def handler(key: str, reasons: tuple[str, ...]) -> float | None:
        calls.append(key)
        if key == "bad":
            raise RuntimeError("boom")
        return None

    queue = started_queue(handler, workers=1)
    try:
        queue.put("bad", "x")
        queue.put("good", "x")
        deadline = time.monotonic() + 5
        while "good" not in calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "good" in calls
    finally:
        queue.stop(5)


def test_stop_sets_cancel_and_waits_for_the_running_handler() -> None:
    seen: list[bool] = []
    entered = threading.Event()

    def handler(key: str, reasons: tuple[str, ...]) -> float | None:
        entered.set()
        seen.append(queue.cancel.wait(5))  # a step boundary: the handler sees the stop
        return None

    queue: WorkQueue[str] = WorkQueue("test", handler, workers=1)
    queue.start()
    queue.put("a", "x")
    assert entered.wait(5)
    assert queue.stop(5)
    assert seen == [True]
    queue.put("b", "after stop")  # ignored
    assert not queue.pending("b")


def test_the_bound_can_change_while_running() -> None:
    rec = Recorder()
    for key in "abc":
        rec.gates[key] = threading.Event()
    queue = started_queue(rec, workers=1)
    try:
        queue.resize(3)
        for key in "abc":
            queue.put(key, "x")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and queue.running() < 3:
            time.sleep(0.01)
        assert queue.running() == 3
        for gate in rec.gates.values():
            gate.set()
        assert queue.wait_idle(5)
    finally:
        queue.stop(5)

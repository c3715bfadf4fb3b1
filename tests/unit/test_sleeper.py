"""The daemon's side of sleep: the ledger's activity rows and the access log reader."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.core.model import EnvKey
from reconciler.core.sleep import Rest
from reconciler.engine.ledger import Ledger
from reconciler.engine.sleeper import AccessLog

DEV = EnvKey("acme", "dev")
QA = EnvKey("acme", "qa")
T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_heard_keeps_the_newest_request_and_leaves_the_state(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.put_rest(DEV, Rest.ASLEEP, at(0))
    ledger.heard({DEV: at(5.25), QA: at(3)})
    ledger.heard({DEV: at(4)})  # the log read again after a restart: older, ignored
    found = ledger.activities()
    assert found[DEV].state is Rest.ASLEEP and found[DEV].since == at(0)
    assert found[DEV].last_request == at(5.25)  # to the microsecond: sleep_after may be 2s
    # An environment first heard of is awake since that request.
    assert (found[QA].state, found[QA].since, found[QA].last_request) == (
        Rest.AWAKE,
        at(3),
        at(3),
    )
    ledger.put_rest(DEV, Rest.AWAKE, at(9))
    assert ledger.activity(DEV) is not None
    assert ledger.activity(DEV).last_request == at(5.25)  # type: ignore[union-attr]
    ledger.forget_activity(DEV)
    assert ledger.activity(DEV) is None


def test_of_a_burst_of_wakes_exactly_one_wakes_it(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.put_rest(DEV, Rest.ASLEEP, at(0))
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(ledger.wake(DEV, at(1)))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert ledger.activity(DEV).state is Rest.WAKING  # type: ignore[union-attr]
    assert not ledger.wake(QA, at(1))  # no row: nothing to wake


def test_the_access_log_gives_complete_new_lines_once(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    reader = AccessLog(path)
    assert reader.read() == []  # no file yet
    path.write_bytes(b'{"a":1}\n{"b":')
    assert reader.read() == [b'{"a":1}']
    with path.open("ab") as fh:
        fh.write(b"2}\n\n")
    assert reader.read() == [b'{"b":2}']
    assert reader.read() == []


def test_a_rolled_access_log_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    reader = AccessLog(path)
    path.write_bytes(b"one\ntwo\n")
    assert reader.read() == [b"one", b"two"]
    os.rename(path, tmp_path / "access-2026.log")
    path.write_bytes(b"three\n")
    assert reader.read() == [b"three"]
    path.write_bytes(b"")  # truncated in place
    with path.open("ab") as fh:
        fh.write(b"four\n")
    assert reader.read() == [b"four"]

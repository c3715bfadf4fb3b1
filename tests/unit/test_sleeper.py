"""The daemon's side of sleep: the ledger's activity rows and the access log reader."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.core.durations import parse_duration
from reconciler.core.model import DesiredEnvironment, EnvKey, Tier
from reconciler.core.sleep import Rest
from reconciler.engine.engine import health_of
from reconciler.engine.ledger import Ledger
from reconciler.engine.routing import Routes
from reconciler.engine.sleeper import AccessLog, Sleeper
from reconciler.engine.status import Health, StatusStore
from tests.factories import desired, live
from tests.unit.test_routing import INGRESS, Proxies, everywhere, route_of, world

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


class Clock:
    """A settable clock for the sleeper."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def routed_dev(sleep_after: str | None = "1h") -> DesiredEnvironment:
    want = desired("dev", Tier.DEV)
    settings = replace(
        want.settings,
        sleep_after=None if sleep_after is None else parse_duration(sleep_after),
    )
    return replace(want, routed=True, settings=settings)


def access_line(host: str, at_: datetime, status: int = 503) -> str:
    entry = {"ts": at_.timestamp(), "request": {"host": host}, "status": status}
    return json.dumps(entry) + "\n"


def test_a_sleeper_finds_the_idle_wakes_on_a_request_and_the_route_follows(
    tmp_path: Path,
) -> None:
    """Idle past sleep_after: named; asleep: the waking page; a newer request: waking."""
    want = routed_dev()
    key = want.key
    ledger = Ledger(tmp_path / "ledger.db")
    status = StatusStore(tmp_path / "status.json")
    routes = Routes(
        "test",
        tmp_path / "proxy",
        status,
        lambda ref: "",
        factory=Proxies(),  # type: ignore[arg-type]
        asleep=lambda: {k for k, a in ledger.activities().items() if a.shows_waking_page},
    )
    desired_world = world(want)
    routes.sync(INGRESS, desired_world, everywhere(want))
    clock = Clock()
    log_file = tmp_path / "access.log"
    sleeper = Sleeper(log_file, ledger, routes, lambda: desired_world, clock)

    assert sleeper.idle() == []  # first seen: awake from now, a full hour ahead
    clock.now = at(3599)
    assert sleeper.idle() == []
    clock.now = at(3600)
    assert sleeper.idle() == [key]

    ledger.put_rest(key, Rest.ASLEEP, at(3600))
    routes.reload()
    assert route_of(routes, key)["asleep"] is True
    host = f"dev.acme.{INGRESS.domain}"
    log_file.write_text(access_line(host, at(3000), 200))  # before it fell asleep
    assert sleeper.read() == []
    with log_file.open("a") as fh:
        fh.write(access_line(host, at(3700)) + access_line("other.example.org", at(3700)))
    clock.now = at(3701)
    assert sleeper.read() == [key]
    assert ledger.activity(key).state is Rest.WAKING  # type: ignore[union-attr]
    assert ledger.activity(key).last_request == at(3700)  # type: ignore[union-attr]
    assert sleeper.read() == []  # nothing new: woken once
    assert sleeper.idle() == [key]  # its run starts it and gives the route back
    assert route_of(routes, key)["asleep"] is True  # until then, the waking page


def test_an_asleep_environment_that_can_no_longer_sleep_is_named(tmp_path: Path) -> None:
    """sleep_after set to null while it sleeps: its run wakes it."""
    want = routed_dev(None)
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.put_rest(want.key, Rest.ASLEEP, T0)
    status = StatusStore(tmp_path / "status.json")
    routes = Routes("test", tmp_path / "proxy", status, lambda ref: "")
    sleeper = Sleeper(tmp_path / "access.log", ledger, routes, lambda: world(want), Clock())
    assert sleeper.idle() == [want.key]
    assert sleeper.read() == []  # no routes loaded: the log's lines wait


def test_a_sleeping_environment_is_asleep_not_degraded_and_a_suspended_one_suspended() -> None:
    """Its containers are stopped on purpose: health says so, not Degraded."""
    want = routed_dev()
    have = live(want, state="exited")
    assert health_of(want, have) is Health.DEGRADED
    assert health_of(want, replace(have, asleep_since=T0)) is Health.ASLEEP
    suspended = replace(want, spec=replace(want.spec, suspended=True))
    assert health_of(suspended, replace(have, asleep_since=T0)) is Health.SUSPENDED

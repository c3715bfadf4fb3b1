"""Sleep and wake decisions (``reconciler.core.sleep``) with a fake clock, no services."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core.model import EnvKey
from reconciler.core.sleep import (
    Activity,
    Request,
    Rest,
    backup_current,
    data_tasks_wait,
    last_requests,
    parse_access_line,
    should_sleep,
    span,
    woken_by,
)

DEV = EnvKey("acme", "dev")
QA = EnvKey("acme", "qa")
T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("activity", "now", "sleeps"),
    [
        (Activity(DEV, Rest.AWAKE, T0), at(3599), False),
        (Activity(DEV, Rest.AWAKE, T0), at(3600), True),
        (Activity(DEV, Rest.AWAKE, T0, last_request=at(600)), at(3600), False),
        (Activity(DEV, Rest.AWAKE, T0, last_request=at(600)), at(4200), True),
        # A request older than the wake counts for nothing: a full sleep_after after waking.
        (Activity(DEV, Rest.AWAKE, at(600), last_request=T0), at(3600), False),
        (Activity(DEV, Rest.ASLEEP, T0), at(99999), False),
        (Activity(DEV, Rest.WAKING, T0), at(99999), False),
    ],
    ids=["fresh", "idle", "visited", "idle-after-visit", "woken", "asleep", "waking"],
)
def test_an_awake_environment_sleeps_after_sleep_after_without_a_request(
    activity: Activity, now: datetime, sleeps: bool
) -> None:
    assert should_sleep(activity, HOUR, now) is sleeps


def test_sleep_after_none_never_sleeps() -> None:
    assert not should_sleep(Activity(DEV, Rest.AWAKE, T0), None, at(10**8))


def test_only_a_request_after_falling_asleep_wakes() -> None:
    """A log read again after a restart holds older requests: they wake nothing."""
    asleep = Activity(DEV, Rest.ASLEEP, at(100))
    assert not woken_by(asleep, at(99))
    assert not woken_by(asleep, at(100))
    assert woken_by(asleep, at(101))
    assert not woken_by(Activity(DEV, Rest.WAKING, at(100)), at(200))
    assert not woken_by(Activity(DEV, Rest.AWAKE, at(100)), at(200))


def test_heard_keeps_the_newest_request() -> None:
    activity = Activity(DEV, Rest.AWAKE, T0).heard(at(10)).heard(at(5))
    assert activity.last_request == at(10) and activity.idle_since == at(10)
    assert Activity(DEV, Rest.ASLEEP, T0).shows_waking_page
    assert Activity(DEV, Rest.WAKING, T0).shows_waking_page
    assert not Activity(DEV, Rest.AWAKE, T0).shows_waking_page


def line(host: str, ts: float, status: int = 200, **extra: object) -> str:
    return json.dumps(
        {
            "level": "info",
            "ts": ts,
            "logger": "http.log.access.odooops",
            "msg": "handled request",
            "request": {"proto": "HTTP/2.0", "method": "GET", "host": host},
            "status": status,
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("dev.acme.example.com", "dev.acme.example.com"),
        ("DEV.Acme.example.com:8443", "dev.acme.example.com"),
        ("dev.acme.example.com.", "dev.acme.example.com"),
    ],
)
def test_an_access_line_gives_its_host_as_the_route_table_knows_it(
    host: str, expected: str
) -> None:
    found = parse_access_line(line(host, T0.timestamp(), 503))
    assert found == Request(expected, T0, 503)


@pytest.mark.parametrize(
    "text",
    [
        "",
        '{"level":"info","ts":1796500000.5,"msg":"serving initial configuration"}',
        '{"ts": 1796500000.5, "request": {"host": "dev.acme.examp',  # cut by a roll
        '{"ts": "soon", "request": {"host": "dev.acme.example.com"}}',
        '{"ts": 1796500000.5, "request": {"host": "[::1]:443"}}',
        "[1, 2]",
    ],
)
def test_anything_but_an_access_line_is_skipped(text: str) -> None:
    assert parse_access_line(text) is None


def test_last_requests_are_the_newest_per_environment_of_known_hosts() -> None:
    hosts = {"dev.acme.example.com": DEV, "erp.example.org": DEV, "qa.acme.example.com": QA}
    requests = [
        Request("dev.acme.example.com", at(5), 200),
        Request("erp.example.org", at(9), 200),
        Request("dev.acme.example.com", at(7), 200),
        Request("qa.acme.example.com", at(1), 503),
        Request("unknown.example.com", at(50), 404),
    ]
    assert last_requests(requests, hosts.get) == {DEV: at(9), QA: at(1)}


@pytest.mark.parametrize(
    ("duration", "shown"),
    [
        (timedelta(seconds=3), "3s"),
        (timedelta(seconds=90), "90s"),
        (timedelta(minutes=90), "90m"),
        (timedelta(hours=2), "2h"),
        (timedelta(days=7), "7d"),
        (timedelta(seconds=7261.5), "7261s"),
    ],
)
def test_a_span_is_written_as_the_state_format_writes_it(duration: timedelta, shown: str) -> None:
    assert span(duration) == shown


def test_a_sleeping_dev_tier_s_data_tasks_wait_for_its_database_server() -> None:
    assert data_tasks_wait(T0, own_database=True)
    assert not data_tasks_wait(T0, own_database=False)
    assert not data_tasks_wait(None, own_database=True)


@pytest.mark.parametrize(
    ("asleep_since", "last_backup", "current"),
    [
        (None, at(10), False),  # awake: its schedule decides
        (T0, None, False),  # never backed up
        (T0, at(-1), False),  # backed up before it fell asleep: written to since
        (T0, T0, True),
        (T0, at(60), True),  # backed up while asleep: nothing written since
    ],
)
def test_a_backup_taken_while_asleep_is_current(
    asleep_since: datetime | None, last_backup: datetime | None, current: bool
) -> None:
    assert backup_current(asleep_since, last_backup) is current

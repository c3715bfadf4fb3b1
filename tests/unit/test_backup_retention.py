"""Specification of backup retention: which backups expire, on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from reconciler.core.retention import BackupEntry, Retention, expired

# Wednesday 18 March 2026, ISO week 12.
NOW = datetime(2026, 3, 18, 13, 0, tzinfo=UTC)


def ago(hours: int, *, good: bool = True) -> BackupEntry:
    """An entry named after its age, e.g. ``good-168h`` or ``failed-2h``."""
    name = f"{'good' if good else 'failed'}-{hours}h"
    return BackupEntry(name, NOW - timedelta(hours=hours), good)


def at(stamp: str, *, good: bool = True) -> BackupEntry:
    return BackupEntry(stamp, datetime.fromisoformat(stamp).replace(tzinfo=UTC), good)


CASES = [
    (
        "days: younger than the limit stays, the limit itself and older go",
        Retention(days=7),
        [ago(1), ago(7 * 24 - 1), ago(7 * 24), ago(30 * 24)],
        {"good-168h", "good-720h"},
    ),
    (
        "days: the newest good backup stays however old it is",
        Retention(days=7),
        [ago(30 * 24), ago(40 * 24)],
        {"good-960h"},
    ),
    (
        "gfs: the newest good backup stays even outside every period",
        Retention(daily=1),
        [ago(10 * 24), ago(11 * 24)],
        {"good-264h"},
    ),
    (
        "no rule at all expires no good backup",
        Retention(),
        [ago(1), ago(5000), ago(90000)],
        set(),
    ),
    (
        "daily: the newest of each of the last N calendar days, today included",
        Retention(daily=2),
        [
            at("2026-03-18T12:00"),
            at("2026-03-18T06:00"),
            at("2026-03-17T23:00"),
            at("2026-03-17T01:00"),
            at("2026-03-16T23:59"),
        ],
        {"2026-03-18T06:00", "2026-03-17T01:00", "2026-03-16T23:59"},
    ),
    (
        "weekly: ISO weeks run Monday to Sunday",
        Retention(weekly=2),
        [
            at("2026-03-16T00:00"),
            at("2026-03-15T23:00"),
            at("2026-03-09T01:00"),
            at("2026-03-08T23:00"),
        ],
        {"2026-03-09T01:00", "2026-03-08T23:00"},
    ),
    (
        "monthly: calendar months, counting back across a year boundary",
        Retention(monthly=4),
        [
            at("2026-03-01T00:00"),
            at("2026-02-27T00:00"),
            at("2026-02-28T00:00"),
            at("2026-01-15T00:00"),
            at("2025-12-31T00:00"),
            at("2025-12-01T00:00"),
            at("2025-11-30T00:00"),
        ],
        {"2026-02-27T00:00", "2025-12-01T00:00", "2025-11-30T00:00"},
    ),
    (
        "a backup kept by days or by gfs stays",
        Retention(days=2, monthly=2),
        [
            at("2026-03-18T00:00"),
            at("2026-03-17T00:00"),
            at("2026-03-10T00:00"),
            at("2026-02-20T00:00"),
            at("2026-02-10T00:00"),
        ],
        {"2026-03-10T00:00", "2026-02-10T00:00"},
    ),
    (
        "failed: kept while it is the latest news and younger than 24 h",
        Retention(days=7),
        [ago(30), ago(2, good=False)],
        set(),
    ),
    (
        "failed: expired once older than 24 h even without a newer good backup",
        Retention(days=7),
        [ago(48), ago(25, good=False)],
        {"failed-25h"},
    ),
    (
        "failed: expired as soon as a newer good backup exists",
        Retention(days=7),
        [ago(1), ago(2, good=False)],
        {"failed-2h"},
    ),
    (
        "failed: a recent failure does not displace the newest good backup",
        Retention(days=1),
        [ago(1, good=False), ago(100)],
        set(),
    ),
    (
        "failed only: nothing good to keep, the old failures go",
        Retention(days=7),
        [ago(1, good=False), ago(30, good=False)],
        {"failed-30h"},
    ),
]


@pytest.mark.parametrize(
    ("case", "policy", "entries", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_expired(
    case: str, policy: Retention, entries: list[BackupEntry], expected: set[str]
) -> None:
    assert expired(entries, NOW, policy) == frozenset(expected)


def test_odoo_sh_rotation_over_a_year_of_six_hourly_backups_keeps_eleven() -> None:
    """7 daily, 4 weekly, 3 monthly on Wednesday 18 March 2026 at 13:00."""
    start = datetime(2025, 3, 18, 0, 0, tzinfo=UTC)
    entries = []
    moment = start
    while moment <= NOW:
        entries.append(BackupEntry(moment.strftime("%Y-%m-%dT%H:%M"), moment, True))
        moment += timedelta(hours=6)
    kept = {e.id for e in entries} - expired(entries, NOW, Retention(daily=7, weekly=4, monthly=3))
    assert kept == {
        # daily: today's newest, then the last backup of each of the six days before
        "2026-03-18T12:00",
        "2026-03-17T18:00",
        "2026-03-16T18:00",
        "2026-03-15T18:00",  # also the newest of ISO week 11
        "2026-03-14T18:00",
        "2026-03-13T18:00",
        "2026-03-12T18:00",
        # weekly: weeks 10 and 9 end on Sundays 8 and 1 March
        "2026-03-08T18:00",
        "2026-03-01T18:00",
        # monthly: the last backups of February and January
        "2026-02-28T18:00",
        "2026-01-31T18:00",
    }


def test_calendar_periods_are_those_of_the_time_zone_of_now() -> None:
    """At 01:00 in UTC+2, a backup taken at 22:30 UTC the day before belongs to today."""
    plus_two = timezone(timedelta(hours=2))
    now = datetime(2026, 3, 18, 1, 0, tzinfo=plus_two)
    entries = [
        BackupEntry("late-utc", datetime(2026, 3, 17, 22, 30, tzinfo=UTC), True),
        BackupEntry("earlier", datetime(2026, 3, 17, 21, 0, tzinfo=UTC), True),
    ]
    # In UTC+2 they fall on 18 and 17 March, each the newest of its day; in UTC both on the 17th.
    assert expired(entries, now, Retention(daily=2)) == set()
    assert expired(entries, now.astimezone(UTC), Retention(daily=2)) == {"earlier"}


@pytest.mark.parametrize("kwargs", [{"days": -1}, {"daily": -1}, {"weekly": -2}, {"monthly": -3}])
def test_negative_counts_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="negative"):
        Retention(**kwargs)


def test_gfs_applies_only_when_one_of_its_counts_is_set() -> None:
    assert not Retention(days=30).gfs
    assert Retention(monthly=1).gfs

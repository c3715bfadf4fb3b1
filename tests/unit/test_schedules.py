"""When a backup or restore test is due: schedules against a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.engine.schedules import due

NOW = datetime(2026, 11, 25, 3, 5, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("schedule", "last", "expected"),
    [
        ("never", None, False),
        ("never", NOW - timedelta(days=400), False),
        ("6h", None, True),
        ("6h", NOW - timedelta(hours=5, minutes=59), False),
        ("6h", NOW - timedelta(hours=6), True),
        ("24h", NOW - timedelta(hours=30), True),
        ("0 3 * * *", NOW - timedelta(hours=2), True),  # 03:00 passed since 01:05
        ("0 3 * * *", NOW - timedelta(minutes=4), False),  # taken at 03:01
        ("0 */6 * * *", NOW - timedelta(hours=4), True),  # taken 23:05: the 00:00 slot passed
        ("0 */6 * * *", NOW - timedelta(hours=3), False),  # taken 00:05: next slot 06:00
        ("0 */6 * * *", NOW - timedelta(minutes=30), False),
        ("0 3 * * 0", NOW - timedelta(days=8), True),  # crontab Sunday is 0
        ("0 3 * * 7", NOW - timedelta(days=2), False),  # ... and 7: last Sunday was 3 days ago
        ("0 3 * * 3", NOW - timedelta(days=1), True),  # Wednesday 03:00 is today
    ],
)
def test_due(schedule: str, last: datetime | None, expected: bool) -> None:
    assert due(schedule, last, NOW) is expected


def test_a_missed_slot_is_caught_up_once() -> None:
    """Daemon down over several slots: one backup when it is back, not one per slot."""
    last = NOW - timedelta(days=3)
    assert due("0 3 * * *", last, NOW)
    assert not due("0 3 * * *", NOW, NOW + timedelta(minutes=30))

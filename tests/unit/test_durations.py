"""Specification of the textual units: durations, sizes, CPU limits and schedules."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reconciler.core.durations import (
    Schedule,
    parse_cpu,
    parse_duration,
    parse_schedule,
    parse_size,
)

GOOD_DURATIONS = [
    ("45s", timedelta(seconds=45)),
    ("90m", timedelta(minutes=90)),
    ("36h", timedelta(hours=36)),
    ("7d", timedelta(days=7)),
    ("14d", timedelta(days=14)),
    ("007d", timedelta(days=7)),
]


@pytest.mark.parametrize(("text", "expected"), GOOD_DURATIONS)
def test_parse_duration_reads_one_number_and_one_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("7", "use a whole number followed by s, m, h or d"),
        ("7 days", "use a whole number followed by s, m, h or d"),
        ("1h30m", "use a whole number followed by s, m, h or d"),
        ("1.5h", "use a whole number followed by s, m, h or d"),
        ("7D", "use a whole number followed by s, m, h or d"),
        ("2w", "use a whole number followed by s, m, h or d"),
        ("-1d", "use a whole number followed by s, m, h or d"),
        ("", "use a whole number followed by s, m, h or d"),
        ("0d", "must be greater than zero"),
        ("9999999999d", "too long"),
        (7, "use a whole number followed by s, m, h or d"),
    ],
)
def test_parse_duration_rejects_anything_else_saying_why(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match="is not a valid duration") as info:
        parse_duration(value)  # type: ignore[arg-type]
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("512Mi", 512 * 2**20),
        ("8Gi", 8 * 2**30),
        ("1Ti", 2**40),
        ("64Ki", 64 * 1024),
        ("8G", 8 * 10**9),
        ("1024M", 1024 * 10**6),
        ("1K", 1000),
        ("2T", 2 * 10**12),
        ("1.5Gi", 3 * 2**29),
        ("0.5K", 500),
        ("1024", 1024),
        (1073741824, 2**30),
    ],
)
def test_parse_size_uses_binary_and_decimal_units(value: str | int, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("8 gigs", "use a number with a unit"),
        ("8 Gi", "use a number with a unit"),
        ("8GB", "use a number with a unit"),
        ("8gi", "use a number with a unit"),
        ("1.5", "not a whole number of bytes"),
        ("-1Gi", "use a number with a unit"),
        ("", "use a number with a unit"),
        ("0.1Ki", "not a whole number of bytes"),
        ("0Mi", "must be greater than zero"),
        (0, "must be greater than zero"),
        (-5, "must be greater than zero"),
        (True, "use a number with a unit"),
        (8.5, "use a number with a unit"),
    ],
)
def test_parse_size_rejects_anything_else_saying_why(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match="is not a valid size") as info:
        parse_size(value)  # type: ignore[arg-type]
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (4, 4.0),
        (0.5, 0.5),
        ("2", 2.0),
        ("0.25", 0.25),
        ("4000m", 4.0),
        ("500m", 0.5),
        ("1m", 0.001),
    ],
)
def test_parse_cpu_reads_cores_or_millicores(value: float | str, expected: float) -> None:
    assert parse_cpu(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0, "must be greater than zero"),
        (-1, "must be greater than zero"),
        ("0m", "must be greater than zero"),
        ("0", "must be greater than zero"),
        (float("inf"), "must be greater than zero"),
        (float("nan"), "must be greater than zero"),
        ("4 cores", "use a number of cores"),
        ("4000 m", "use a number of cores"),
        ("1.5m", "use a number of cores"),
        ("", "use a number of cores"),
        (True, "use a number of cores"),
        (None, "use a number of cores"),
    ],
)
def test_parse_cpu_rejects_anything_else_saying_why(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match="is not a valid CPU limit") as info:
        parse_cpu(value)  # type: ignore[arg-type]
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("never", Schedule("never")),
        ("6h", Schedule("interval", interval=timedelta(hours=6))),
        ("7d", Schedule("interval", interval=timedelta(days=7))),
        ("0 */6 * * *", Schedule("cron", cron="0 */6 * * *")),
        ("30 2 * * 1-5", Schedule("cron", cron="30 2 * * 1-5")),
        ("0 0 1,15 * *", Schedule("cron", cron="0 0 1,15 * *")),
        ("0 3 * jan-mar SUN", Schedule("cron", cron="0 3 * jan-mar SUN")),
        ("0 3 * * 7", Schedule("cron", cron="0 3 * * 7")),
        ("*/15 8-18/2 * * *", Schedule("cron", cron="*/15 8-18/2 * * *")),
        ("  0   4 * * *  ", Schedule("cron", cron="0 4 * * *")),
    ],
)
def test_parse_schedule_reads_never_interval_or_cron(text: str, expected: Schedule) -> None:
    assert parse_schedule(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("always", 'use "never", an interval'),
        ("6 hours", 'use "never", an interval'),
        ("0 */6 * *", 'use "never", an interval'),
        ("0 0 * * * *", 'use "never", an interval'),
        ("@daily", 'use "never", an interval'),
        ("0d", "must be greater than zero"),
        ("60 * * * *", 'minute "60" is not a number from 0 to 59'),
        ("0 25 * * *", 'hour "25" is not a number from 0 to 23'),
        ("0 0 0 * *", 'day of month "0" is not a number from 1 to 31'),
        ("0 0 * 13 *", 'month "13" is not a number from 1 to 12'),
        ("0 0 * * 8", 'day of week "8" is not a number from 0 to 7'),
        ("0 0 * * funday", 'day of week "funday"'),
        ("*/0 * * * *", "has a step of 0"),
        ("5-1 * * * *", 'range "5-1" runs backwards'),
        ("1,,2 * * * *", "is not a value, range, list or step"),
        ("? * * * *", "is not a value, range, list or step"),
    ],
)
def test_parse_schedule_rejects_anything_else_saying_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match="is not a valid") as info:
        parse_schedule(text)
    assert reason in str(info.value)


def test_schedule_is_frozen() -> None:
    """A parsed schedule is a value: it cannot be changed after parsing."""
    schedule = parse_schedule("never")
    with pytest.raises(AttributeError):
        schedule.kind = "cron"  # type: ignore[misc]

"""Parsers for the small textual units of the state format: durations, sizes, CPU, schedules.

Validation runs these after the schema pass, so a value with the right shape but no meaning
(``"0d"``, ``"0m"`` of CPU, a cron hour of 25) is reported on its own line; the model calls the
same functions to turn text into numbers, so what validates is exactly what runs.

Every parser raises ``ValueError`` whose message starts with the offending value and says what
is accepted; validation prefixes it with the key (``ttl: "0d" is not a valid duration: ...``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

__all__ = [
    "Schedule",
    "ScheduleKind",
    "format_instant",
    "parse_cpu",
    "parse_duration",
    "parse_instant",
    "parse_schedule",
    "parse_size",
]

_DURATION = re.compile(r"([0-9]+)([smhd])")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_DURATION_HINT = 'use a whole number followed by s, m, h or d, e.g. "90m", "36h" or "7d"'

_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?")
_SIZE_UNITS = {
    None: 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_SIZE_HINT = (
    'use a number with a unit Ki, Mi, Gi, Ti (binary) or K, M, G, T (decimal), e.g. "512Mi" or '
    '"8Gi", or a whole number of bytes'
)

_CORES = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_MILLICORES = re.compile(r"([0-9]+)m")
_CPU_HINT = 'use a number of cores (0.5, 4) or millicores ("4000m")'

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    """Names accepted instead of numbers, the first standing for ``low``."""


_CRON_FIELDS = (
    _CronField("minute", 0, 59),
    _CronField("hour", 0, 23),
    _CronField("day of month", 1, 31),
    _CronField("month", 1, 12, _MONTHS),
    # 0 and 7 are both Sunday, as in crontab(5).
    _CronField("day of week", 0, 7, _WEEKDAYS),
)
_CRON_ITEM = re.compile(r"(?P<range>\*|[0-9a-zA-Z]+(?:-[0-9a-zA-Z]+)?)(?:/(?P<step>[0-9]+))?")
_CRON_HINT = (
    'a cron expression has 5 fields: minute hour day-of-month month day-of-week, e.g. "0 */6 * * *"'
)


def _show(value: object) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return '"' + text.replace('"', '\\"') + '"'
    return repr(value)


def parse_duration(text: str) -> timedelta:
    """Parse ``"45s"``, ``"90m"``, ``"36h"`` or ``"7d"`` into a positive ``timedelta``.

    One unit per value keeps durations unambiguous to read in a diff; zero is refused because
    every duration of the format (a lifetime, an interval) is meaningless at zero.
    """
    if not isinstance(text, str):
        raise ValueError(f"{_show(text)} is not a valid duration: {_DURATION_HINT}")
    found = _DURATION.fullmatch(text)
    if found is None:
        raise ValueError(f"{_show(text)} is not a valid duration: {_DURATION_HINT}")
    amount, unit = int(found[1]), found[2]
    if amount == 0:
        raise ValueError(f"{_show(text)} is not a valid duration: it must be greater than zero")
    try:
        return timedelta(**{_DURATION_UNITS[unit]: amount})
    except OverflowError:
        raise ValueError(f"{_show(text)} is not a valid duration: it is too long") from None


_INSTANT = "%Y-%m-%dT%H:%M:%SZ"


def parse_instant(text: str) -> datetime:
    """Parse ``"2026-12-19T10:00:00Z"`` (UTC, to the second: the one form the state format
    writes, so a diff of an expiry reads at a glance) into an aware ``datetime``."""
    try:
        if not isinstance(text, str) or len(text) != 20:
            raise ValueError
        return datetime.strptime(text, _INSTANT).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(
            f"{_show(text)} is not a valid time: write it in UTC as YYYY-MM-DDTHH:MM:SSZ, "
            'e.g. "2026-12-19T10:00:00Z"'
        ) from None


def format_instant(at: datetime) -> str:
    """``at`` as the state format writes it (UTC, whole seconds)."""
    return at.astimezone(UTC).strftime(_INSTANT)


def parse_size(value: str | int) -> int:
    """Parse a size (``"512Mi"``, ``"8Gi"``, ``"8G"``, ``"1024M"``, ``"1.5Gi"``, ``1073741824``)
    into a positive number of bytes.

    ``Ki``/``Mi``/``Gi``/``Ti`` are powers of 1024 and ``K``/``M``/``G``/``T`` powers of 1000, as in
    Kubernetes and Docker; a bare number is bytes. Fractions are computed exactly (``Decimal``)
    and must come out as whole bytes.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{_show(value)} is not a valid size: {_SIZE_HINT}")
    if isinstance(value, int):
        size = value
    else:
        found = _SIZE.fullmatch(value)
        if found is None:
            raise ValueError(f"{_show(value)} is not a valid size: {_SIZE_HINT}")
        number, unit = Decimal(found[1]), found[2]
        exact = number * _SIZE_UNITS[unit]
        if exact != exact.to_integral_value():
            raise ValueError(
                f"{_show(value)} is not a valid size: it is not a whole number of bytes"
            )
        size = int(exact)
    if size <= 0:
        raise ValueError(f"{_show(value)} is not a valid size: it must be greater than zero")
    return size


def parse_cpu(value: float | int | str) -> float:
    """Parse a CPU limit (``4``, ``0.5``, ``"2"``, ``"4000m"``) into a positive number of cores."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{_show(value)} is not a valid CPU limit: {_CPU_HINT}")
    if isinstance(value, str):
        if millicores := _MILLICORES.fullmatch(value):
            cores = int(millicores[1]) / 1000
        elif _CORES.fullmatch(value):
            cores = float(value)
        else:
            raise ValueError(f"{_show(value)} is not a valid CPU limit: {_CPU_HINT}")
    else:
        cores = float(value)
    if not math.isfinite(cores) or cores <= 0:
        raise ValueError(f"{_show(value)} is not a valid CPU limit: it must be greater than zero")
    return cores


ScheduleKind = Literal["never", "interval", "cron"]


@dataclass(frozen=True)
class Schedule:
    """When something recurs: never, every ``interval``, or on a 5-field ``cron`` expression.

    ``cron`` keeps crontab(5) meaning (day of week 0 and 7 are Sunday, names allowed for months
    and weekdays) and is normalised to single spaces; whoever turns it into a trigger must keep
    that meaning (APScheduler's own ``day_of_week`` counts from Monday).
    """

    kind: ScheduleKind
    interval: timedelta | None = None
    cron: str | None = None


def parse_schedule(text: str) -> Schedule:
    """Parse ``"never"``, an interval (``"6h"``) or a 5-field cron (``"0 */6 * * *"``)."""
    if not isinstance(text, str):
        raise ValueError(
            f'{_show(text)} is not a valid schedule: use "never", an interval such as "6h" or '
            f"{_CRON_HINT}"
        )
    if text == "never":
        return Schedule("never")
    if _DURATION.fullmatch(text):
        return Schedule("interval", interval=parse_duration(text))
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f'{_show(text)} is not a valid schedule: use "never", an interval such as "6h" or '
            f"{_CRON_HINT}"
        )
    for spec, rule in zip(fields, _CRON_FIELDS, strict=True):
        problem = _cron_field_problem(spec, rule)
        if problem:
            raise ValueError(f"{_show(text)} is not a valid cron expression: {problem}")
    return Schedule("cron", cron=" ".join(fields))


def _cron_field_problem(spec: str, rule: _CronField) -> str | None:
    """Say what is wrong with one cron field, or ``None`` when it is valid."""
    for item in spec.split(","):
        found = _CRON_ITEM.fullmatch(item)
        if found is None:
            return f"{rule.name} field {_show(spec)} is not a value, range, list or step"
        if found["step"] is not None and int(found["step"]) == 0:
            return f"{rule.name} field {_show(spec)} has a step of 0"
        if found["range"] == "*":
            continue
        bounds = []
        for part in found["range"].split("-"):
            number = _cron_value(part, rule)
            if number is None:
                return (
                    f"{rule.name} {_show(part)} is not a number from {rule.low} to {rule.high}"
                    + (f" or a name ({', '.join(rule.names)})" if rule.names else "")
                )
            bounds.append(number)
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            return f"{rule.name} range {_show(found['range'])} runs backwards"
    return None


def _cron_value(part: str, rule: _CronField) -> int | None:
    if part.isdigit():
        number = int(part)
        return number if rule.low <= number <= rule.high else None
    lowered = part.lower()
    if lowered in rule.names:
        return rule.low + rule.names.index(lowered)
    return None

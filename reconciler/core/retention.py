"""Which backups to delete: a pure decision over their dates, tested with a fake clock.

The rule, in the order it is applied:

1. The newest good backup is never expired, whatever its age: a policy, a stopped schedule
   or a wrong clock must never leave an environment with no backup at all.
2. ``days``: every good backup younger than ``days`` days is kept.
3. Grandfather-father-son, when any of ``daily``, ``weekly``, ``monthly`` is above zero: the
   newest good backup of each of the last ``daily`` calendar days, of each of the last
   ``weekly`` ISO weeks and of each of the last ``monthly`` calendar months is kept. The
   periods count back from the one holding ``now`` (which is included) and are taken in the
   time zone of ``now``. Odoo.sh keeps 7 daily, 4 weekly and 3 monthly.
4. A backup kept by any rule stays; every other good backup expires.
5. A policy with no rule at all (``Retention()``) expires no good backup: forgetting to
   configure retention must never delete data.
6. A failed backup (``good`` false) is kept for diagnosis until a newer good backup exists
   or it is older than 24 hours, whichever comes first.

Nothing here reads a clock or storage; the caller lists backups, passes ``now`` and deletes
what comes back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

__all__ = ["FAILED_KEPT_FOR", "BackupEntry", "Retention", "expired"]

FAILED_KEPT_FOR = timedelta(hours=24)


@dataclass(frozen=True)
class Retention:
    """How long backups are kept; see the module docstring for the exact rule."""

    days: int | None = None
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def __post_init__(self) -> None:
        if self.days is not None and self.days < 0:
            raise ValueError("retention days must not be negative")
        if min(self.daily, self.weekly, self.monthly) < 0:
            raise ValueError("retention daily, weekly and monthly must not be negative")

    @property
    def gfs(self) -> bool:
        """Whether grandfather-father-son rotation applies."""
        return self.daily > 0 or self.weekly > 0 or self.monthly > 0


@dataclass(frozen=True)
class BackupEntry:
    """What retention needs to know of one backup: its id, when it was taken, whether it worked."""

    id: str
    taken_at: datetime
    good: bool


def expired(entries: Iterable[BackupEntry], now: datetime, policy: Retention) -> frozenset[str]:
    """The ids of the backups to delete under ``policy`` at ``now``."""
    entries = list(entries)
    good = sorted((e for e in entries if e.good), key=lambda e: (e.taken_at, e.id), reverse=True)
    keep: set[str] = set()
    if policy.days is None and not policy.gfs:
        keep.update(e.id for e in good)
    if good:
        keep.add(good[0].id)
    if policy.days is not None:
        max_age = timedelta(days=policy.days)
        keep.update(e.id for e in good if now - e.taken_at < max_age)
    if policy.gfs:
        keep.update(_gfs_keep(good, now, policy))
    newest_good = good[0].taken_at if good else None
    doomed = {e.id for e in good if e.id not in keep}
    for entry in entries:
        if entry.good:
            continue
        superseded = newest_good is not None and newest_good > entry.taken_at
        if superseded or now - entry.taken_at > FAILED_KEPT_FOR:
            doomed.add(entry.id)
    return frozenset(doomed)


def _gfs_keep(newest_first: list[BackupEntry], now: datetime, policy: Retention) -> set[str]:
    """The newest backup of each of the recent days, ISO weeks and months."""
    today = now.date()
    days = {today - timedelta(days=i) for i in range(policy.daily)}
    weeks = {_week(today - timedelta(weeks=i)) for i in range(policy.weekly)}
    months = {_month_back(today, i) for i in range(policy.monthly)}
    seen_days: set[date] = set()
    seen_weeks: set[tuple[int, int]] = set()
    seen_months: set[tuple[int, int]] = set()
    keep: set[str] = set()
    for entry in newest_first:
        day = _local(entry.taken_at, now).date()
        week, month = _week(day), (day.year, day.month)
        if day in days and day not in seen_days:
            seen_days.add(day)
            keep.add(entry.id)
        if week in weeks and week not in seen_weeks:
            seen_weeks.add(week)
            keep.add(entry.id)
        if month in months and month not in seen_months:
            seen_months.add(month)
            keep.add(entry.id)
    return keep


def _local(moment: datetime, now: datetime) -> datetime:
    """``moment`` in the time zone of ``now``, so that calendar periods agree."""
    if moment.tzinfo is not None and now.tzinfo is not None:
        return moment.astimezone(now.tzinfo)
    return moment


def _week(day: date) -> tuple[int, int]:
    iso = day.isocalendar()
    return (iso.year, iso.week)


def _month_back(day: date, months: int) -> tuple[int, int]:
    index = day.year * 12 + (day.month - 1) - months
    return (index // 12, index % 12 + 1)

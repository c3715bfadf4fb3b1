"""When a recurring data task is due: pure functions of the schedule, the last run and now.

Schedules are level-triggered like everything else: the daemon asks every minute "is a backup
of this environment due?" from the time of its newest good backup, instead of keeping timers
that a restart would lose. A missed slot (daemon down at 03:00) is therefore caught up at the
next check, once, not once per missed slot.
"""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.triggers.cron import CronTrigger

from reconciler.durations import parse_schedule

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def due(schedule: str, last: datetime | None, now: datetime) -> bool:
    """Whether a task on ``schedule`` that last ran at ``last`` should run at ``now``."""
    parsed = parse_schedule(schedule)
    if parsed.kind == "never":
        return False
    if last is None:
        return True
    if parsed.kind == "interval":
        assert parsed.interval is not None
        return now - last >= parsed.interval
    assert parsed.cron is not None
    upcoming = cron_trigger(parsed.cron).get_next_fire_time(None, last)
    return upcoming is not None and upcoming <= now


def cron_trigger(expr: str) -> CronTrigger:
    """A UTC trigger with crontab(5) meaning: day of week 0 and 7 are Sunday.

    APScheduler counts weekdays from Monday, so numeric weekdays are turned into names.
    """
    minute, hour, day, month, dow = expr.split()
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_names(dow),
        timezone=UTC,
    )


def _names(field: str) -> str:
    out = []
    for item in field.split(","):
        base, _, step = item.partition("/")
        parts = [_WEEKDAYS[int(p)] if p.isdigit() else p for p in base.split("-")]
        out.append("-".join(parts) + (f"/{step}" if step else ""))
    return ",".join(out)

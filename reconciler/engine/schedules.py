"""When a recurring data task is due: pure functions of the schedule, the last run and now.

Schedules are level-triggered like everything else: the daemon asks every minute "is a backup
of this environment due?" from the time of its newest good backup, instead of keeping timers
that a restart would lose. A missed slot (daemon down at 03:00) is therefore caught up at the
next check, once, not once per missed slot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial

from apscheduler.triggers.cron import CronTrigger

from reconciler.core import golden as goldens
from reconciler.core.durations import parse_schedule
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import Desired, DesiredEnvironment, EnvKey, StateConfig
from reconciler.core.sleep import backup_current, data_tasks_wait
from reconciler.data.operations import DataOps
from reconciler.engine.status import EnvironmentStatus

log = logging.getLogger("odooops.schedules")

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


class DataSchedules:
    """Starts the backups, retention runs, restore tests, removals of kept data (an
    update's replaced database, past ``keep_previous``) and refreshes of golden copies that
    are due.

    Each runs in a small pool (at most two at once), never in the reconcile loop, and one
    environment never has the same task twice in flight.
    """

    def __init__(
        self,
        data: DataOps,
        desired: Callable[[], Desired | None],
        statuses: Callable[[], Mapping[str, EnvironmentStatus]],
        is_initialised: Callable[[DesiredEnvironment], bool],
        restore_schedule: Callable[[], str],
        state: Callable[[], StateConfig | None] = lambda: None,
    ) -> None:
        self.data = data
        self._desired, self._statuses = desired, statuses
        self._is_initialised, self._restore_schedule = is_initialised, restore_schedule
        self._state = state
        # Golden copies whose last refreshes failed: when, and how many times in a row.
        self._golden_failed: dict[EnvKey, tuple[datetime, int]] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="backup")
        self._running: set[tuple[str, EnvKey]] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run(self, now: datetime, wait: bool = False) -> list[str]:
        """Start what is due at ``now``; return what was started."""
        current = self._desired()
        if current is None:
            return []
        statuses = self._statuses()
        started: list[str] = []
        futures: list[Future[None]] = []
        restore_schedule = self._restore_schedule()
        for key, want in sorted(current.environments.items()):
            status = statuses.get(str(key))
            last = parse_time(status.last_backup) if status else None
            asleep = parse_time(status.asleep_since) if status else None
            if data_tasks_wait(asleep, own_database=want.server is None):
                continue
            if (
                due(want.settings.backup_schedule, last, now)
                and not backup_current(asleep, last)
                and self._is_initialised(want)
            ):
                futures.extend(
                    self._submit("backup", key, partial(self.data.scheduled_backup, want))
                )
                started.append(f"backup {key}")
            if self.data.kept_expired(key, now):
                futures.extend(
                    self._submit("expire-kept", key, partial(self.data.expire_kept, want))
                )
                started.append(f"removal of the kept data of {key}")
            if want.settings.backup_schedule == "never" or last is None:
                continue
            tested = parse_time(status.last_restore_test) if status else None
            if due(restore_schedule, tested, now):
                futures.extend(
                    self._submit("restore-test", key, partial(self.data.restore_test, want))
                )
                started.append(f"restore test {key}")
        for what, future in self._golden(current, now):
            started.append(what)
            futures.append(future)
        if wait:
            for future in futures:
                future.result()
        return started

    def _golden(self, current: Desired, now: datetime) -> list[tuple[str, Future[None]]]:
        """Golden copies due for a refresh (none yet, production updated since, or the
        policy's schedule), and those nothing copies any more, to drop."""
        state = self._state()
        policy = state.policies.golden if state is not None else None
        out: list[tuple[str, Future[None]]] = []
        if state is not None and policy is not None:
            for key in goldens.wanted(current, state.policies):
                want = current.environments[key]
                if not self._is_initialised(want):
                    continue
                record, revision = self.data.golden_state(key)
                scheduled = record is not None and due(policy.refresh, record.refreshed_at, now)
                why = goldens.refresh_due(policy, record, revision, scheduled)
                if why is None or self._backing_off(key, now):
                    continue
                refresh = partial(self._refresh_golden, key, why, now)
                out.extend(
                    (f"golden copy of {key} ({why})", f)
                    for f in self._submit("golden", key, refresh)
                )
        for key in self.data.golden_unwanted():
            drop = partial(self.data.drop_golden, key)
            out.extend(
                (f"removal of the golden copy of {key}", f)
                for f in self._submit("golden", key, drop)
            )
        return out

    def _backing_off(self, key: EnvKey, now: datetime) -> bool:
        with self._lock:
            failed = self._golden_failed.get(key)
        return failed is not None and now < failed[0] + goldens.retry_after(failed[1])

    def _refresh_golden(self, key: EnvKey, why: str, now: datetime) -> None:
        """A refresh; a failure is remembered so the next tries back off, then raised."""
        try:
            self.data.refresh_golden(key, why)
        except BaseException:
            with self._lock:
                failures = self._golden_failed.get(key, (now, 0))[1] + 1
                self._golden_failed[key] = (now, failures)
            raise
        with self._lock:
            self._golden_failed.pop(key, None)

    def _submit(self, kind: str, key: EnvKey, fn: Callable[[], object]) -> list[Future[None]]:
        with self._lock:
            if (kind, key) in self._running:
                return []
            self._running.add((kind, key))

        def run() -> None:
            try:
                fn()
            except OdooOpsError as exc:
                log.error("%s of %s failed: %s", kind, key, exc.render())
            except Exception:
                log.exception("%s of %s crashed", kind, key)
            finally:
                with self._lock:
                    self._running.discard((kind, key))

        return [self._pool.submit(run)]


def parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)

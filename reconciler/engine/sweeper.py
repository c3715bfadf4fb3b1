"""The TTL sweeper: expired environment files removed, files without an expiry stamped.

Both are commits to the state repository, authored by OdooOps like the lock-file pins, so
``git log`` says what went and why and ``git revert`` brings an environment back; the
planner then prunes a removed environment as for any file a person removed. What is due is
``reconciler.core.expiry.sweep``'s decision, a pure function of the state and the clock.

Order and safety:

- The decision is made again on the head each commit lands on (``GitSource.commit_with``
  re-runs the build after a concurrent push), so an ``odooops env extend`` or a user's edit
  that lands meanwhile wins: an environment is removed only if the head still says it has
  expired, and a concurrent write is never overwritten.
- Each change is validated against the state it lands on, as any write is: a removal the
  state refuses (another environment copies its database from it) is left out, logged, and
  tried again on the next run; the others go on.
- Removals are one commit, stamps another: a stamp lies in the future, so nothing is
  removed on the run that stamps it (an upgrade never deletes a long-lived environment
  that was written before expiries existed, it shows it will).
- A run is due at most once a minute (``EVERY``, in the ledger's ``tasks`` table, so a
  restart neither loses nor repeats it). A read-only daemon only reports.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from reconciler.core import durations, expiry, faults
from reconciler.core.config import LoadedState
from reconciler.core.errors import InvalidState
from reconciler.core.model import EnvKey, StateConfig
from reconciler.core.secretrefs import SecretPolicy
from reconciler.core.validation import applied
from reconciler.engine.ledger import Ledger
from reconciler.gitops import changes
from reconciler.gitops.gitsource import Author, GitSource

log = logging.getLogger("odooops.sweeper")

TASK = "ttl-sweep"
EVERY = timedelta(minutes=1)
AUTHOR = Author("OdooOps", "odooops@localhost")
VIA = "OdooOps-Via: ttl-sweeper"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SweepResult:
    """One run: what was removed and stamped (each with its expiry), the removals the
    state refused (and why), and the commits made. ``reported`` when nothing was written
    (a read-only daemon): ``due`` is then what a writing daemon would have done."""

    at: datetime
    removed: Mapping[EnvKey, datetime] = field(default_factory=dict)
    stamped: Mapping[EnvKey, datetime] = field(default_factory=dict)
    refused: Mapping[EnvKey, str] = field(default_factory=dict)
    commits: tuple[str, ...] = ()
    due: expiry.Sweep | None = None


class Sweeper:
    """Sweeps the state repository of one daemon; one run at a time."""

    def __init__(
        self,
        repo: GitSource,
        branch: str,
        secrets: Callable[[], SecretPolicy],
        ledger: Ledger,
        *,
        clock: Callable[[], datetime] = _utcnow,
        read_only: bool = False,
    ) -> None:
        self.repo, self.branch, self.secrets, self.ledger = repo, branch, secrets, ledger
        self._clock, self.read_only = clock, read_only
        self._lock = threading.Lock()
        self._reported: set[tuple[EnvKey, datetime]] = set()

    def sweep_if_due(self, seen: StateConfig | None) -> SweepResult | None:
        """A run when the last is ``EVERY`` old, else None. ``seen`` is the daemon's view
        of the state: when nothing is due in it, the repository is not even read."""
        last = self.ledger.last_run(TASK)
        now = self._clock()
        if last is not None and now - last < EVERY:
            return None
        result = self.sweep(seen)
        self.ledger.put_last_run(TASK, now)
        return result

    def sweep(self, seen: StateConfig | None = None) -> SweepResult:
        """Remove what has expired, then stamp what has no expiry, each by one commit."""
        with self._lock:
            now = self._clock()
            if seen is not None and not expiry.sweep(seen, now):
                return SweepResult(now)
            if self.read_only:
                due = expiry.sweep(seen, now) if seen is not None else None
                self._report(due)
                return SweepResult(now, due=due)
            faults.boundary("sweeper", "before the removals")
            removed, refused, removal = self._commit(now, remove=True)
            faults.boundary("sweeper", "after the removals, before the stamps")
            stamped, _, stamp = self._commit(now, remove=False)
            faults.boundary("sweeper", "after the stamps")
            for key, at in removed.items():
                log.info("removed %s: expired at %s", key, durations.format_instant(at))
            for key, at in stamped.items():
                log.info("%s had no expiry: expires at %s", key, durations.format_instant(at))
            for key, why in refused.items():
                log.warning("expired %s not removed, tried again next run: %s", key, why)
            commits = tuple(c for c in (removal, stamp) if c)
            return SweepResult(now, removed, stamped, refused, commits)

    def _commit(
        self, now: datetime, *, remove: bool
    ) -> tuple[dict[EnvKey, datetime], dict[EnvKey, str], str]:
        """One commit of the removals (``remove``) or of the stamps due on the head; what it
        holds, what the state refused, and the commit ("" when there was nothing to do)."""
        done: dict[EnvKey, datetime] = {}
        refused: dict[EnvKey, str] = {}
        policy = self.secrets()

        def build(files: dict[str, bytes]) -> tuple[dict[str, bytes | None], str]:
            # Runs again on the new head after a concurrent push: decided anew each time.
            done.clear()
            refused.clear()
            state = LoadedState.load(files, "pending", self.repo.display_url, policy)
            due = expiry.sweep(state.config, now)
            edits: dict[str, bytes | None] = {}
            for key, at in (due.remove if remove else due.stamp).items():
                op = (
                    changes.Operation("destroy", key)
                    if remove
                    else changes.Operation("update", key, {"expires": durations.format_instant(at)})
                )
                edit = op.apply(applied(files, edits))
                try:
                    state = changes.validated_after(state, edit)
                except InvalidState as exc:
                    refused[key] = "; ".join(str(p) for p in exc.problems) or exc.message
                    continue
                edits.update(edit)
                done[key] = at
            return edits, _message(done, remove)

        try:
            commit = self.repo.commit_with(self.branch, build, AUTHOR)
        except InvalidState as exc:  # the head itself is invalid: nothing lands on it
            log.error("TTL sweep skipped: the state is invalid: %s", exc.render())
            return {}, {}, ""
        return done, refused, commit if done else ""

    def _report(self, due: expiry.Sweep | None) -> None:
        """What a read-only daemon would do, each environment once per expiry."""
        if due is None:
            return
        for key, at in due.remove.items():
            if (key, at) not in self._reported:
                self._reported.add((key, at))
                log.warning(
                    "%s expired at %s; this daemon is read-only and does not remove it",
                    key,
                    durations.format_instant(at),
                )


def _message(done: Mapping[EnvKey, datetime], remove: bool) -> str:
    """``chore(ttl): remove expired acme/qa (expired 2026-12-19T10:00:00Z)``, or a count
    with one line per environment below it when there are several."""
    if not done:
        return ""
    what = "expired" if remove else "expires"
    lines = [f"{key} ({what} {durations.format_instant(at)})" for key, at in done.items()]
    if remove:
        title = (
            f"chore(ttl): remove expired {lines[0]}"
            if len(lines) == 1
            else f"chore(ttl): remove {len(lines)} expired environments"
        )
    else:
        title = (
            f"chore(ttl): set the expiry of {lines[0]}"
            if len(lines) == 1
            else f"chore(ttl): set the expiry of {len(lines)} environments"
        )
    body = "".join(f"- {line}\n" for line in lines) + "\n" if len(lines) > 1 else ""
    return f"{title}\n\n{body}{VIA}\n"

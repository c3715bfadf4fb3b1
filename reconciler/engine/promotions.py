"""The automatic ``promote`` rules of policies.yaml: the commit ``odooops promote`` makes, made
by the daemon on each rule's schedule.

Each (rule, source, target) pair is its own task in the ledger (``promote SRC->DST``), so a
restart neither repeats a check that ran nor loses one that was due (``schedules.due``). A
check that decided consumes its slot: a source that has not earned promotion at 02:00 is
looked at again at the next slot, and why it waits is logged; a commit that did not land (the
state repository unreachable) is tried again at the next check, a minute later.

The commit is authored by "OdooOps" and goes through the state writer like any other write,
so a protected target gets a change request. It is idempotent: a target pinned to the
revision already gets no commit, and a change request still open for the same promotion
(same title) is not opened twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from reconciler.core.errors import OdooOpsError
from reconciler.core.faults import boundary
from reconciler.core.model import EnvKey, StateConfig
from reconciler.core.promotion import Promotion, PromotionRefused, Release, decide, rule_pairs
from reconciler.engine.ledger import Ledger
from reconciler.engine.schedules import due
from reconciler.engine.sources import PIN_AUTHOR
from reconciler.gitops import changes
from reconciler.gitops.changerequests import ChangeRequests
from reconciler.gitops.statewriter import StateWriter

log = logging.getLogger("odooops.promotions")


class Promoter:
    """Checks the rules that are due and commits the promotions they decide."""

    def __init__(
        self,
        state: Callable[[], StateConfig | None],
        release: Callable[[EnvKey], Release | None],
        writer: StateWriter,
        ledger: Ledger,
    ) -> None:
        self._state, self._release = state, release
        self.writer, self.ledger = writer, ledger

    def run(self, now: datetime) -> list[str]:
        """Check every rule due at ``now``; return what was committed (one line each)."""
        try:
            config = self._state()
        except OdooOpsError as exc:  # the state cannot be read now: the next check retries
            log.warning("promote rules not checked: %s", exc.render())
            return []
        if config is None:
            return []
        done: list[str] = []
        for rule, source, target in rule_pairs(config.policies.promote, config.environments):
            task = f"promote {source}->{target.key}"
            last = self.ledger.last_run(task)
            # The ledger keeps whole seconds: a check at 02:00:00.4 reads back as 02:00:00,
            # which a cron slot of 02:00 would find due once more.
            if not due(rule.schedule, last + timedelta(seconds=1) if last else None, now):
                continue
            try:
                promotion = decide(self._release(source), source, target)
                boundary("promotions", f"{task}: decided, nothing committed")
                if promotion.changes and not self._requested(promotion):
                    done.append(self._commit(promotion))
                    boundary("promotions", f"{task}: committed, the check not recorded")
            except PromotionRefused as exc:
                log.info("%s: waiting: %s", task, exc.message)
            except OdooOpsError as exc:  # the commit did not land: tried again next check
                log.error("%s failed: %s", task, exc.render())
                continue
            # Recorded once decided, never before: a daemon killed before this line checks
            # again and finds the target pinned already (or the request open).
            self.ledger.put_last_run(task, now)
        return done

    def _requested(self, promotion: Promotion) -> bool:
        """An open change request proposes this very promotion already."""
        requests = ChangeRequests(self.writer.repo, self.writer.branch, self.writer.secrets)
        return any(cr.state == "open" and cr.title == promotion.title for cr in requests.list())

    def _commit(self, promotion: Promotion) -> str:
        op = changes.Operation(
            "promote",
            promotion.target,
            promotion.fields(),
            title=promotion.title,
            trailers=promotion.trailers(),
        )
        result = self.writer.submit(op, PIN_AUTHOR, via="daemon")
        where = f"change request {result.change_request_id}" if result.change_request else "main"
        line = f"{promotion.title} ({result.commit[:12]} on {where})"
        log.info("%s", line)
        return line

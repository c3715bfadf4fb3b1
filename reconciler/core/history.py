"""An environment's deployment history and the choice of a rollback target: pure decisions.

The ledger records every switch of an environment's Odoo container to a new image
(``reconciler.engine.ledger``), and the engine judges each one when its run ends: ``healthy``
once the environment converged Ready on it, ``failed`` when the run that deployed it failed
(an attempt that never got to serve is recorded too, so a broken revision shows in the
history instead of vanishing), ``rolled-back`` once the environment went back to an older
version. A rollback goes to the last *healthy* version before the current one: a version that
failed, or that someone already rolled away from, is never picked by default, and an explicit
``--to`` must name a version that really was deployed, since only those have an image kept
for the way back (``reconciler.core.imagegc.KEEP_DEPLOYED``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from reconciler.core.errors import OdooOpsError

# Versions ``odooops history`` shows: as many as the image collector keeps for a rollback.
SHOWN = 10
# A revision as a user types it: a commit or an unambiguous prefix of one.
REVISION = re.compile(r"[0-9a-f]{7,40}")
PRE_UPDATE = "before update"


class Health(StrEnum):
    """What became of one deployment (Argo CD's words where they fit)."""

    PROGRESSING = "progressing"  # switched; its run has not ended yet
    HEALTHY = "healthy"  # its run converged Ready on it
    FAILED = "failed"  # its run failed, before or after the switch
    ROLLED_BACK = "rolled-back"  # the environment went back to an older version after it
    UNKNOWN = "unknown"  # recorded before the ledger judged deployments

    @classmethod
    def of(cls, text: str) -> Health:
        return cls(text) if text in cls._value2member_map_ else cls.UNKNOWN


@dataclass(frozen=True)
class Deployed:
    """One row of an environment's history, newest first in ``Ledger.history``.

    ``attempt``: the run failed before the new container served (it never ran the
    environment, so it keeps no image for a rollback). ``state_commit``: the state
    repository's commit the run applied."""

    revision: str
    image: str
    image_id: str
    at: datetime
    health: Health
    judged_at: datetime | None = None
    state_commit: str = ""
    reason: str = ""
    attempt: bool = False


class NoRollbackTarget(OdooOpsError):
    code = "no_rollback_target"


class RevisionNotDeployed(OdooOpsError):
    code = "revision_not_deployed"


class ImageCollected(OdooOpsError):
    code = "image_collected"


def shown(history: Sequence[Deployed], limit: int = SHOWN) -> list[Deployed]:
    """The newest ``limit`` rows, attempts included (a failure is part of the story)."""
    return list(history[:limit])


def choose_target(
    history: Sequence[Deployed], current: str, env: str, to: str | None = None
) -> Deployed:
    """The version a rollback of ``env`` (now at revision ``current``) goes to.

    Without ``to``: the newest healthy deployment of another revision, older than the newest
    deployment of the current one. With ``to``: the newest deployment of that revision (a
    prefix of at least 7 hex digits), which must have served (an attempt never did) and must
    not be the current revision. ``history`` is newest first."""
    served = [d for d in history if not d.attempt]
    if to is not None:
        wanted = to.strip().lower()
        if not REVISION.fullmatch(wanted):
            raise RevisionNotDeployed(
                f"{to!r} is not a revision: a commit of the app repository (7 to 40 hex digits)",
                remediation=f"odooops history {env}",
            )
        matches = {d.revision for d in served if d.revision.startswith(wanted)}
        if len(matches) > 1:
            raise RevisionNotDeployed(
                f"{to} names {len(matches)} deployed revisions of {env}: give more digits",
                remediation=f"odooops history {env}",
            )
        if not matches:
            raise RevisionNotDeployed(
                f"{to} was never deployed to {env} (among its recorded deployments): a "
                "rollback goes back to a version that served, whose image is kept",
                remediation=f"odooops history {env}; to deploy another commit: odooops deploy "
                f"{env} --revision {wanted}",
            )
        revision = matches.pop()
        if revision == current:
            raise RevisionNotDeployed(
                f"{env} runs revision {revision[:12]} already: nothing to roll back to",
                remediation=f"odooops history {env}",
            )
        return next(d for d in served if d.revision == revision)
    since = next((i for i, d in enumerate(served) if d.revision == current), 0)
    for d in served[since:]:
        if d.revision != current and d.health is Health.HEALTHY:
            return d
    raise NoRollbackTarget(
        f"{env} has no healthy version before revision {current[:12] or 'unknown'} in its "
        "deployment history",
        remediation=f"odooops history {env}; then: odooops rollback {env} --to REV",
    )


def pre_update_backup(
    backups: Iterable[Mapping[str, Any]], revision: str
) -> Mapping[str, Any] | None:
    """The newest good backup taken before an update moved the data away from ``revision``:
    the data exactly as that revision left it (``data_revision`` of the manifest)."""
    found = [
        b
        for b in backups
        if b.get("status") == "good"
        and b.get("data_revision") == revision
        and str(b.get("reason", "")).startswith(PRE_UPDATE)
    ]
    return max(found, key=lambda b: str(b.get("started_at", "")), default=None)


def kept_at(kept: Mapping[str, Any] | None, revision: str, now: str) -> bool:
    """Whether the data an update on a copy replaced (kept for ``keep_previous``) is the data
    of ``revision`` and still there (``now``: an ISO time, as the kept record's ``until``)."""
    return bool(kept and kept.get("revision") == revision and str(kept.get("until", "")) > now)

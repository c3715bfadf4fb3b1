"""``odooops history`` and ``odooops rollback``: the facts behind them, and the marks a
rollback with data leaves for the engine.

The history is the ledger's record of what ran (``reconciler.core.history``), joined with what
is still there for the way back: the image (the collector keeps the last ten deployed of each
environment), the data an update on a copy replaced (``kept``), a backup taken before the
update that moved the data away from that version, and the state repository's commit that
put it in place (its author and message).

A rollback is a commit like every write: this module only decides the target and refuses
what cannot work *before* anything is written (an image already collected, no data to bring
back), then marks the data (a ledger record the engine honours when it deploys the pinned
revision), so a daemon killed between the commit and the restore still restores, once. The
caller commits the pin and takes the mark back if the commit fails: nothing half-made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from reconciler.core.errors import OdooOpsError
from reconciler.core.history import (
    SHOWN,
    Deployed,
    ImageCollected,
    choose_target,
    kept_at,
    pre_update_backup,
    shown,
)
from reconciler.core.model import EnvKey
from reconciler.drivers.protocols import Runtime
from reconciler.engine.ledger import Ledger
from reconciler.gitops.gitsource import CommitInfo

# (environment file path, state commit) -> the commit at or before it that last changed the file.
CommitLookup = Callable[[str, str], CommitInfo | None]


class RollbackData(Protocol):
    """The data plane's part (``reconciler.data.operations.DataOps``)."""

    def backups(self, key: EnvKey) -> list[dict[str, Any]]: ...

    def request_rollback(self, key: EnvKey, confirm: bool = False) -> dict[str, Any]: ...

    def cancel_rollback(self, key: EnvKey) -> None: ...

    def request_restore(
        self, key: EnvKey, revision: str, backup_id: str, data_revision: str
    ) -> dict[str, Any]: ...

    def cancel_restore(self, key: EnvKey) -> None: ...


@dataclass(frozen=True)
class Rollback:
    """A rollback decided and its data marked: ``data`` is ``none``, ``kept`` (the data an
    update on a copy replaced) or ``backup`` (restored from ``backup``)."""

    key: EnvKey
    target: Deployed
    current: str
    data: str = "none"
    backup: str = ""

    def trailers(self) -> tuple[tuple[str, str], ...]:
        return (
            ("Rollback-From", self.current),
            ("Rollback-To", self.target.revision),
            ("Rollback-Data", self.data if not self.backup else f"backup {self.backup}"),
        )


def _now() -> datetime:
    return datetime.now(UTC)


class Histories:
    """Reads an environment's history; prepares its rollbacks."""

    def __init__(
        self,
        ledger: Ledger,
        runtime: Runtime,
        data: Callable[[], RollbackData],
        commits: CommitLookup,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.ledger, self.runtime = ledger, runtime
        self._data, self._commits, self._clock = data, commits, clock

    def describe(self, key: EnvKey, current: str) -> dict[str, Any]:
        """The last ``SHOWN`` deployments of ``key`` (now pinned to ``current``), newest
        first, each with what a rollback to it would find."""
        rows = shown(self.ledger.history(key), SHOWN)
        kept = self.ledger.kept(key)
        now = self._iso()
        backups = self._data().backups(key) if rows else []
        path = f"environments/{key.project}/{key.env}.yaml"
        looked: dict[str, CommitInfo | None] = {}
        # The newest row of the pinned revision is the current one (it may have run before).
        newest = next((i for i, d in enumerate(rows) if d.revision == current), None)
        items = []
        for i, d in enumerate(rows):
            if d.state_commit and d.state_commit not in looked:
                looked[d.state_commit] = self._commits(path, d.state_commit)
            commit = looked.get(d.state_commit) if d.state_commit else None
            backup = pre_update_backup(backups, d.revision)
            items.append(
                {
                    "revision": d.revision,
                    "image": d.image,
                    "image_id": d.image_id,
                    "deployed_at": d.at.isoformat(timespec="seconds"),
                    "health": d.health.value,
                    "judged_at": d.judged_at.isoformat(timespec="seconds") if d.judged_at else None,
                    "reason": d.reason,
                    "attempt": d.attempt,
                    "current": i == newest,
                    "state_commit": d.state_commit or None,
                    "commit": _commit_doc(commit),
                    "retained": (not d.attempt)
                    and bool(d.image)
                    and self.runtime.has_image(d.image),
                    "kept_data": kept_at(kept, d.revision, now),
                    "backup": backup["id"] if backup else None,
                }
            )
        return {"environment": str(key), "current": current, "items": items}

    def prepare(
        self, key: EnvKey, current: str, to: str | None, with_data: bool, confirm: bool
    ) -> Rollback:
        """Choose the target, refuse what cannot work, then mark the data (with
        ``with_data``). Nothing is marked when it raises."""
        target = choose_target(self.ledger.history(key), current, str(key), to)
        short = target.revision[:12]
        if not self.runtime.has_image(target.image):
            raise ImageCollected(
                f"the image of revision {short} ({target.image}), deployed to {key} on "
                f"{target.at:%Y-%m-%d %H:%M}, was collected: a rollback reuses the image a "
                "version ran, and this one is gone (only the last 10 deployed of each "
                "environment are kept). Nothing was committed.",
                remediation=f"odooops deploy {key} --revision {target.revision}",
            )
        if not with_data:
            # A restore asked for earlier (its change request closed unmerged, say) must not
            # come with a rollback of the code alone to the same revision.
            if self.ledger.restore_mark(key) is not None:
                self._data().cancel_restore(key)
            return Rollback(key, target, current)
        command = f"odooops rollback {key} --to {short} --with-data --confirm"
        if not confirm:
            raise OdooOpsError(
                f"a rollback of {key} with data replaces its database and filestore by those "
                f"of revision {short} (the current data is backed up first): it needs an "
                "explicit confirmation",
                code="confirm_required",
                remediation=command,
            )
        data = self._data()
        if kept_at(self.ledger.kept(key), target.revision, self._iso()):
            data.request_rollback(key, confirm=True)
            return Rollback(key, target, current, "kept")
        backup = pre_update_backup(data.backups(key), target.revision)
        if backup is None:
            raise OdooOpsError(
                f"{key} has no data of revision {short} to bring back: neither the data an "
                "update on a copy replaced (kept for keep_previous) nor a backup taken before "
                "an update away from it. Nothing was committed.",
                code="nothing_kept",
                remediation=f"odooops db backups {key}  (or roll back the code alone: "
                f"odooops rollback {key} --to {short})",
            )
        record = self.ledger.database(key)
        data_revision = record.revision if record is not None else ""
        data.request_restore(key, target.revision, str(backup["id"]), data_revision)
        return Rollback(key, target, current, "backup", str(backup["id"]))

    def cancel(self, rollback: Rollback) -> None:
        """The pin could not be committed: the data mark goes too."""
        if rollback.data == "kept":
            self._data().cancel_rollback(rollback.key)
        elif rollback.data == "backup":
            self._data().cancel_restore(rollback.key)

    def _iso(self) -> str:
        return self._clock().astimezone(UTC).isoformat(timespec="seconds")


def describe_rollback(rollback: Rollback) -> dict[str, Any]:
    target = rollback.target
    return {
        "from": rollback.current,
        "to": target.revision,
        "image": target.image,
        "image_id": target.image_id,
        "data": rollback.data,
        "backup": rollback.backup or None,
    }


def _commit_doc(commit: CommitInfo | None) -> Mapping[str, Any] | None:
    if commit is None:
        return None
    return {
        "sha": commit.sha,
        "author": f"{commit.author_name} <{commit.author_email}>",
        "date": commit.committed_at.isoformat(timespec="seconds"),
        "message": commit.summary,
    }

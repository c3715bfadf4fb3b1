"""Deployment history: outcomes recorded in the ledger, and the choice of a rollback target."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from reconciler.core.errors import OdooOpsError
from reconciler.core.history import (
    Deployed,
    Health,
    NoRollbackTarget,
    RevisionNotDeployed,
    choose_target,
    kept_at,
    pre_update_backup,
)
from reconciler.core.imagegc import Deployment
from reconciler.core.model import EnvKey
from reconciler.drivers.protocols import Runtime
from reconciler.engine.history import Histories
from reconciler.engine.ledger import Ledger

KEY = EnvKey("acme", "prod")
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
A, B, C, D = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)


def row(revision: str, health: Health, attempt: bool = False) -> Deployed:
    return Deployed(
        revision, f"img:{revision[:4]}", f"sha256:{revision}", T0, health, attempt=attempt
    )


def deployment(revision: str, minutes: int = 0) -> Deployment:
    return Deployment(
        env=str(KEY),
        image=f"img:{revision[:4]}",
        image_id=f"sha256:{revision}",
        revision=revision,
        at=T0 + timedelta(minutes=minutes),
    )


@pytest.mark.parametrize(
    ("history", "current", "expected"),
    [
        ([row(B, Health.HEALTHY), row(A, Health.HEALTHY)], B, A),
        # a failed version and a failed attempt are skipped
        ([row(C, Health.HEALTHY), row(B, Health.FAILED), row(A, Health.HEALTHY)], C, A),
        (
            [row(C, Health.FAILED, attempt=True), row(B, Health.HEALTHY), row(A, Health.HEALTHY)],
            B,
            A,
        ),
        # a version someone rolled away from is not picked again
        ([row(A, Health.HEALTHY), row(B, Health.ROLLED_BACK), row(A, Health.HEALTHY)], A, None),
        # older than the current one only: after a rollback to A, the next goes further back
        (
            [
                row(A, Health.HEALTHY),
                row(B, Health.ROLLED_BACK),
                row(A, Health.HEALTHY),
                row(D, Health.HEALTHY),
            ],
            A,
            D,
        ),
    ],
)
def test_the_default_target_is_the_last_healthy_version_before_the_current_one(
    history: list[Deployed], current: str, expected: str | None
) -> None:
    if expected is None:
        with pytest.raises(NoRollbackTarget) as refused:
            choose_target(history, current, "acme/prod")
        assert refused.value.remediation.startswith("odooops history acme/prod")
    else:
        assert choose_target(history, current, "acme/prod").revision == expected


def test_an_explicit_revision_must_have_served_and_may_be_a_prefix() -> None:
    history = [row(C, Health.FAILED, attempt=True), row(B, Health.HEALTHY), row(A, Health.FAILED)]
    assert choose_target(history, B, "acme/prod", to=A[:7]).revision == A  # failed, but served
    for to, says in (
        (C[:8], "never deployed"),  # an attempt never served
        (D, "never deployed"),
        (B, "already"),
        ("main", "not a revision"),
    ):
        with pytest.raises(RevisionNotDeployed, match=says):
            choose_target(history, B, "acme/prod", to=to)


def test_the_pre_update_backup_is_the_newest_good_one_of_the_data_at_that_revision() -> None:
    backups = [
        {
            "id": "1",
            "status": "good",
            "data_revision": A,
            "reason": "before update to bbbb",
            "started_at": "2026-12-01T10:00:00+00:00",
        },
        {
            "id": "2",
            "status": "good",
            "data_revision": A,
            "reason": "before update to bbbb",
            "started_at": "2026-12-01T11:00:00+00:00",
        },
        {
            "id": "3",
            "status": "failed",
            "data_revision": A,
            "reason": "before update to cccc",
            "started_at": "2026-12-01T12:00:00+00:00",
        },
        {
            "id": "4",
            "status": "good",
            "data_revision": A,
            "reason": "scheduled",
            "started_at": "2026-12-01T13:00:00+00:00",
        },
        {
            "id": "5",
            "status": "good",
            "data_revision": B,
            "reason": "before update to cccc",
            "started_at": "2026-12-01T14:00:00+00:00",
        },
    ]
    found = pre_update_backup(backups, A)
    assert found is not None and found["id"] == "2"
    assert pre_update_backup(backups, C) is None


def test_kept_data_counts_only_at_that_revision_and_in_its_time() -> None:
    kept = {"revision": A, "until": "2026-12-02T00:00:00+00:00"}
    assert kept_at(kept, A, "2026-12-01T00:00:00+00:00")
    assert not kept_at(kept, B, "2026-12-01T00:00:00+00:00")
    assert not kept_at(kept, A, "2026-12-03T00:00:00+00:00")
    assert not kept_at(None, A, "2026-12-01T00:00:00+00:00")


def test_the_ledger_records_each_outcome(tmp_path: Path) -> None:
    """Progressing at the switch, healthy once Ready, failed attempts that never served kept
    apart from the image collector's history, rolled-back once an older version returns."""
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.put_deployment(deployment(A), state_commit="s1")
    assert ledger.history(KEY)[0].health is Health.PROGRESSING
    ledger.judge(KEY, A, T0)
    ledger.put_deployment(deployment(B, 1), state_commit="s2")
    ledger.judge(KEY, B, T0)
    # C fails twice before it ever serves: one attempt row, no image kept for it.
    ledger.put_attempt(deployment(C, 2), "deploy_failed: not healthy", state_commit="s3")
    ledger.put_attempt(deployment(C, 3), "deploy_failed: not healthy", state_commit="s3")
    history = ledger.history(KEY)
    assert [(d.revision, d.health, d.attempt) for d in history] == [
        (C, Health.FAILED, True),
        (B, Health.HEALTHY, False),
        (A, Health.HEALTHY, False),
    ]
    assert history[1].state_commit == "s2"
    assert [d.revision for d in ledger.deployments(KEY)] == [A, B]
    # Back to A: B is rolled back; A's new switch is progressing, then healthy.
    ledger.put_deployment(deployment(A, 4), state_commit="s4")
    ledger.judge(KEY, A, T0)
    history = ledger.history(KEY)
    assert [(d.revision, d.health) for d in history] == [
        (A, Health.HEALTHY),
        (C, Health.FAILED),
        (B, Health.ROLLED_BACK),
        (A, Health.HEALTHY),
    ]
    assert history[2].reason == f"rolled back to {A[:12]}"
    # A failure after the switch marks the serving row itself.
    ledger.put_attempt(deployment(A, 5), "smoke_failed: /web/login 500")
    assert ledger.history(KEY)[0].health is Health.FAILED
    assert len(ledger.history(KEY)) == 4


def test_a_retried_attempt_that_finally_serves_becomes_the_deployment(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.put_deployment(deployment(A))
    ledger.put_attempt(deployment(B, 1), "deploy_failed: database unreachable")
    ledger.put_deployment(deployment(B, 2))
    history = ledger.history(KEY)
    assert [(d.revision, d.health, d.attempt) for d in history] == [
        (B, Health.PROGRESSING, False),
        (A, Health.PROGRESSING, False),
    ]


def test_an_older_ledger_gets_the_outcome_columns(tmp_path: Path) -> None:
    """A ledger written before outcomes were recorded: its rows read as ``unknown``."""
    path = tmp_path / "ledger.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE deployments (id INTEGER PRIMARY KEY AUTOINCREMENT, env TEXT NOT NULL, "
        "image TEXT NOT NULL, image_id TEXT NOT NULL, base TEXT NOT NULL DEFAULT '', "
        "revision TEXT NOT NULL, at TEXT NOT NULL);"
        f"INSERT INTO deployments (env, image, image_id, revision, at) VALUES "
        f"('{KEY}', 'img:aaaa', 'sha256:{A}', '{A}', '{T0.isoformat()}');"
    )
    db.close()
    assert [d.health for d in Ledger(path, read_only=True).history(KEY)] == [Health.UNKNOWN]
    ledger = Ledger(path)
    assert [(d.revision, d.health) for d in ledger.history(KEY)] == [(A, Health.UNKNOWN)]
    ledger.put_deployment(deployment(B, 1))
    assert [d.revision for d in ledger.deployments(KEY)] == [A, B]


class Images:
    """The one thing a rollback asks of the runtime: whether an image is still there."""

    def __init__(self, *tags: str) -> None:
        self.tags = set(tags)

    def has_image(self, ref: str) -> bool:
        return ref in self.tags


class Data:
    """The data plane's marks, as state."""

    def __init__(self, backups: list[dict[str, Any]] | None = None) -> None:
        self.listed = backups or []
        self.marks: dict[str, Any] = {}

    def backups(self, key: EnvKey) -> list[dict[str, Any]]:
        return self.listed

    def request_rollback(self, key: EnvKey, confirm: bool = False) -> dict[str, Any]:
        self.marks["kept"] = confirm
        return {}

    def cancel_rollback(self, key: EnvKey) -> None:
        self.marks.pop("kept", None)

    def request_restore(
        self, key: EnvKey, revision: str, backup_id: str, data_revision: str
    ) -> dict[str, Any]:
        self.marks["backup"] = (revision, backup_id)
        return {}

    def cancel_restore(self, key: EnvKey) -> None:
        self.marks.pop("backup", None)


def histories(tmp_path: Path, data: Data, *images: str) -> Histories:
    ledger = Ledger(tmp_path / "ledger.db")
    for i, revision in enumerate((A, B)):
        ledger.put_deployment(deployment(revision, i))
        ledger.judge(KEY, revision, T0)
    return Histories(
        ledger,
        cast(Runtime, Images(*images)),
        lambda: data,
        lambda path, commit: None,
        clock=lambda: T0,
    )


PRE_UPDATE = {
    "id": "2026-12-01-11-00",
    "status": "good",
    "data_revision": A,
    "reason": f"before update to {B[:12]}",
    "started_at": "2026-12-01T11:00:00+00:00",
}


def test_a_rollback_with_data_uses_the_kept_data_first_then_the_pre_update_backup(
    tmp_path: Path,
) -> None:
    data = Data([PRE_UPDATE])
    found = histories(tmp_path, data, "img:aaaa", "img:bbbb")
    found.ledger.put_kept(KEY, {"revision": A, "until": "2026-12-02T00:00:00+00:00"})
    kept = found.prepare(KEY, B, None, with_data=True, confirm=True)
    assert (kept.target.revision, kept.data, data.marks) == (A, "kept", {"kept": True})
    found.cancel(kept)
    found.ledger.forget_kept(KEY)
    restored = found.prepare(KEY, B, None, with_data=True, confirm=True)
    assert (restored.data, restored.backup) == ("backup", PRE_UPDATE["id"])
    assert data.marks == {"backup": (A, PRE_UPDATE["id"])}
    found.ledger.put_restore_mark(KEY, {"revision": A, "backup": PRE_UPDATE["id"]})
    code_only = found.prepare(KEY, B, None, with_data=False, confirm=False)
    assert code_only.data == "none" and data.marks == {}  # an earlier restore does not follow
    assert dict(restored.trailers()) == {
        "Rollback-From": B,
        "Rollback-To": A,
        "Rollback-Data": f"backup {PRE_UPDATE['id']}",
    }


@pytest.mark.parametrize(
    ("images", "backups", "confirm", "code"),
    [
        (("img:bbbb",), [PRE_UPDATE], True, "image_collected"),
        (("img:aaaa", "img:bbbb"), [PRE_UPDATE], False, "confirm_required"),
        (("img:aaaa", "img:bbbb"), [], True, "nothing_kept"),
    ],
)
def test_a_refused_rollback_marks_nothing(
    tmp_path: Path,
    images: tuple[str, ...],
    backups: list[dict[str, Any]],
    confirm: bool,
    code: str,
) -> None:
    data = Data(backups)
    found = histories(tmp_path, data, *images)
    with pytest.raises(OdooOpsError) as refused:
        found.prepare(KEY, B, None, with_data=True, confirm=confirm)
    assert refused.value.code == code
    assert data.marks == {}
    if code == "image_collected":
        assert refused.value.remediation == f"odooops deploy {KEY} --revision {A}"
    if code == "confirm_required":
        assert refused.value.remediation == (
            f"odooops rollback {KEY} --to {A[:12]} --with-data --confirm"
        )

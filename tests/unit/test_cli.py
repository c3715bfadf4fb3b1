"""The CLI as a user reads it, for the commands that need no daemon: validate and local status."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.engine.status import (
    Condition,
    DaemonStatus,
    EnvironmentStatus,
    Health,
    StatusStore,
    Sync,
)


def cells(shown: str) -> list[list[str]]:
    """The rows of a rich table as lists of cell texts (header first)."""
    return [
        [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        for line in shown.splitlines()
        if line.startswith(("│", "┃"))
    ]


@pytest.mark.parametrize("url", ["file:///srv/state.git", "git@github.com:acme/state.git"])
def test_validate_given_a_url_says_to_clone_it(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", url]) == 2
    said = capsys.readouterr().err
    assert "is a repository URL" in said
    assert f"git clone {url} state && odooops validate state" in said


def test_validate_given_no_directory_says_what_it_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(tmp_path / "nothing")]) == 2
    assert "state repository checkout" in capsys.readouterr().err


def test_status_shows_serving_and_wanted_the_last_pass_and_branches_without_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed update: the old commit serves, the new one is wanted; the pass figures are the
    daemon's own; an expired branch is named with why."""
    store = StatusStore(tmp_path / "status.json")
    store.put(
        "acme/staging",
        EnvironmentStatus(
            "acme",
            "staging",
            branch="release/v1",
            tier="staging",
            revision="b" * 40,
            serving="a" * 40,
            sync=Sync.OUT_OF_SYNC,
            health=Health.HEALTHY,
            conditions=(Condition("Ready", False, "deploy_failed", "odoo -u exited 1"),),
        ),
    )
    store.set_daemon(
        DaemonStatus(
            state_commit="c" * 40,
            last_poll="2026-11-25T12:00:00+00:00",
            last_pass_seconds=2.5,
            passes=4,
            expired={"acme/feature-old": "branch feature/old has had no commit for 7 days"},
        )
    )
    assert main(["status", "--data-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    header, row = cells(shown)
    assert header[3:5] == ["SERVING", "WANTED"]
    assert row[:5] == ["acme/staging", "release/v1", "staging", "a" * 12, "b" * 12]
    assert "last pass took 2.5 s; 4 passes" in shown
    assert "acme/feature-old: no environment: branch feature/old has had no commit" in shown
    assert "acme/staging: deploy_failed: odoo -u exited 1" in shown


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("staging", "acme/staging"),
        ("acme/staging", "acme/staging"),
        ("feature/crm", "acme/feature-crm"),
    ],
)
def test_status_of_one_environment_takes_any_form_of_its_name(
    tmp_path: Path, name: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = StatusStore(tmp_path / "status.json")
    store.put("acme/staging", EnvironmentStatus("acme", "staging", branch="release/v1"))
    store.put("acme/feature-crm", EnvironmentStatus("acme", "feature-crm", branch="feature/crm"))
    store.put("acme/production", EnvironmentStatus("acme", "production", branch="main"))
    assert main(["status", "--data-dir", str(tmp_path), name]) == 0
    assert [row[0] for row in cells(capsys.readouterr().out)[1:]] == [shown]

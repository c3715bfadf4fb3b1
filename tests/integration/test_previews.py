"""Previews from signed deliveries and from polling, against a real state repository and a
fake forge on loopback (no Docker: the environments themselves are the engine's, tested in
``test_previews_lifecycle``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from reconciler.api.app import create_app
from reconciler.api.auth import AuthConfig, TokenAuthority
from reconciler.api.controlplane import GitControlPlane
from reconciler.core.model import StateConfig
from reconciler.core.secretrefs import SecretPolicy
from reconciler.engine.ledger import Ledger
from reconciler.engine.previews import Previews
from reconciler.engine.status import Condition, EnvironmentStatus, Health, Sync
from reconciler.gitops import forges
from reconciler.gitops.gitsource import GitSource
from reconciler.gitops.statewriter import StateWriter
from tests.integration.fakeforge import FakeForge
from tests.integration.world import Checkout, acme_state_remote, git
from webhooks.events import PullRequestEvent

pytestmark = pytest.mark.integration

SECRET = "It's a Secret to Everybody"
REPO_URL = "https://forge.test/acme/erp.git"
NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


class Plane(GitControlPlane):
    def __init__(self, writer: StateWriter, previews: Previews) -> None:
        super().__init__(writer, lambda: None)
        self._previews = previews
        self.shown: dict[str, EnvironmentStatus] = {}

    def state(self) -> StateConfig:
        return self.writer.current()

    def pull_request(self, event: PullRequestEvent) -> None:
        self._previews.deliver(event, self.state())

    def data(self) -> Any:
        raise AssertionError("previews start no data job")

    def jobs(self) -> Any:
        raise AssertionError("previews start no job")

    def statuses(self) -> dict[str, EnvironmentStatus]:
        return self.shown


class Setup:
    def __init__(self, root: Path, kind: str, policy: str) -> None:
        self.kind = kind
        self.forge = FakeForge(kind)
        self.remote = acme_state_remote(root, {"production": "branch: main\n"})
        project = {
            "repository": {
                "url": REPO_URL,
                "forge": {
                    "kind": kind,
                    "api": self.forge.api,
                    "repo": "acme/erp",
                    "token": {"secret": "forge-token"},
                },
            }
        }
        checkout = Checkout(self.remote, root / "checkout")
        policies = (
            yaml.safe_load((checkout.dir / "policies.yaml").read_text())
            if (checkout.dir / "policies.yaml").exists()
            else None
        )
        base = policies or yaml.safe_load(
            git("--git-dir", str(self.remote), "show", "main:policies.yaml")
        )
        base["previews"] = yaml.safe_load(policy)
        checkout.write(
            {"projects/acme.yaml": yaml.safe_dump(project), "policies.yaml": yaml.safe_dump(base)},
            "previews on",
        )
        policy_of_store = SecretPolicy(named={"forge-token": ("127.0.0.1",)})
        self.writer = StateWriter(
            GitSource(f"file://{self.remote}", root / "cache"), secrets=lambda: policy_of_store
        )
        self.ledger = Ledger(root / "ledger.db")
        self.statuses: dict[str, EnvironmentStatus] = {}
        self.now = NOW
        self.previews = Previews(
            self.writer,
            self.ledger,
            lambda ref, api: "forge-token",
            lambda: self.statuses,
            clock=lambda: self.now,
        )
        self.previews.start()
        self.authority = TokenAuthority(AuthConfig(secret=b"k" * 32))
        self.plane = Plane(self.writer, self.previews)
        self.plane.shown = self.statuses
        self.client = TestClient(
            create_app(self.plane, self.authority, webhook_secret=lambda: SECRET)
        )
        self._delivery = 0

    def close(self) -> None:
        self.previews.stop()
        self.ledger.close()
        self.forge.close()

    def deliver(self, action: str, number: int, **pull: Any) -> dict[str, Any]:
        """A delivery of request ``number``, signed as this forge signs, and its answer."""
        self.forge.pull(number, **pull)
        self._delivery += 1
        body, headers = self.forge.delivery(action, number, REPO_URL, SECRET, f"d-{self._delivery}")
        answer = self.client.post(f"/v1/webhooks/{self.kind}", content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        self.settle()
        return dict(answer.json())

    def settle(self) -> None:
        assert self.previews.queue.wait_idle(30)

    def files(self) -> dict[str, dict[str, Any]]:
        names = git("--git-dir", str(self.remote), "ls-tree", "--name-only", "main",
                    "environments/acme/").split()  # fmt: skip
        return {
            Path(n).stem: yaml.safe_load(git("--git-dir", str(self.remote), "show", f"main:{n}"))
            for n in names
        }

    def log(self) -> list[str]:
        return git("--git-dir", str(self.remote), "log", "--format=%an|%s", "main").splitlines()


@pytest.fixture(params=["github", "gitlab", "gitea"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    s = Setup(tmp_path, request.param, "{bases: [main], ttl: 3d, max_per_project: 2}")
    yield s
    s.close()


def test_a_request_opens_a_preview_comments_and_closing_removes_it(setup: Setup) -> None:
    answer = setup.deliver("opened", 7, author="alice")
    assert answer["triggered"] is True
    preview = setup.files()["pr-7"]
    assert preview["branch"] == "feature/pr-7" and preview["tier"] == "ephemeral"
    assert preview["preview"]["forge"] == setup.kind and preview["preview"]["number"] == 7
    assert preview["owner"] == f"{setup.kind}:alice"
    assert preview["expires"] == "2026-12-08T12:00:00Z"
    assert (
        setup.log()[0]
        == f"OdooOps|feat(preview): open acme/pr-7 for {setup.kind}#7 ({setup.kind}#7 opened)"
    )
    [comment] = setup.forge.comments_on(7)
    assert "`acme/pr-7` is being prepared" in comment and "odooops-preview:acme" in comment

    # Each push is a new head of the branch it tracks: no commit of the state for it.
    commits = len(setup.log())
    setup.deliver("synchronize", 7, author="alice")
    assert len(setup.log()) == commits

    # Healthy: the same comment now carries its URL.
    setup.statuses["acme/pr-7"] = EnvironmentStatus(
        "acme", "pr-7", url="https://pr-7.acme.example", serving="b" * 40, sync=Sync.SYNCED,
        health=Health.HEALTHY, conditions=(Condition("Ready", True, "Healthy"),),
    )  # fmt: skip
    setup.previews.publish(setup.writer.current())
    [comment] = setup.forge.comments_on(7)
    assert "is ready at revision `bbbbbbbbbbbb`: https://pr-7.acme.example" in comment
    token = setup.authority.mint("ann", ["env:read"], name="Ann", email="ann@acme.example")
    listed = setup.client.get("/v1/previews", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == [
        {
            "environment": "acme/pr-7",
            "request": f"{setup.kind}#7",
            "request_url": f"https://{setup.kind}.test/acme/erp/pull/7",
            "author": "alice",
            "head": "feature/pr-7",
            "base": "main",
            "fork": False,
            "expires": "2026-12-08T12:00:00Z",
            "url": "https://pr-7.acme.example",
            "health": "Healthy",
            "sync": "Synced",
        }
    ]
    edits = len(setup.forge.calls)
    setup.previews.publish(setup.writer.current())  # unchanged: nothing sent
    assert len(setup.forge.calls) == edits

    setup.deliver("merged", 7, state="merged")
    assert "pr-7" not in setup.files()
    assert setup.log()[0].startswith(f"OdooOps|feat(preview): close acme/pr-7 for {setup.kind}#7")
    [comment] = setup.forge.comments_on(7)
    assert "was removed" in comment


def test_a_fork_or_a_request_over_the_limit_gets_a_comment_and_no_preview(setup: Setup) -> None:
    setup.deliver("opened", 1)
    setup.deliver("opened", 2)
    before = setup.log()
    setup.deliver("opened", 3)
    assert setup.log() == before and "pr-3" not in setup.files()
    [comment] = setup.forge.comments_on(3)
    assert "previews.max_per_project allows (2): pr-1, pr-2" in comment
    setup.deliver("opened", 4, fork=True)
    assert setup.log() == before
    [comment] = setup.forge.comments_on(4)
    assert "comes from a fork, and previews of forks are off" in comment


def test_a_delivery_for_an_unknown_repository_changes_nothing(setup: Setup) -> None:
    before = setup.log()
    body = json.dumps(
        {
            "object_kind": "merge_request",
            "project": {"git_http_url": "https://x.test/o/r.git"},
            "object_attributes": {
                "action": "open",
                "iid": 5,
                "source_branch": "f",
                "target_branch": "main",
            },
        }
    ).encode()
    answer = setup.client.post(
        "/v1/webhooks/gitlab",
        content=body,
        headers={"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": SECRET},
    )
    assert answer.status_code == 202 and answer.json()["triggered"] is False
    assert answer.json()["reason"] == (
        "repository https://x.test/o/r.git is neither the state repository nor a project's "
        "repository.url: nothing to do"
    )
    setup.settle()
    assert setup.log() == before


def test_polling_opens_what_deliveries_missed_and_a_failing_forge_removes_nothing(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forges, "READ_TIMEOUT", 1.0)
    setup.forge.pull(8)
    setup.forge.pull(9)
    setup.previews.poll(setup.writer.current())
    setup.settle()
    assert {"pr-8", "pr-9"} <= set(setup.files())

    # Request 9 disappears from the open list; the forge then fails, then hangs: kept.
    setup.forge.pull(9, state="closed")
    setup.forge.mode = "error"
    setup.previews.poll(setup.writer.current())
    setup.settle()
    assert "pr-9" in setup.files()
    setup.forge.mode = "ok"
    del setup.forge.pulls[8]  # not in the list, and its lookup fails below
    setup.forge.mode = "hang"
    setup.previews.poll(setup.writer.current())
    setup.settle()
    assert {"pr-8", "pr-9"} <= set(setup.files())

    # The forge answers again: 9 is closed (removed), 8 cannot be found (kept).
    setup.forge.mode = "ok"
    setup.previews.poll(setup.writer.current())
    setup.settle()
    assert "pr-9" not in setup.files() and "pr-8" in setup.files()


def test_an_open_request_moves_its_expiry_once_half_its_ttl_is_gone(setup: Setup) -> None:
    setup.deliver("opened", 7)
    commits = len(setup.log())
    setup.now = NOW + timedelta(days=1)
    setup.deliver("synchronize", 7)
    assert len(setup.log()) == commits  # 2 days of 3 left
    setup.now = NOW + timedelta(days=2)
    setup.deliver("synchronize", 7)
    assert setup.files()["pr-7"]["expires"] == "2026-12-10T12:00:00Z"
    assert setup.log()[0].startswith("OdooOps|feat(preview): extend acme/pr-7")


def test_a_preview_the_state_refuses_gets_a_comment_without_the_states_details(
    tmp_path: Path,
) -> None:
    s = Setup(tmp_path, "github", "{bases: [main], seed: {copy-of: staging}}")  # no staging
    try:
        before = s.log()
        s.deliver("opened", 5)
        assert s.log() == before and "pr-5" not in s.files()
        [comment] = s.forge.comments_on(5)
        assert "the state repository refused it" in comment
        assert "environments/" not in comment and "staging" not in comment
    finally:
        s.close()


def test_a_preview_closes_even_after_its_policy_is_gone(setup: Setup) -> None:
    from reconciler.gitops import changes
    from reconciler.gitops.gitsource import Author

    setup.deliver("opened", 7)
    assert "pr-7" in setup.files()
    policies = yaml.safe_load(git("--git-dir", str(setup.remote), "show", "main:policies.yaml"))
    del policies["previews"]
    op = changes.FileOperation("policies.yaml", policies, "chore: previews off")
    setup.writer.submit(op, Author("Ann", "ann@acme.example"))
    setup.deliver("opened", 8)  # no policy: nothing opens
    assert "pr-8" not in setup.files()
    setup.deliver("closed", 7, state="closed")
    assert "pr-7" not in setup.files()


def test_a_preview_removed_otherwise_than_by_its_closing_tells_its_request(setup: Setup) -> None:
    from reconciler.core.model import EnvKey
    from reconciler.gitops import changes
    from reconciler.gitops.gitsource import Author

    setup.deliver("opened", 7)
    setup.deliver("opened", 8)
    setup.previews.publish(setup.writer.current())
    # The sweeper's commit, or a person's: the file goes, the request stays open.
    setup.writer.submit(changes.Operation("destroy", EnvKey("acme", "pr-7")), Author("A", "a@x"))
    setup.deliver("merged", 8, state="merged")  # closed by its request: said already
    setup.previews.publish(setup.writer.current())
    [seven] = setup.forge.comments_on(7)
    assert "was removed: its environment expired or its file was removed" in seven
    [eight] = setup.forge.comments_on(8)
    assert "was removed" in eight and "expired" not in eight

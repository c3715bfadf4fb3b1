"""Pull requests on the state repository get ``odooops validate`` and ``odooops plan`` of their
head: a commit status and a comment edited in place (a real engine and state repository, a
fake forge on loopback)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from reconciler.api.app import create_app
from reconciler.api.auth import AuthConfig, TokenAuthority
from reconciler.api.controlplane import DaemonControlPlane
from reconciler.engine.ledger import Ledger
from reconciler.engine.reviews import Reviews
from reconciler.gitops.forges import Forge
from reconciler.gitops.gitsource import GitSource
from reconciler.gitops.statewriter import StateWriter
from tests.integration.fakeforge import FakeForge
from tests.integration.world import World, git

pytestmark = pytest.mark.integration

SECRET = "s3cret"


@pytest.fixture
def forge() -> Iterator[FakeForge]:
    fake = FakeForge("github", repo="acme/state")
    yield fake
    fake.close()


def test_a_state_request_gets_its_plan_and_a_failing_one_its_problems(
    world: World, forge: FakeForge, tmp_path: Path
) -> None:
    engine = world.engine()
    engine.refresh()
    ledger = Ledger(tmp_path / "ledger.db")
    client_forge = Forge("github", forge.api, "acme/state", "tok")
    reviews = Reviews(engine.review, client_forge, f"file://{world.state_remote}", ledger)
    reviews.start()
    writer = StateWriter(GitSource(f"file://{world.state_remote}", tmp_path / "w"))
    plane = DaemonControlPlane(engine, writer, lambda: None, None, reviews)
    client = TestClient(
        create_app(
            plane, TokenAuthority(AuthConfig(secret=b"k" * 32)), webhook_secret=lambda: SECRET
        )
    )

    def deliver(number: int, branch: str, sha: str) -> None:
        doc: dict[str, Any] = {
            "action": "synchronize",
            "number": number,
            "pull_request": {
                "head": {"ref": branch, "sha": sha, "repo": {"full_name": "acme/state"}},
                "base": {"ref": "main", "repo": {"full_name": "acme/state"}},
            },
            "repository": {"clone_url": f"file://{world.state_remote}"},
        }
        body = json.dumps(doc).encode()
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        answer = client.post(
            "/v1/webhooks/github",
            content=body,
            headers={
                "X-GitHub-Event": "pull_request",
                "X-Hub-Signature-256": f"sha256={digest}",
                "X-GitHub-Delivery": f"{number}-{sha}",
            },
        )
        assert answer.status_code == 202, answer.text
        assert reviews.queue.wait_idle(60)

    try:
        good = world.state.write(
            {world.env_path("qa"): "branch: release/v1\n"}, "add qa", branch="add-qa"
        )
        deliver(3, "add-qa", good)
        assert [(s["sha"], s["state"]) for s in forge.statuses] == [
            (good, "pending"),
            (good, "success"),
        ]
        assert forge.statuses[-1]["context"] == "odooops/plan"
        described = forge.statuses[-1]["description"]
        assert described.startswith("Plan: ") and described.endswith("0 to remove."), described
        [comment] = forge.comments_on(3)
        assert f"# {world.project}/qa" in comment and "this state is valid; if merged:" in comment

        bad = world.state.write(
            {world.env_path("qa"): "branch: release/v1\nworkers: 3\n"}, "oops", branch="add-qa"
        )
        deliver(3, "add-qa", bad)
        assert (forge.statuses[-1]["sha"], forge.statuses[-1]["state"]) == (bad, "failure")
        assert "unknown key `workers`" in forge.statuses[-1]["description"]
        [comment] = forge.comments_on(3)  # the same comment, edited
        assert "is **invalid**" in comment and "unknown key `workers`" in comment
        assert git("--git-dir", str(world.state_remote), "rev-parse", "main") != bad
    finally:
        reviews.stop()
        ledger.close()

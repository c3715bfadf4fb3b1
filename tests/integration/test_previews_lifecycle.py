"""A preview's whole life with the real daemon, Docker, PostgreSQL and the Odoo stand-in: a
signed pull-request delivery opens it, it answers, its URL is posted on the request, and
merging the request removes it with nothing left behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.fakeforge import FakeForge
from tests.integration.test_daemon import daemon_args, free_port, wait_for
from tests.integration.world import World, git

pytestmark = pytest.mark.integration

SECRET = "preview-secret"


@pytest.fixture(params=["github", "gitlab", "gitea"])
def forge(request: pytest.FixtureRequest) -> Iterator[FakeForge]:
    fake = FakeForge(request.param, repo="acme/app")
    yield fake
    fake.close()


def deliver(
    port: int, forge: FakeForge, action: str, number: int, delivery: str, clone_url: str
) -> None:
    body, headers = forge.delivery(action, number, clone_url, SECRET, delivery)
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/webhooks/{forge.kind}",
        content=body,
        headers=headers,
        timeout=10,
    )
    assert answer.status_code == 202 and answer.json()["triggered"], answer.text


def on_forge(world: World, forge: FakeForge, tmp_path: Path, previews: dict[str, object]) -> Path:
    """The project on ``forge`` (its token a named secret), ``previews`` in policies.yaml; the
    webhook secret's file."""
    project = yaml.safe_load((world.state.dir / f"projects/{world.project}.yaml").read_text())
    project["repository"]["forge"] = {
        "kind": forge.kind,
        "api": forge.api,
        "repo": "acme/app",
        "token": {"secret": "forge-token"},
    }
    policies = yaml.safe_load((world.state.dir / "policies.yaml").read_text())
    policies["previews"] = previews
    # The preview is the state's only environment: its removal must not read as a state
    # emptied by mistake (which prunes nothing).
    policies["prune"] = {"allow_empty": True}
    world.state.write(
        {
            f"projects/{world.project}.yaml": yaml.safe_dump(project),
            "policies.yaml": yaml.safe_dump(policies),
        },
        "previews",
    )
    stored = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler.cli.main",
            "secret",
            "set",
            "forge-token",
            "--host",
            "127.0.0.1",
            "--data-dir",
            str(world.data_dir),
        ],
        input="forge-tok\n",
        env=world.cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stored.returncode == 0, stored.stderr
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_text(SECRET)
    return secret_file


def start_daemon(world: World, secret_file: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The daemon with its API and webhooks (polling the forge hourly only: deliveries act)."""
    port = free_port()
    args = daemon_args(world, interval=300, listen=f"127.0.0.1:{port}")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler.cli.main",
            *args,
            "--webhook-secret-file",
            str(secret_file),
            "--previews-poll",
            "3600",
        ],
        env=world.cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _up(port) and _loaded(world), 60, "the API and the first pass")
    except BaseException:
        proc.kill()
        proc.wait(timeout=60)
        raise
    return proc, port


def test_a_preview_opens_answers_is_posted_and_merging_leaves_nothing(
    world: World, forge: FakeForge, tmp_path: Path
) -> None:
    secret_file = on_forge(world, forge, tmp_path, {"bases": ["main"], "seed": "demo", "ttl": "2d"})
    git("push", "-q", "origin", "main:refs/heads/fix/pr-7", cwd=world.app.dir)
    forge.pull(7, head="fix/pr-7", author="alice")
    proc, port = start_daemon(world, secret_file)
    try:
        deliver(port, forge, "opened", 7, "d-1", f"file://{world.app_remote}")
        wait_for(lambda: world.env_path("pr-7") in _state_files(world), 30, "the preview's commit")
        wait_for(lambda: "is ready" in "".join(forge.comments_on(7)), 240, "the ready comment")
        [comment] = forge.comments_on(7)
        url = comment.split("is ready at revision ")[1].split(": ", 1)[1].split()[0]
        assert httpx.get(f"{url}/web/health", timeout=10).status_code == 200
        declared = yaml.safe_load(
            git("--git-dir", str(world.state_remote), "show", f"main:{world.env_path('pr-7')}")
        )
        assert declared["preview"]["number"] == 7
        assert declared["owner"] == f"{forge.kind}:alice"
        assert any(n.startswith(f"odooops-{world.project}-pr-7") for n in world.containers())

        forge.pull(7, head="fix/pr-7", author="alice", state="merged")
        deliver(port, forge, "merged", 7, "d-2", f"file://{world.app_remote}")
        wait_for(
            lambda: (
                not any(n.startswith(f"odooops-{world.project}-pr-7") for n in world.containers())
                and world.env_path("pr-7") not in _state_files(world)
            ),
            120,
            "the preview to be removed",
        )
        wait_for(lambda: "was removed" in "".join(forge.comments_on(7)), 30, "the removed comment")
        volumes = [
            v.name
            for v in world.docker.volumes.list(filters={"name": f"odooops-{world.project}-pr-7"})
        ]
        assert volumes == []
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


@pytest.mark.parametrize("forge", ["gitlab"], indirect=True)
def test_a_fork_allowed_by_the_policy_gets_a_demo_preview_of_the_requests_ref(
    world: World, forge: FakeForge, tmp_path: Path
) -> None:
    """A request from a fork: its head is not a branch of the repository, but the forge's ref
    of the request is (GitLab: refs/merge-requests/9/head), mirrored as merge-requests/9; the
    preview tracks it, with demo data although the policy copies production."""
    secret_file = on_forge(
        world,
        forge,
        tmp_path,
        {"bases": ["main"], "seed": {"copy-of": "prod"}, "forks": True},
    )
    world.declare("prod", branch="main", tier="production")
    git("push", "-q", "origin", "main:refs/merge-requests/9/head", cwd=world.app.dir)
    forge.pull(9, head="main", author="mallory", fork=True)
    proc, port = start_daemon(world, secret_file)
    try:
        deliver(port, forge, "opened", 9, "f-1", f"file://{world.app_remote}")
        wait_for(lambda: "is ready" in "".join(forge.comments_on(9)), 240, "the fork's preview")
        declared = yaml.safe_load(
            git("--git-dir", str(world.state_remote), "show", f"main:{world.env_path('pr-9')}")
        )
        assert declared["branch"] == "merge-requests/9"
        assert declared["preview"]["fork"] is True and declared["overrides"] == {"demo": True}
        assert "db" not in declared  # never a copy of production for a fork's code
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _loaded(world: World) -> bool:
    """The daemon has validated a state commit (deliveries before that concern nothing)."""
    try:
        doc = json.loads((world.data_dir / "status.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(doc.get("daemon", {}).get("state_commit"))


def _state_files(world: World) -> list[str]:
    return git("--git-dir", str(world.state_remote), "ls-tree", "-r", "--name-only", "main").split()

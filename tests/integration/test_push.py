"""``odooops push``: a developer's branch pushed from their clone, followed to its deployment
(and to a red build's lines), against a real daemon with its API."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_daemon import daemon_args, free_port, wait_for
from tests.integration.world import GIT_ENV, World, git

pytestmark = pytest.mark.integration


@pytest.fixture
def pushing(world: World, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A daemon with its API (polling only every 5 minutes: only the push's trigger can make
    a test pass in time) and a CLI logged in to it; the environment of the CLI."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler.cli.main",
            *daemon_args(world, interval=300, listen=f"127.0.0.1:{port}"),
        ],
        env=world.cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {**world.cli_env(), **GIT_ENV, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    try:
        wait_for(lambda: (world.data_dir / "api.key").exists(), 30, "the API key")
        token = cli(
            env,
            "token",
            "create",
            "--data-dir",
            str(world.data_dir),
            "--subject",
            "ann",
            "--scope",
            "deploy",
            "--scope",
            "env:read",
        ).stdout.strip()
        wait_for(
            lambda: (
                cli(env, "login", "--api", f"http://127.0.0.1:{port}", "--token", token).returncode
                == 0
            ),
            60,
            "the API to accept the login",
        )
        yield env
    finally:
        proc.terminate()
        proc.wait(30)


def cli(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=400,
    )


def test_push_follows_the_branch_to_its_deployment_and_a_red_build_fails_it(
    world: World, pushing: dict[str, str]
) -> None:
    world.declare("staging", branch="release/v1")
    app = world.app.dir
    git("fetch", "-q", "origin", cwd=app)
    git("checkout", "-q", "-B", "release/v1", "origin/release/v1", cwd=app)
    (app / "acme_base" / "models" / "pushed.py").write_text("PUSHED = True\n")
    git("add", "-A", cwd=app)
    git("commit", "-q", "-m", "a change to push", cwd=app)
    sha = git("rev-parse", "HEAD", cwd=app)

    done = cli(pushing, "push", "--wait", "--timeout", "300", cwd=app)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"pushed {sha[:12]} to origin release/v1" in done.stdout
    assert f"{world.project}/staging runs {sha[:12]}" in done.stdout
    assert "Step " in done.stdout  # the build's log, streamed
    assert git("rev-parse", "origin/release/v1", cwd=app) == sha

    # A requirement nobody can install: red, with pip's lines, exit 1; still serving the last.
    (app / "requirements.lock").write_text(f"requests==2.31.0 --hash=sha256:{'a' * 64}\n")
    git("add", "-A", cwd=app)
    git("commit", "-q", "-m", "an impossible requirement", cwd=app)
    red = cli(pushing, "push", "--wait", "--timeout", "300", cwd=app)
    assert red.returncode == 1, red.stdout + red.stderr
    assert "is red" in red.stderr and "failed step: RUN pip install" in red.stderr
    assert "requests==2.31.0" in red.stderr
    status = cli(pushing, "status", f"{world.project}/staging", "-o", "json")
    assert sha in status.stdout  # the previous revision still serves

"""What `make run` and `make test` print while they set the machine up: the project's lines.

Run on a machine that is already set up (as every integration test needs), so each step only
checks and reports: the Docker engine and the fixture images steps are exercised for real.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import docker
import pytest

from tests.integration.world import REPO_ROOT

pytestmark = pytest.mark.integration


def test_set_up_prints_one_progress_line_per_step_and_logs_the_rest(
    tmp_path: Path, docker_engine: docker.DockerClient
) -> None:
    log = tmp_path / "setup.log"
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "setup.sh"), "images"],
        env={**os.environ, "ODOOOPS_SETUP_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    foreign = [line for line in lines if not line.startswith(("[setup] ", "build-images: "))]
    assert foreign == [], "set-up printed lines that are not its own"
    steps = [line.split(":", 1)[0] for line in lines if line.startswith("[setup] ")]
    assert steps == ["[setup] Docker engine", "[setup] fixture images"]
    assert "images.env" not in done.stdout
    assert log.is_file(), "the details go to the set-up log"

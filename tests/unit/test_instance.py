"""The daemon's instance name: checked where it enters and where it becomes a label or a name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.core.model import InvalidInstance, check_instance
from reconciler.drivers.docker import DockerDriver
from reconciler.drivers.postgres import PostgresDriver
from reconciler.drivers.secrets import SecretStore
from tests.factories import SERVER

ROOT = Path(__file__).resolve().parents[2]
REFUSED = ["", "Prod", "a,b", "x=y", "a b", "-x", "x-", "a_b", "é", "a\n", "a" * 25]


@pytest.mark.parametrize(
    "name", ["default", "example", "t0a1b2c3d", "bench-0a1b2c3d", "1", "a" * 24]
)
def test_short_dns_labels_are_instance_names(name: str) -> None:
    assert check_instance(name) == name


@pytest.mark.parametrize("name", REFUSED)
def test_anything_else_is_refused_with_a_structured_error(name: str) -> None:
    with pytest.raises(InvalidInstance) as info:
        check_instance(name)
    assert info.value.code == "invalid_instance"
    assert "--instance" in info.value.remediation


def test_the_drivers_refuse_it_before_they_label_anything(tmp_path: Path) -> None:
    """No connection is tried: the Docker socket named here does not exist."""
    with pytest.raises(InvalidInstance):
        DockerDriver("a,b", base_url="unix:///nonexistent/docker.sock")
    with pytest.raises(InvalidInstance):
        PostgresDriver(SERVER, "x=y", SecretStore(tmp_path / "secrets.enc", bytes(32)))


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_the_cli_refuses_it_with_exit_2_and_the_error_document(tmp_path: Path, how: str) -> None:
    args = ["plan", "-o", "json", "--state-repo", str(tmp_path / "none.git")]
    args += ["--data-dir", str(tmp_path / "data")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if how == "flag":
        args += ["--instance", "a,b"]
    else:
        env["ODOOOPS_INSTANCE"] = "a,b"
    done = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert json.loads(done.stderr)["error"] == "invalid_instance"
    assert not (tmp_path / "data").exists()

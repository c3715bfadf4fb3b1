"""The daemon's own image (Dockerfile) as a user runs it: non-root, validating a mounted state.

The image is built once per session by scripts/build-daemon-image.sh (offline: host wheels and,
when python:3.11-slim cannot be pulled, a local Debian base). Every container is named
`odooops-test-image-*`, started by testcontainers and removed with its anonymous volume by
the helper that started it (tests/integration/containers.py).
An unreachable Docker engine or a failed build fails the tests; nothing is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from docker.models.images import Image

from tests.integration.containers import run_once, throwaway

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-daemon-image.sh"
TEMPLATE = REPO_ROOT / "state-repo-template"
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
MAX_IMAGE_BYTES = 400 * 1000 * 1000
UID = 10001


@dataclass(frozen=True)
class Run:
    """A finished container: its exit code and its two output streams, apart."""

    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # any failure here means the engine is not there
        pytest.fail(f"Docker engine unreachable ({exc}); start it: bash scripts/setup.sh services")
    return client


@pytest.fixture(scope="session")
def daemon_image(engine: docker.DockerClient) -> Image:
    build = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
    )
    if build.returncode != 0:
        pytest.fail(
            f"bash {BUILD_SCRIPT.relative_to(REPO_ROOT)} failed ({build.returncode}):\n"
            + build.stderr[-4000:]
        )
    tag = build.stdout.strip().splitlines()[-1]
    assert tag == f"odooops/daemon:{VERSION}"
    return engine.images.get(tag)


def run(
    image: Image,
    command: list[str],
    state: Path | None = None,
    entrypoint: list[str] | None = None,
) -> Run:
    """Run one container to completion (as the image's user), then remove it and its volume."""
    volumes = {str(state): {"bind": "/state", "mode": "ro"}} if state else None
    ran = run_once(
        throwaway(
            str(image.id),
            "image",
            command=command,
            volumes=volumes,
            entrypoint=entrypoint,
            network_mode="none",
        ),
        timeout=60,
    )
    return Run(ran.exit_code, ran.stdout.decode(), ran.stderr.decode())


def state_copy(tmp_path: Path) -> Path:
    """A copy of state-repo-template readable by the image's user (uid 10001)."""
    state = tmp_path / "state"
    shutil.copytree(TEMPLATE, state)
    for path in [state, *state.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return state


def test_image_metadata(daemon_image: Image) -> None:
    config = daemon_image.attrs["Config"]
    assert config["User"] in ("odooops", f"{UID}", f"{UID}:{UID}")
    assert config["Entrypoint"] == ["odooops"]
    assert config["Cmd"] == ["daemon", "--help"]
    assert "/var/lib/odooops" in config["Volumes"]
    assert "ODOOOPS_DATA_DIR=/var/lib/odooops" in config["Env"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.title"]
    assert labels["org.opencontainers.image.licenses"] == "LGPL-3.0-or-later"


def test_image_is_small(daemon_image: Image) -> None:
    size = int(daemon_image.attrs["Size"])
    assert size < MAX_IMAGE_BYTES, f"{daemon_image.tags} is {size / 1e6:.0f} MB"


def test_help_runs_as_the_non_root_user(daemon_image: Image) -> None:
    helped = run(daemon_image, ["--help"])
    assert helped.exit_code == 0, helped.stderr
    assert helped.stdout.startswith("usage: odooops")
    for command in ("validate", "plan", "daemon", "status", "init-key"):
        assert command in helped.stdout

    default = run(daemon_image, [])
    assert default.exit_code == 0, default.stderr
    assert default.stdout.startswith("usage: odooops daemon")

    who = run(
        daemon_image,
        ["-c", "id -u; id -g; id -un; stat -c %u:%g:%a /var/lib/odooops"],
        entrypoint=["sh"],
    )
    assert who.exit_code == 0, who.stderr
    assert who.stdout.split() == [f"{UID}", f"{UID}", "odooops", f"{UID}:{UID}:750"]


def test_postgresql_client_tools_are_in_the_image(daemon_image: Image) -> None:
    """Copies, backups and restores run pg_dump, pg_restore and psql from the daemon."""
    for tool in ("pg_dump", "pg_restore", "psql"):
        ran = run(daemon_image, ["--version"], entrypoint=[tool])
        assert ran.exit_code == 0, ran.stderr
        assert "PostgreSQL" in ran.stdout


def test_data_dir_volume_is_writable_by_the_user(daemon_image: Image) -> None:
    wrote = run(daemon_image, ["init-key", "/var/lib/odooops/master.key"])
    assert wrote.exit_code == 0, wrote.stderr


def test_validate_mounted_template_state(daemon_image: Image, tmp_path: Path) -> None:
    result = run(daemon_image, ["validate", "/state"], state=state_copy(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert "valid" in result.stdout


def test_validate_mounted_invalid_state_reports_the_location(
    daemon_image: Image, tmp_path: Path
) -> None:
    state = state_copy(tmp_path)
    platform = state / "odooops.yaml"
    lines = platform.read_text().splitlines()
    platform.write_text("\n".join([*lines, "unknown_key: 1", ""]))
    line = len(lines) + 1

    result = run(daemon_image, ["validate", "/state"], state=state)

    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "error[invalid_state]" in result.stderr
    assert f"odooops.yaml:{line}:1" in result.stderr
    assert "unknown key `unknown_key`" in result.stderr
    assert "odooops validate /state" in result.stderr
    assert result.stdout == ""

"""The machine's PostgreSQL as scripts/setup.sh leaves it: it trusts nobody.

Checked on the live server (run as root, like ``make test``): a local user who is not root
cannot become PostgreSQL's superuser, no login works without its password, and the server
listens on loopback and the Docker bridge gateway only.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import subprocess
from pathlib import Path

import docker
import psycopg
import pytest

from tests.integration import pgadmin

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these checks switch to another local user: run them as root (make test)")


def psql_as(user: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``psql`` run by another local user with an empty environment: no password, no pgpass."""
    return subprocess.run(
        ["runuser", "-u", user, "--", "env", "-i", "PATH=/usr/bin:/bin", "PGCONNECT_TIMEOUT=5",
         "psql", "-X", "-w", *args, "-c", "SELECT 1"],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip


@pytest.mark.parametrize(
    "where", [("-h", "127.0.0.1"), ("-h", "localhost"), ()], ids=["tcp", "localhost", "socket"]
)
def test_another_local_user_is_not_the_superuser(
    as_root: None, postgres_server: None, where: tuple[str, ...]
) -> None:
    """`su nobody -c "psql -h 127.0.0.1 -U postgres"` was superuser under trust."""
    done = psql_as("nobody", *where, "-U", "postgres", "-d", "postgres")
    assert done.returncode != 0, done.stdout
    assert any(
        reason in done.stderr
        for reason in ("password", "Peer authentication failed", "no password supplied")
    ), done.stderr


def test_no_login_without_its_password(postgres_server: None, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSFILE"] = str(tmp_path / "none")
    done = subprocess.run(
        ["psql", "-X", "-w", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres",
         "-c", "SELECT 1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert done.returncode != 0 and "password" in done.stderr
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        methods = {r[0] for r in conn.execute("SELECT auth_method FROM pg_hba_file_rules")}
    assert "trust" not in methods
    assert methods <= {"peer", "scram-sha-256"}


def test_the_admin_password_is_root_s_alone(as_root: None) -> None:
    stat = pgadmin.PASSWORD_FILE.stat()
    assert (stat.st_mode & 0o777, stat.st_uid) == (0o600, 0)
    assert pgadmin.PASSWORD_FILE.parent.stat().st_mode & 0o777 == 0o700
    nobody = pwd.getpwnam("nobody")
    done = subprocess.run(
        ["runuser", "-u", nobody.pw_name, "--", "cat", str(pgadmin.PASSWORD_FILE)],
        capture_output=True,
    )
    assert done.returncode != 0 and not done.stdout


def test_the_server_listens_on_loopback_and_the_bridge_gateway_only(
    postgres_server: None,
) -> None:
    client = docker.from_env()
    try:
        bridge = client.api.inspect_network("bridge")
    finally:
        client.close()
    config = bridge["IPAM"]["Config"][0]
    gateway = config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        (listen,) = conn.execute("SHOW listen_addresses").fetchone() or ("",)
    assert sorted(listen.split(",")) == sorted(["localhost", gateway])

"""The pieces of scripts/setup.sh that decide PostgreSQL's access, run on sample input.

pg_hba.conf is rewritten by ``scripts/lib/pg-hba.awk`` and the admin's password reaches the
server only as a verifier from ``scripts/lib/scram.py``; both run here on text, no server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.drivers.postgres import scram_verifier

ROOT = Path(__file__).resolve().parents[2]
HBA = ROOT / "scripts" / "lib" / "pg-hba.awk"
SCRAM = ROOT / "scripts" / "lib" / "scram.py"

DEBIAN_DEFAULT = """\
# Database administrative login by Unix domain socket
local   all             postgres                                peer

# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     peer
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
local   replication     all                                     peer
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
"""

OLD_SETUP = """\
local all all trust
host    all             all             127.0.0.1/32            trust
host all all 127.0.0.1/32 scram-sha-256
# odooops: containers v2 (Docker bridges, per-role passwords)
host all all 172.16.0.0/12 scram-sha-256
host all all 192.168.0.0/16 scram-sha-256
hostssl shop  shop_app  10.1.0.0/16  scram-sha-256
"""


def rewrite(text: str, tmp_path: Path) -> str:
    source = tmp_path / "pg_hba.conf"
    source.write_text(text)
    done = subprocess.run(
        ["awk", "-f", str(HBA), str(source)], capture_output=True, text=True, check=True
    )
    return done.stdout


def rules(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip() and line[0] != "#"]


@pytest.mark.parametrize("before", [DEBIAN_DEFAULT, OLD_SETUP], ids=["debian", "old-setup"])
def test_no_trust_survives_and_every_tcp_login_needs_a_password(
    before: str, tmp_path: Path
) -> None:
    after = rules(rewrite(before, tmp_path))
    assert not any("trust" in rule for rule in after)
    assert after[:6] == [
        ["local", "all", "postgres", "peer"],
        ["local", "all", "all", "peer"],
        ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
        ["host", "all", "all", "::1/128", "scram-sha-256"],
        ["host", "all", "all", "172.16.0.0/12", "scram-sha-256"],
        ["host", "all", "all", "192.168.0.0/16", "scram-sha-256"],
    ]
    assert all(rule[-1] in ("peer", "scram-sha-256") for rule in after)


def test_a_site_s_own_rules_are_kept_after_ours(tmp_path: Path) -> None:
    after = rules(rewrite(OLD_SETUP, tmp_path))
    assert after[6:] == [
        ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
        ["hostssl", "shop", "shop_app", "10.1.0.0/16", "scram-sha-256"],
    ]


@pytest.mark.parametrize("before", [DEBIAN_DEFAULT, OLD_SETUP], ids=["debian", "old-setup"])
def test_the_rewrite_is_idempotent(before: str, tmp_path: Path) -> None:
    once = rewrite(before, tmp_path)
    assert rewrite(once, tmp_path) == once


def scram(*args: str, password: str, stored: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRAM), *args],
        input=password,
        env={**os.environ, "STORED": stored},
        capture_output=True,
        text=True,
    )


def test_a_verifier_is_made_from_stdin_and_recognised() -> None:
    made = scram("verifier", password="s3cret-Admin").stdout.strip()
    assert made.startswith("SCRAM-SHA-256$4096:") and "s3cret" not in made
    assert scram("matches", password="s3cret-Admin", stored=made).returncode == 0
    assert scram("matches", password="other", stored=made).returncode == 1
    assert scram("matches", password="s3cret-Admin", stored="").returncode == 1


def test_the_script_and_the_driver_compute_the_same_verifiers() -> None:
    """setup.sh cannot import the driver (no virtualenv yet): one algorithm, two copies."""
    driver_made = scram_verifier("s3cret-Admin")
    assert scram("matches", password="s3cret-Admin", stored=driver_made).returncode == 0

"""The daemon and CLI as a user runs them: polling, restart mid-apply, plan and status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.world import World, git

pytestmark = pytest.mark.integration


def odooops(world: World, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *args],
        env=world.cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def daemon_args(world: World, interval: int = 5, listen: str = "off") -> list[str]:
    return [
        "daemon",
        "--state-repo",
        f"file://{world.state_remote}",
        "--data-dir",
        str(world.data_dir),
        "--instance",
        world.instance,
        "--interval",
        str(interval),
        "--jitter",
        "0",
        "--health-timeout",
        "90",
        "--listen",
        listen,
    ]


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def status_of(world: World, env: str) -> dict:
    path = world.data_dir / "status.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())["environments"].get(f"{world.project}/{env}", {})
    except ValueError:
        return {}


def test_daemon_picks_up_a_commit_within_one_poll_interval(world: World) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli.main", *daemon_args(world)],
        env=world.cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(2)
        world.declare("staging", branch="release/v1")
        wait_for(
            lambda: status_of(world, "staging").get("health") == "Healthy",
            120,
            "staging to become healthy",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "OdooOps environments" in output


def test_daemon_killed_mid_initialisation_converges_after_restart(world: World) -> None:
    """Level-triggered: a restarted daemon removes leftovers and finishes the job."""
    world.declare("staging", branch="release/v1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli.main", *daemon_args(world)],
        env=world.cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    init = f"odooops-{world.project}-staging-init"
    try:
        wait_for(lambda: init in world.containers(), 120, "the initialisation container")
    finally:
        proc.kill()
        proc.wait()
    result = world.new_engine().reconcile()
    assert result.errors == {}, result.errors
    assert init not in world.containers()
    status = world.new_engine().status.get(f"{world.project}/staging")
    assert status is not None and status.health == "Healthy"


def test_plan_exit_codes_follow_terraform(world: World) -> None:
    world.declare("staging", branch="release/v1")
    args = [
        "plan",
        "--state-repo",
        f"file://{world.state_remote}",
        "--data-dir",
        str(world.data_dir),
        "--instance",
        world.instance,
    ]
    first = odooops(world, *args)
    assert first.returncode == 1, first.stderr
    assert "create-odoo" in first.stdout and "to add" in first.stdout
    assert world.containers() == {}
    assert not (world.data_dir / "status.json").exists()  # plan writes no status
    as_json = json.loads(odooops(world, *args, "-o", "json").stdout)
    assert as_json["changes"] is True
    world.reconcile()
    second = odooops(world, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "No changes" in second.stdout


def test_plan_without_master_key_is_a_usage_error(world: World, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ODOOOPS_MASTER_KEY"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler.cli.main",
            "plan",
            "--state-repo",
            f"file://{world.state_remote}",
            "--data-dir",
            str(tmp_path / "empty"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "odooops init-key" in done.stderr


def test_status_shows_the_table(world: World) -> None:
    world.declare("staging", branch="release/v1")
    world.reconcile()
    done = odooops(world, "status", "--data-dir", str(world.data_dir))
    assert done.returncode == 0
    for word in (
        "ENVIRONMENT",
        f"{world.project}/staging",
        "release/v1",
        "staging",
        "Synced",
        "Healthy",
        "http://127.0.0.1:",
        "last poll",
    ):
        assert word in done.stdout
    doc = json.loads(
        odooops(world, "status", "--data-dir", str(world.data_dir), "-o", "json").stdout
    )
    assert doc["environments"][f"{world.project}/staging"]["sync"] == "Synced"


def test_the_daemon_removes_an_expired_environment_by_a_commit_and_prunes_it(
    world: World,
) -> None:
    """Status shows the expiry that passed; the daemon's sweeper removes the file (a commit
    by OdooOps) after its pass, and the pass that commit triggers prunes everything."""
    world.allow_empty()  # it is the world's only environment
    world.declare("temp", branch="release/v1", expires="2026-01-01T00:00:00Z")
    assert world.reconcile().errors == {}
    status = world.engine().status.get(f"{world.project}/temp")
    assert status is not None and status.expires == "2026-01-01T00:00:00Z"
    expiring = next(c for c in status.conditions if c.type == "Expiring")
    assert (expiring.status, expiring.reason) == (True, "Expired")
    assert f"odooops env extend {world.project}/temp --ttl 3d" in expiring.message
    slug = f"odooops-{world.project}-temp"
    assert any(name.startswith(slug) for name in world.containers())
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli.main", *daemon_args(world, interval=300)],
        env=world.cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: f"{world.project}/temp" not in status_of_all(world),
            120,
            "the expired environment to be pruned",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    subject = git(
        "--git-dir", str(world.state_remote), "log", "-1", "--format=%an|%s", "main"
    ).strip()
    assert subject == (
        f"OdooOps|chore(ttl): remove expired {world.project}/temp (expired 2026-01-01T00:00:00Z)"
    )
    files = git("--git-dir", str(world.state_remote), "ls-tree", "-r", "--name-only", "main")
    assert world.env_path("temp") not in files.splitlines()
    assert not any(name.startswith(slug) for name in world.containers())
    assert f"{world.project}__temp" not in world.databases()


def test_a_held_environment_shows_its_expiry_too(world: World) -> None:
    """One that cannot run (its branch is gone) still warns that it is about to go."""
    soon = (datetime.now(UTC) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    world.declare("stale", branch="release/gone", tier="staging", expires=soon)
    world.reconcile()
    status = world.engine().status.get(f"{world.project}/stale")
    assert status is not None and status.expires == soon
    conditions = {c.type: (c.status, c.reason) for c in status.conditions}
    assert conditions["Held"] == (True, "CannotResolve")
    assert conditions["Expiring"] == (True, "ExpiresSoon")


def status_of_all(world: World) -> dict[str, object]:
    return dict(json.loads((world.data_dir / "status.json").read_text())["environments"])


def test_validate_exit_codes(tmp_path: Path, world: World) -> None:
    good = odooops(world, "validate", str(world.state.dir))
    assert good.returncode == 0, good.stderr
    (world.state.dir / "policies.yaml").write_text("branches:\n  - match: main\n    tier: gold\n")
    bad = odooops(world, "validate", str(world.state.dir))
    assert bad.returncode == 1
    assert "policies.yaml:3" in bad.stderr
    assert "odooops validate" in bad.stderr


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_api_write_becomes_a_commit_and_a_running_environment(world: World, tmp_path: Path) -> None:
    """Token, login, `env create --wait`: a commit by the token's subject, then it converges."""
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
    env = {**world.cli_env(), "XDG_CONFIG_HOME": str(tmp_path / "config")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    try:
        wait_for(lambda: (world.data_dir / "api.key").exists(), 30, "the API key")
        token = cli(
            "token",
            "create",
            "--data-dir",
            str(world.data_dir),
            "--subject",
            "ann",
            "--scope",
            "env:write",
            "--scope",
            "deploy",
            "--scope",
            "shell",
            "--name",
            "Ann Integrator",
            "--email",
            "ann@acme.example",
        ).stdout.strip()
        wait_for(
            lambda: (
                cli("login", "--api", f"http://127.0.0.1:{port}", "--token", token).returncode == 0
            ),
            60,
            "the API to accept the login",
        )
        assert (
            tmp_path / "config" / "odooops" / "credentials.json"
        ).stat().st_mode & 0o777 == 0o600
        # The poll interval is 300 s: only the write's trigger can make this converge in time.
        created = cli(
            "env",
            "create",
            f"{world.project}/qa",
            "--branch",
            "release/v1",
            "--wait",
            "--timeout",
            "150",
        )
        assert created.returncode == 0, created.stdout + created.stderr
        assert "is Healthy" in created.stdout
        author = subprocess.run(
            ["git", "--git-dir", str(world.state_remote), "log", "-1", "--format=%an <%ae>"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert author == "Ann Integrator <ann@acme.example>"
        listed = cli("env", "list", "-o", "json")
        assert [r["health"] for r in json.loads(listed.stdout)] == ["Healthy"]
        assert cli("reconcile").returncode == 0
        status = cli("status", f"{world.project}/qa")  # through the API of the login
        assert status.returncode == 0, status.stderr
        assert "Healthy" in status.stdout and "Ready=True" in status.stdout
        plan = cli("plan")  # planned by the daemon, through the API
        assert plan.returncode == 0 and "No changes" in plan.stdout, plan.stdout + plan.stderr
        audit = json.loads(cli("audit", "-o", "json").stdout)
        assert audit[0]["via"] == "api" and audit[0]["author"].startswith("Ann Integrator")
        logs = cli("logs", f"{world.project}/qa", "--tail", "5")
        assert logs.returncode == 0, logs.stderr
        assert any(line.startswith("odoo | ") for line in logs.stdout.splitlines())
        shell = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler.cli.main",
                "shell",
                f"{world.project}/qa",
                "--kind",
                "bash",
            ],
            input="echo hi-$((2+3))\nexit\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shell.returncode == 0, shell.stderr
        assert "hi-5" in shell.stdout
        refused = cli("env", "create", f"{world.project}/qa", "--branch", "x")
        assert refused.returncode == 2 and "environment_exists" in refused.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def test_api_port_in_use_is_a_structured_error(world: World) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = odooops(world, *daemon_args(world, listen=f"127.0.0.1:{port}"), timeout=60)
    assert done.returncode == 2
    assert "listen_failed" in done.stderr and "--listen off" in done.stderr


def test_data_commands_through_the_api(world: World, tmp_path: Path) -> None:
    """db backup / backups / clone / restore / export / import, mail list and jobs, as a user."""
    port = free_port()
    world.declare("prod", branch="main", tier="production")
    world.declare("staging", branch="release/v1")
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
    env = {**world.cli_env(), "XDG_CONFIG_HOME": str(tmp_path / "config")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    prod, staging = f"{world.project}/prod", f"{world.project}/staging"
    try:
        wait_for(lambda: (world.data_dir / "api.key").exists(), 30, "the API key")
        token = cli(
            "token",
            "create",
            "--data-dir",
            str(world.data_dir),
            "--subject",
            "ops",
            "--scope",
            "db:backup",
            "--scope",
            "db:restore",
            "--scope",
            "deploy",  # a data rollback pins the revision too
            "--scope",
            "env:read",
        ).stdout.strip()
        wait_for(
            lambda: (
                cli("login", "--api", f"http://127.0.0.1:{port}", "--token", token).returncode == 0
            ),
            60,
            "the API to accept the login",
        )
        wait_for(
            lambda: (
                status_of(world, "prod").get("health") == "Healthy"
                and status_of(world, "staging").get("health") == "Healthy"
            ),
            240,
            "prod and staging to converge",
        )
        backup = cli("db", "backup", prod, "--reason", "before the migration")
        assert backup.returncode == 0, backup.stdout + backup.stderr
        assert "succeeded" in backup.stdout
        listed = json.loads(cli("db", "backups", prod, "-o", "json").stdout)
        assert listed[0]["status"] == "good"
        assert listed[0]["reason"].startswith("before the migration (by ops)")
        refused = cli("db", "clone", staging, "--to", "prod")
        assert refused.returncode == 1 and "copy_onto_protected" in refused.stderr
        cloned = cli("db", "clone", prod, "--to", "staging")
        assert cloned.returncode == 0, cloned.stdout + cloned.stderr
        unconfirmed = cli("db", "restore", prod, f"--backup={listed[0]['id']}")
        assert unconfirmed.returncode == 1 and "--confirm" in unconfirmed.stderr
        restored = cli("db", "restore", prod, "--backup=latest", "--to=staging")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        missing = cli("db", "restore", prod, "--backup=2001-01-01-00-00", "--to=staging")
        assert missing.returncode == 1 and "backup_not_found" in missing.stderr
        # No update ran on a copy (no proxy here): nothing is kept, nothing is committed.
        remote_main = ["--git-dir", str(world.state_remote), "rev-parse", "main"]
        head = git(*remote_main)
        unkept = cli("db", "rollback", staging)
        assert unkept.returncode == 2 and "nothing_kept" in unkept.stderr, unkept.stderr
        assert "odooops db backups" in unkept.stderr
        unconfirmed_rollback = cli("db", "rollback", prod)
        assert unconfirmed_rollback.returncode == 2 and "--confirm" in unconfirmed_rollback.stderr
        assert git(*remote_main) == head
        dump = tmp_path / "prod.zip"
        exported = cli("db", "export", prod, "-f", str(dump))
        assert exported.returncode == 0, exported.stderr
        imported = cli("db", "import", staging, str(dump))
        assert imported.returncode == 0, imported.stdout + imported.stderr
        bad = tmp_path / "not-a-dump.zip"
        bad.write_text("hello")
        rejected = cli("db", "import", staging, str(bad))
        assert rejected.returncode == 1 and "odoo_dump_invalid" in rejected.stderr
        mail = cli("mail", "list", staging, "-o", "json")
        assert mail.returncode == 0 and json.loads(mail.stdout) == []
        jobs = json.loads(cli("jobs", "-o", "json").stdout)
        assert {j["kind"] for j in jobs} >= {"backup", "clone", "restore", "import"}
        wait_for(
            lambda: status_of(world, "staging").get("health") == "Healthy",
            120,
            "staging to be started again after the import",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)

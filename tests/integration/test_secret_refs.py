"""A state file cannot send a secret where the operator did not declare it.

Real git remotes, the real engine and its API. The repository a project names is a TCP
listener on loopback that counts connections: "no request reaches that host" is measured, not
assumed.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from reconciler.core.model import SecretRef
from reconciler.drivers.secrets import SecretStore
from tests.integration.world import World, git

pytestmark = pytest.mark.integration

TOKEN = "ghp_0dooOpsT3stT0ken"


class Listener:
    """A TCP port on 127.0.0.1 that accepts, counts and closes every connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def project_file(world: World, url: str, token: dict[str, str]) -> dict[str, str]:
    doc: dict[str, Any] = {
        "repository": {"url": url, "token": token},
        "odoo": {"version": "19.0", "image": world.images["ODOOOPS_FIXTURE_ODOO_IMAGE"]},
        "modules": ["acme_base"],
    }
    return {f"projects/{world.project}.yaml": yaml.safe_dump(doc)}


def test_a_project_naming_another_host_is_refused_and_nothing_reaches_it(
    world: World, listener: Listener
) -> None:
    """The token is declared for git.example.com; the project sends it to 127.0.0.1."""
    engine = world.engine()
    engine.secrets.set_named("acme-git", TOKEN, ("git.example.com",))
    url = f"https://127.0.0.1:{listener.port}/acme.git"
    world.state.write(project_file(world, url, {"secret": "acme-git"}), "move the app")
    world.declare("staging", branch="release/v1")
    result = world.reconcile()
    assert result.state_error is not None and result.state_error.code == "invalid_state"
    error = engine.status.daemon.state_error
    assert error is not None
    assert [(p["code"], p["key"]) for p in error["problems"]] == [
        ("credential_host_forbidden", "repository.token")
    ]
    assert "not to 127.0.0.1" in error["problems"][0]["message"]
    assert listener.connections == 0
    assert TOKEN not in (world.data_dir / "status.json").read_text()


def test_a_secret_re_declared_for_other_hosts_holds_the_project_before_any_request(
    world: World, listener: Listener
) -> None:
    """Validated while the token was declared for 127.0.0.1, then re-declared (by the CLI, in
    another process) for git.example.com only: the next pass refuses before connecting."""
    engine = world.engine()
    engine.secrets.set_named("acme-git", TOKEN, ("127.0.0.1",))
    url = f"https://127.0.0.1:{listener.port}/acme.git"
    world.state.write(project_file(world, url, {"secret": "acme-git"}), "move the app")
    world.declare("staging", branch="release/v1")
    assert engine.load_state().projects[world.project].token is not None
    cli = SecretStore(world.data_dir / "secrets.enc", world.key)
    cli.set_named("acme-git", TOKEN, ("git.example.com",))
    result = world.reconcile()
    assert result.state_error is None
    status = engine.status.get(f"{world.project}/staging")
    assert status is not None
    held = next(c for c in status.conditions if c.type == "Held")
    assert held.status and "not to 127.0.0.1" in held.message
    assert listener.connections == 0


def test_an_api_write_naming_another_host_commits_nothing(world: World, listener: Listener) -> None:
    """PUT /v1/projects validates with the daemon's store: 422, no commit, no connection."""
    from starlette.testclient import TestClient

    from reconciler.api.app import create_app
    from reconciler.api.auth import AuthConfig, TokenAuthority
    from reconciler.api.controlplane import DaemonControlPlane
    from reconciler.gitops.gitsource import GitSource
    from reconciler.gitops.statewriter import StateWriter

    engine = world.engine()
    engine.load_state()
    engine.secrets.set_named("acme-git", TOKEN, ("git.example.com",))
    writer = StateWriter(
        GitSource(f"file://{world.state_remote}", world.root / "writes"),
        secrets=lambda: engine.secrets.policy,
    )
    authority = TokenAuthority(AuthConfig(secret=b"s" * 32))
    app = create_app(DaemonControlPlane(engine, writer, lambda: None), authority)
    admin = {"Authorization": f"Bearer {authority.mint('ann', ['admin'], email='a@x.example')}"}
    before = git("--git-dir", str(world.state_remote), "rev-parse", "main")
    doc = yaml.safe_load(
        project_file(world, f"https://127.0.0.1:{listener.port}/x.git", {"secret": "acme-git"})[
            f"projects/{world.project}.yaml"
        ]
    )
    with TestClient(app) as client:
        refused = client.put("/v1/projects/shop", json=doc, headers=admin)
        named_env = client.put(
            "/v1/projects/shop",
            json={**doc, "repository": {**doc["repository"], "token": {"env": "PGPASSWORD"}}},
            headers=admin,
        )
    assert refused.status_code == 422
    assert [p["code"] for p in refused.json()["problems"]] == ["credential_host_forbidden"]
    assert named_env.status_code == 422
    assert [p["code"] for p in named_env.json()["problems"]] == ["secret_ref_forbidden"]
    assert git("--git-dir", str(world.state_remote), "rev-parse", "main") == before
    assert listener.connections == 0
    assert TOKEN not in json.dumps(refused.json())


def odooops(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> Any:
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *args],
        input=stdin,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_secret_set_reads_stdin_and_list_shows_names_and_hosts_only(tmp_path: Any) -> None:
    """The value never is an argument (ps, shell history) nor printed back."""
    data = str(tmp_path / "data")
    assert odooops("init-key", f"{data}/master.key").returncode == 0
    done = odooops(
        "secret", "set", "acme-git", "--host", "GitHub.com", "--data-dir", data, stdin=TOKEN + "\n"
    )
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    listed = odooops("secret", "list", "--data-dir", data, "-o", "json")
    assert json.loads(listed.stdout) == [{"name": "acme-git", "hosts": ["github.com"]}]
    assert TOKEN not in listed.stdout
    store = SecretStore(tmp_path / "data" / "secrets.enc", _key(tmp_path / "data" / "master.key"))
    assert store.credential(SecretRef(secret="acme-git"), "https://github.com/acme/x.git") == TOKEN
    refused = odooops("secret", "set", "db/acme/prod", "--data-dir", data, stdin="x")
    assert refused.returncode == 2 and "error[usage]" in refused.stderr


def _key(path: Any) -> bytes:
    from reconciler.drivers.secrets import load_master_key

    return load_master_key(path)

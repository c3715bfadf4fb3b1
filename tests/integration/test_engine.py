"""From a commit in the state repository to running Odoo environments, and back.

Real git remotes, the real Docker engine and PostgreSQL, the Odoo stand-in image.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import threading
import urllib.request

import psycopg
import pytest
import yaml

from reconciler.core.errors import DriverError
from reconciler.core.model import DesiredEnvironment, EnvKey
from reconciler.core.planner import Action, Kind
from reconciler.engine.status import Health, Sync
from reconciler.engine.steps import StepResult
from tests.integration.world import GIT_ENV, World, git

pytestmark = pytest.mark.integration


def health(url: str) -> int:
    with urllib.request.urlopen(f"{url}/web/health", timeout=5) as resp:
        return int(resp.status)


def converge(world: World, env: str) -> dict:
    result = world.reconcile()
    assert result.errors == {}, result.errors
    status = world.engine().status.get(f"{world.project}/{env}")
    assert status is not None
    assert (status.sync, status.health) == (Sync.SYNCED, Health.HEALTHY), status
    assert health(status.url) == 200
    return status.to_dict()


def test_declared_staging_environment_is_created_and_answers_health(world: World) -> None:
    """A committed environment file becomes network, database, filestore and a healthy Odoo."""
    world.declare("staging", branch="release/v1")
    status = converge(world, "staging")
    assert status["tier"] == "staging"
    db = f"{world.project}__staging"
    assert db in world.databases()
    record = world.engine().ledger.database(EnvKey(world.project, "staging"))
    assert record is not None and record.initialised
    installed = {
        r[0] for r in world.query(db, "SELECT name FROM ir_module_module WHERE state = 'installed'")
    }
    assert {"base", "acme_base", "acme_sale"} <= installed
    assert not world.engine().plan()[3].has_changes


def test_database_password_reaches_the_container_only_as_a_file(world: World) -> None:
    world.declare("staging", branch="release/v1")
    converge(world, "staging")
    password = world.engine().secrets.get(f"db/{world.project}/staging")
    assert password
    container = world.containers()[f"odooops-{world.project}-staging-odoo"]
    assert password not in json.dumps(container.attrs)
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env["PASSWORD_FILE"] == "/run/odooops/db_password"
    assert password not in (world.data_dir / "status.json").read_text()


def test_editing_workers_replaces_the_container_on_the_same_port(world: World) -> None:
    world.declare("staging", branch="release/v1")
    before = converge(world, "staging")
    old_id = world.containers()[f"odooops-{world.project}-staging-odoo"].id
    world.declare("staging", branch="release/v1", overrides={"workers": 3})
    after = converge(world, "staging")
    container = world.containers()[f"odooops-{world.project}-staging-odoo"]
    assert container.id != old_id
    assert "--workers=3" in container.attrs["Args"]
    assert after["url"] == before["url"]
    assert after["spec_hash"] != before["spec_hash"]


def test_new_app_commit_is_deployed_with_a_module_update(world: World) -> None:
    world.declare("staging", branch="release/v1")
    converge(world, "staging")
    sha = world.app.write({"acme_base/README.md": "v2\n"}, "acme v2", branch="release/v1")
    result = world.reconcile()
    kinds = [a.kind for a in result.plan.actions]
    assert kinds[:3] == [Kind.BUILD_IMAGE, Kind.UPDATE_MODULES, Kind.REPLACE_ODOO]
    status = world.engine().status.get(f"{world.project}/staging")
    assert status is not None and status.revision == sha
    assert status.health == Health.HEALTHY


@pytest.mark.parametrize("drift", ["removed", "stopped"])
def test_drift_made_by_hand_is_healed(world: World, drift: str) -> None:
    """A container removed or stopped by hand comes back on the next pass."""
    world.declare("staging", branch="release/v1")
    converge(world, "staging")
    container = world.containers()[f"odooops-{world.project}-staging-odoo"]
    if drift == "removed":
        container.remove(force=True)
    else:
        container.stop()
    converge(world, "staging")


def test_feature_branch_gets_an_ephemeral_environment_and_loses_it_when_deleted(
    world: World,
) -> None:
    """A pushed branch matching an auto_create rule is an environment; deleting it prunes all."""
    world.app.write({"crm.txt": "reports\n"}, "crm", branch="feature/crm-reports")
    status = converge(world, "feature-crm-reports")
    assert status["tier"] == "ephemeral"
    names = set(world.containers())
    assert f"odooops-{world.project}-feature-crm-reports-db" in names
    world.app.delete_branch("feature/crm-reports")
    result = world.reconcile()
    assert result.errors == {}
    assert world.containers() == {}
    client = world.docker
    label = {"label": f"odooops.instance={world.instance}"}
    assert client.volumes.list(filters=label) == []
    assert client.networks.list(filters=label) == []


def test_a_branch_past_its_ttl_gets_no_environment_and_status_and_plan_say_why(
    world: World,
) -> None:
    """An old pushed feature branch is not silently ignored: the pass records why."""
    old = "2020-01-02T03:04:05+00:00"
    who = ["-c", "user.name=Ann", "-c", "user.email=ann@acme.example"]
    subprocess.run(
        ["git", *who, "commit", "-q", "--allow-empty", "-m", "old work"],
        cwd=world.app.dir,
        env={**GIT_ENV, "GIT_AUTHOR_DATE": old, "GIT_COMMITTER_DATE": old},
        check=True,
    )
    git("push", "-q", "origin", "HEAD:refs/heads/feature/old", cwd=world.app.dir)
    result = world.reconcile()
    assert result.errors == {}
    assert world.containers() == {}
    why = world.engine().status.daemon.expired[f"{world.project}/feature-old"]
    assert "feature/old" in why and "ttl" in why
    the_plan = world.engine().plan()[3]
    assert f"no environment: {world.project}/feature-old: {why}" in the_plan.render()


def test_removing_a_staging_file_removes_the_environment_and_its_data(world: World) -> None:
    """The last file is only removed once prune.allow_empty says an empty state is meant."""
    world.declare("staging", branch="release/v1")
    converge(world, "staging")
    world.remove("staging")
    guarded = world.reconcile()
    assert not guarded.plan.has_changes
    assert "prune.allow_empty" in guarded.plan.retained[0]
    assert f"odooops-{world.project}-staging-odoo" in world.containers()
    world.allow_empty()
    result = world.reconcile()
    assert result.errors == {}
    assert world.containers() == {}
    assert world.databases() == {}
    label = {"label": f"odooops.instance={world.instance}"}
    assert world.docker.volumes.list(filters=label) == []
    assert world.engine().status.get(f"{world.project}/staging") is None
    assert world.engine().secrets.get(f"db/{world.project}/staging") is None


def test_removing_production_keeps_its_database_and_filestore(world: World) -> None:
    """Prune never drops protected data: containers and network go, database and volume stay."""
    world.declare("production", branch="main")
    converge(world, "production")
    world.allow_empty()
    world.remove("production")
    result = world.reconcile()
    assert result.errors == {}
    assert [a.kind for a in result.plan.actions] == [Kind.REMOVE_ODOO, Kind.REMOVE_NETWORK]
    assert f"{world.project}__production" in world.databases()
    client = world.docker
    assert client.volumes.get(f"odooops-{world.project}-production-filestore")
    plan = world.engine().plan()[3]
    assert not plan.has_changes
    assert any("protected" in note for note in plan.retained)


def test_production_declared_again_after_removal_serves_its_kept_data(world: World) -> None:
    """Its kept database keeps the password its role has: declaring it again (a git revert,
    the natural recovery) starts Odoo on the same data, able to log in."""
    world.declare("production", branch="main")
    converge(world, "production")
    key, db = f"db/{world.project}/production", f"{world.project}__production"
    password = world.engine().secrets.get(key)
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=db) as conn:
        conn.execute("INSERT INTO ir_config_parameter (key, value) VALUES ('kept.marker', 'yes')")
    world.allow_empty()
    world.remove("production")
    assert world.reconcile().errors == {}
    assert world.engine().secrets.get(key) == password
    world.declare("production", branch="main")
    converge(world, "production")
    marker = world.query(db, "SELECT value FROM ir_config_parameter WHERE key = 'kept.marker'")
    assert marker == [("yes",)]


def test_invalid_state_commit_is_rejected_and_the_last_valid_one_stays(world: World) -> None:
    world.declare("staging", branch="release/v1")
    converge(world, "staging")
    old_id = world.containers()[f"odooops-{world.project}-staging-odoo"].id
    bad = world.state.write(
        {
            world.env_path("staging"): "branch: release/v1\noverrides:\n  workers: four\n"
            "colour: blue\n"
        },
        "broken",
    )
    result = world.reconcile()
    assert not result.plan.has_changes
    error = world.engine().status.daemon.state_error
    assert error is not None and error["commit"] == bad
    problems = {(p["code"], p["file"], p["line"]) for p in error["problems"]}
    assert ("unknown_key", world.env_path("staging"), 4) in problems
    assert any(p["line"] == 3 for p in error["problems"])
    assert world.containers()[f"odooops-{world.project}-staging-odoo"].id == old_id
    assert world.engine().status.daemon.state_commit != bad


def test_a_manifest_that_does_not_parse_is_refused_before_the_build(world: World) -> None:
    """Odoo would hide the module and exit 0: the platform refuses the revision instead, builds
    nothing, and the previous revision keeps serving."""
    world.declare("staging", branch="release/v1")
    status = converge(world, "staging")
    images = {i.id for i in world.docker.images.list(name=f"odooops/{world.project}")}
    world.app.write(
        {"acme_base/__manifest__.py": "{'name': 'broken',"}, "break it", branch="release/v1"
    )
    world.reconcile()
    engine = world.engine()
    held = engine.current.held if engine.current else {}
    reason = held[EnvKey(world.project, "staging")]
    assert "acme_base/__manifest__.py is not a Python dict literal" in reason
    assert {i.id for i in world.docker.images.list(name=f"odooops/{world.project}")} == images
    assert health(status["url"]) == 200


def test_failing_module_update_keeps_the_previous_revision_serving(world: World) -> None:
    world.declare("staging", branch="release/v1")
    status = converge(world, "staging")
    world.app.write(
        {"acme_base/__manifest__.py": "{'name': 'retired', 'installable': False}"},
        "retire it",
        branch="release/v1",
    )
    result = world.reconcile()
    key = next(iter(result.errors))
    # Real Odoo 19 exits 0: the module it cannot install any more is left pending ('to
    # upgrade') and base.partially_updated_database set; the database, not the exit code,
    # says so.
    assert result.errors[key].code == "partially_updated", result.errors[key]
    assert "acme_base (to upgrade)" in result.errors[key].message
    assert not result.errors[key].retryable
    assert health(status["url"]) == 200
    now = world.engine().status.get(f"{world.project}/staging")
    assert now is not None and now.health == Health.HEALTHY
    assert any(c.type == "Ready" and not c.status for c in now.conditions)
    # Status shows both: the old revision still serving, the new one wanted (and failing).
    assert now.serving == status["revision"] != now.revision

    # Not retried pass after pass (a production one would back up each time): only a new
    # commit or an explicit `odooops reconcile` (Engine.release) runs it again.
    engine = world.engine()
    applied: list[Kind] = []
    run = engine.steps.run
    engine.steps.run = lambda want, action: (applied.append(action.kind), run(want, action))[1]
    for _ in range(2):
        assert world.reconcile().errors[key].code == result.errors[key].code
    assert applied == []
    engine.release()
    assert world.reconcile().errors[key].code == result.errors[key].code
    assert Kind.UPDATE_MODULES in applied


def test_missing_app_repository_holds_the_environment_and_creates_nothing(world: World) -> None:
    project = yaml.safe_dump(
        {
            "repository": {"url": f"file://{world.root}/nope.git"},
            "odoo": {"image": world.images["ODOOOPS_FIXTURE_ODOO_IMAGE"]},
        }
    )
    world.state.write({f"projects/{world.project}.yaml": project}, "point at nothing")
    world.declare("staging", branch="release/v1")
    result = world.reconcile()
    assert not result.plan.has_changes
    assert result.plan.held
    reason = next(iter(result.plan.held.values()))
    assert "nope.git" in reason
    assert world.containers() == {}


# docker-py's UnixHTTPConnection leaks its socket when connect() fails; that is not ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unreachable_docker_engine_is_a_structured_error(world: World) -> None:
    with pytest.raises(DriverError) as info:
        world.new_engine(docker_url="unix:///nonexistent/docker.sock")
    assert info.value.code == "docker_unreachable"
    assert "docker info" in info.value.remediation
    gc.collect()  # let the leaked socket be reported here, where it is expected


def test_unreachable_database_server_changes_nothing(world: World) -> None:
    platform = yaml.safe_load((world.state.dir / "odooops.yaml").read_text())
    platform["database_servers"]["shared"]["port"] = 1
    world.state.write({"odooops.yaml": yaml.safe_dump(platform)}, "wrong port")
    world.declare("staging", branch="release/v1")
    result = world.reconcile()
    # The environments on that server are held with a structured error (a missing answer is
    # never read as "no database"); the state itself is fine, so the pass is not a state error.
    assert result.state_error is None
    assert not result.plan.has_changes
    ((key, error),) = result.errors.items()
    assert key.env == "staging"
    assert error.code == "database_unreachable"
    assert "pg_isready -h 127.0.0.1 -p 1" in error.remediation
    assert world.containers() == {}


def test_environment_logs_merge_all_containers_and_follow_stops_on_close(world: World) -> None:
    from reconciler.core.model import EnvKey

    world.app.write({"crm.txt": "x\n"}, "crm", branch="feature/logs")
    converge(world, "feature-logs")
    key = EnvKey(world.project, "feature-logs")
    docker = world.engine().docker

    async def read_all() -> list[str]:
        return [
            line async for line in docker.environment_logs(key, follow=False, since=None, tail=20)
        ]

    lines = asyncio.run(read_all())
    roles = {line.split(" | ", 1)[0] for line in lines}
    assert {"odoo", "db"} <= roles

    async def follow_then_leave() -> str:
        stream = docker.environment_logs(key, follow=True, since=None, tail=1)
        first = await stream.__anext__()
        await asyncio.wait_for(stream.aclose(), 5)  # returns promptly: connections closed
        return first

    assert " | " in asyncio.run(follow_then_leave())
    assert not [t for t in threading.enumerate() if "log" in t.name.lower()]


def _shell_app(world: World):  # type: ignore[no-untyped-def]
    from reconciler.api.app import create_app
    from reconciler.api.auth import AuthConfig, TokenAuthority
    from reconciler.api.controlplane import DaemonControlPlane
    from reconciler.gitops.gitsource import GitSource
    from reconciler.gitops.statewriter import StateWriter

    authority = TokenAuthority(AuthConfig(secret=b"s" * 32))
    writer = StateWriter(GitSource(f"file://{world.state_remote}", world.root / "writes"))
    plane = DaemonControlPlane(world.engine(), writer, lambda: None)
    return create_app(plane, authority), authority, plane


def _read_until(ws, needle: str) -> str:  # type: ignore[no-untyped-def]
    seen = ""
    while needle not in seen:
        seen += ws.receive_bytes().decode(errors="replace")
    return seen


@pytest.mark.parametrize(
    ("kind", "command", "answer"),
    [
        ("bash", b"echo odooops-$((6*7))\n", "odooops-42"),
        ("psql", b"SELECT 40 + 2 AS answer;\n", "42"),
    ],
)
def test_shell_runs_in_the_environment_and_is_recorded(
    world: World, kind: str, command: bytes, answer: str
) -> None:
    from starlette.testclient import TestClient

    world.declare("staging", branch="release/v1")
    converge(world, "staging")
    app, authority, plane = _shell_app(world)
    token = authority.mint("ann", ["shell"], email="ann@acme.example")
    path = f"/v1/environments/{world.project}/staging/shell?kind={kind}"
    with (
        TestClient(app) as client,
        client.websocket_connect(path, headers={"Authorization": f"Bearer {token}"}) as ws,
    ):
        ws.send_text('{"resize": [120, 40]}')
        ws.send_bytes(command)
        assert answer in _read_until(ws, answer)
        ws.send_bytes(b"exit\n" if kind == "bash" else b"\\q\n")
    events = [(e["event"], e["kind"], e["subject"]) for e in plane.sessions(10)]
    assert ("start", kind, "ann") in events and ("end", kind, "ann") in events


@pytest.mark.parametrize(
    ("kind", "script", "out", "exit_code"),
    [
        ("psql", b"SELECT 40 + 2 AS answer;\n", b"42", 0),
        ("psql", b"SELECT 1/0;\nSELECT 'not reached';\n", b"", 3),
        ("bash", b"echo out-$((6*7)); echo err-1 >&2; exit 5\n", b"out-42", 5),
    ],
    ids=["psql", "psql-error", "bash-status"],
)
def test_shell_without_a_tty_runs_piped_input_and_ends_with_its_status(
    world: World, kind: str, script: bytes, out: bytes, exit_code: int
) -> None:
    """Like docker exec -i: stdin to its end, stdout and stderr apart, the exit status back."""
    from starlette.testclient import TestClient

    world.declare("staging", branch="release/v1")
    converge(world, "staging")
    app, authority, _ = _shell_app(world)
    token = authority.mint("ann", ["shell"])
    path = f"/v1/environments/{world.project}/staging/shell?kind={kind}&tty=false"
    streams: dict[int, bytes] = {1: b"", 2: b""}
    with (
        TestClient(app) as client,
        client.websocket_connect(path, headers={"Authorization": f"Bearer {token}"}) as ws,
    ):
        ws.send_bytes(script)
        ws.send_text('{"eof": true}')  # no \\q and no exit needed: end of input ends it
        while True:
            message = ws.receive()
            if message.get("text"):
                end = json.loads(message["text"])
                break
            frame = message["bytes"]
            streams[frame[0]] += frame[1:]
    assert end == {"exit": exit_code}, streams
    assert out in streams[1]
    assert b"not reached" not in streams[1]
    if kind == "bash":
        assert streams[2] == b"err-1\n"
    if exit_code == 3:
        assert b"division by zero" in streams[2]


def test_shell_refuses_a_token_without_the_shell_scope(world: World) -> None:
    from starlette.testclient import TestClient

    world.declare("staging", branch="release/v1")
    converge(world, "staging")
    app, authority, _ = _shell_app(world)
    token = authority.mint("ann", ["env:write"])
    path = f"/v1/environments/{world.project}/staging/shell"
    with (
        TestClient(app) as client,
        client.websocket_connect(path, headers={"Authorization": f"Bearer {token}"}) as ws,
    ):
        error = json.loads(ws.receive_text())
        assert error["error"] == "forbidden"
        assert ws.receive()["code"] == 4403


def test_an_unhealthy_start_reports_the_log_tail_without_the_password(world: World) -> None:
    """The container's log reaches status and errors; its database password never does."""
    world.declare("staging", branch="release/v1")
    engine = world.new_engine(health_timeout=0.2)
    result = engine.reconcile()
    [error] = result.errors.values()
    assert error.code == "deploy_failed" and "not healthy" in error.message
    password = engine.secrets.get(f"db/{world.project}/staging")
    assert password and password not in error.message
    assert password not in (world.data_dir / "status.json").read_text()


def test_a_commit_changing_one_addon_updates_exactly_that_module(world: World) -> None:
    """Which modules to update comes from git: the addon folder whose tree changed is the only
    -u; a commit touching no addon runs no update at all."""
    world.declare("staging", branch="release/v1")
    converge(world, "staging")
    engine = world.engine()
    results: list[StepResult] = []
    run = engine.steps.run

    def recording(want: DesiredEnvironment | None, action: Action) -> StepResult:
        results.append(run(want, action))
        return results[-1]

    engine.steps.run = recording  # type: ignore[method-assign]
    world.app.write(
        {"acme_base/models/res_partner.py": "# a change\n"}, "touch acme_base", branch="release/v1"
    )
    converge(world, "staging")
    update = next(r for r in results if r.kind is Kind.UPDATE_MODULES)
    assert (update.outcome, update.detail) == (
        "done",
        "-u acme_base (changed since the last update)",
    )
    results.clear()
    world.app.write({"README.md": "docs only\n"}, "docs", branch="release/v1")
    converge(world, "staging")
    update = next(r for r in results if r.kind is Kind.UPDATE_MODULES)
    assert (update.outcome, update.detail) == ("skipped", "no module to update (no addon changed)")


def test_an_ephemeral_environment_placed_on_the_shared_server_has_no_container_of_its_own(
    world: World,
) -> None:
    """``db.placement: shared`` puts a dev-tier database on the project's server (where copies
    are template copies); changing the placement later holds it, and moves nothing."""
    world.declare("quick", branch="release/v1", tier="ephemeral", db={"placement": "shared"})
    status = converge(world, "quick")
    assert status["tier"] == "ephemeral"
    assert f"{world.project}__quick" in world.databases()
    assert f"odooops-{world.project}-quick-db" not in set(world.containers())
    world.declare("quick", branch="release/v1", tier="ephemeral")  # the tier's own: dedicated
    result = world.reconcile()
    held = world.engine().status.get(f"{world.project}/quick")
    assert held is not None
    message = next(c.message for c in held.conditions if c.type == "Held")
    assert "a database is never moved" in message
    assert f"{world.project}__quick" in world.databases()
    assert f"odooops-{world.project}-quick-db" not in set(world.containers())
    assert result.errors == {}

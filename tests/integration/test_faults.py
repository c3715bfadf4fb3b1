"""Fault injection: the daemon killed (SIGKILL) between every pair of steps, then restarted.

For each operation (create, update, replace, prune, restore, clone) the daemon first runs once
with ``ODOOOPS_FAULT_LOG`` to count its step boundaries; then, for every N, it runs with
``ODOOOPS_FAULT_KILL_AT=SCOPE:N`` and dies there as if the power went, is started again
without it, and must converge with nothing lost (the data written before is still there) and
nothing left behind (no stray container, volume, database or open journal). The matrix of
what was killed where is printed (``pytest -rP`` shows it).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from reconciler.core.golden import golden_database
from reconciler.core.model import EnvKey
from reconciler.core.sleep import Rest
from reconciler.data.moves import kept_databases
from reconciler.engine.ledger import Ledger
from tests.integration.containers import run_once, throwaway
from tests.integration.world import REPO_ROOT, World

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLED = -9
# A data operation as the daemon's job runs it, in a process of its own that can be killed.
_DATA_OP = """
import sys
from pathlib import Path
from reconciler.core.golden import golden_database
from reconciler.core.model import EnvKey
from reconciler.core.secretrefs import SecretPolicy
from reconciler.engine.bootstrap import open_engine
from reconciler.engine.engine import EngineConfig

state, data, instance, op, project, a, b, secrets_dir = sys.argv[1:9]
config = EngineConfig(state, Path(data), instance, health_timeout=90, health_interval=1)
engine = open_engine(config, None, SecretPolicy(secrets_dir=secrets_dir))
engine.refresh()
if op == "restore":
    engine.data.restore(EnvKey(project, a), b, confirm=True)
elif op == "golden":
    engine.data.refresh_golden(EnvKey(project, a), "refreshed by the fault test")
else:
    engine.data.clone(EnvKey(project, a), EnvKey(project, b))
engine.close()
"""


class Matrix:
    """What was killed where, and what the restart found (printed at the end)."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.rows: list[str] = []

    def add(self, n: int, where: str, outcome: str) -> None:
        self.rows.append(f"  {self.scenario:<8} kill at {n:>2}  {where:<48} {outcome}")

    def show(self) -> None:
        print(f"\nfault matrix: {self.scenario} ({len(self.rows)} kill points)")
        print("\n".join(self.rows))


def run(world: World, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**world.cli_env(), **env}
    return subprocess.run(
        [sys.executable, *args],
        env=environ,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


def daemon_once(world: World, **env: str) -> subprocess.CompletedProcess[str]:
    return run(
        world,
        [
            "-m",
            "reconciler.cli",
            "daemon",
            "--once",
            "--state-repo",
            f"file://{world.state_remote}",
            "--data-dir",
            str(world.data_dir),
            "--instance",
            world.instance,
            "--health-timeout",
            "90",
            "--health-interval",
            "1",
            "--listen",
            "off",
        ],
        **env,
    )


def data_op(world: World, op: str, a: str, b: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(
        world,
        [
            "-c",
            _DATA_OP,
            f"file://{world.state_remote}",
            str(world.data_dir),
            world.instance,
            op,
            world.project,
            a,
            b,
            str(world.secrets_dir),
        ],
        **env,
    )


def boundaries(log: Path, scope: str) -> list[str]:
    if not log.exists():
        return []
    return [
        line.split(" ", 1)[1] for line in log.read_text().splitlines() if line.startswith(scope)
    ]


def converged(world: World, *envs: str) -> None:
    """A restart converges: exit 0, each environment healthy, nothing stray anywhere."""
    done = daemon_once(world)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_clean(world, envs)


def assert_clean(world: World, envs: tuple[str, ...]) -> None:
    keys = [EnvKey(world.project, e) for e in envs]
    expected_containers = {k.odoo_container for k in keys}
    names = set(world.containers())
    proxy = f"odooops-{world.instance}-proxy"  # the daemon's reverse proxy, when routed
    stray = {
        n for n in names if n not in expected_containers and not n.endswith("-db") and n != proxy
    }
    assert not stray, f"containers left behind: {stray}"
    assert expected_containers <= names
    volumes = {
        v.name
        for v in world.docker.volumes.list(filters={"label": f"odooops.instance={world.instance}"})
    }
    stray_volumes = {
        v
        for v in volumes
        if not any(v.startswith(k.slug + "-") for k in keys) and not v.startswith(proxy + "-")
    }
    assert not stray_volumes, f"volumes left behind: {stray_volumes}"
    ledger = Ledger(world.data_dir / "ledger.db", read_only=True)
    try:
        # Besides the live databases, only the data an update kept (keep_previous), each
        # recorded in the ledger: a kept database the ledger forgot would never be removed.
        kept = {
            name
            for k in keys
            if (doc := ledger.kept(k)) is not None
            for name in kept_databases(doc)
        }
        assert world.owned_databases() == {k.database for k in keys} | kept
        assert ledger.entries() == [], "a journal entry is still open"
        for key in keys:
            record = ledger.database(key)
            assert record is not None and record.initialised, key
    finally:
        ledger.close()
    statuses = world.new_engine().status
    for key in keys:
        status = statuses.get(str(key))
        assert status is not None and (status.sync, status.health) == ("Synced", "Healthy"), status


def mark(world: World, env: str, value: str) -> None:
    """A row written as the environment's own role, as its Odoo would write it."""
    key = EnvKey(world.project, env)
    password = world.new_engine().password(key)
    with psycopg.connect(
        host="127.0.0.1", user=key.role, password=password, dbname=key.database, autocommit=True
    ) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS fault_marker (value text)")
        conn.execute("DELETE FROM fault_marker")
        conn.execute("INSERT INTO fault_marker VALUES (%s)", [value])


def marker(world: World, env: str) -> str:
    rows = world.query(EnvKey(world.project, env).database, "SELECT value FROM fault_marker")
    return str(rows[0][0]) if rows else ""


def kill_each(
    world: World,
    matrix: Matrix,
    scope: str,
    prepare: Callable[[int], None],
    act: Callable[..., subprocess.CompletedProcess[str]],
    check: Callable[[int], None],
    only: str = "",
) -> int:
    """Count the scenario's boundaries, then kill it at each one (each whose label contains
    ``only``, when given: the others are another test's); returns how many."""
    log = world.root / f"{matrix.scenario}-boundaries.log"
    prepare(0)
    counted = act(ODOOOPS_FAULT_LOG=str(log))
    assert counted.returncode == 0, counted.stdout + counted.stderr
    check(0)
    points = boundaries(log, scope)
    assert points, f"{matrix.scenario} passed no {scope} boundary"
    for n, where in enumerate(points, start=1):
        if only not in where:
            continue
        prepare(n)
        killed = act(ODOOOPS_FAULT_KILL_AT=f"{scope}:{n}")
        assert killed.returncode == KILLED, f"not killed at {n}: {killed.stdout}{killed.stderr}"
        check(n)
        matrix.add(n, where, "converged, nothing lost or left behind")
    matrix.show()
    return sum(only in where for where in points)


@pytest.fixture
def prod(world: World) -> World:
    """Production on main, converged, with a marker row that must never be lost."""
    world.declare("prod", branch="main", tier="production")
    converged(world, "prod")
    mark(world, "prod", "precious")
    return world


def test_create_killed_at_every_step_converges(world: World) -> None:
    matrix = Matrix("create")
    # The image is built once (then shared): every counted create has the same steps.
    world.declare("warm", branch="release/v1", tier="staging")
    converged(world, "warm")
    envs: list[str] = ["warm"]

    def prepare(n: int) -> None:
        envs.append(f"c{n}")
        world.app.write({}, f"branch for c{n}", branch=f"qa-c{n}")
        world.declare(f"c{n}", branch=f"qa-c{n}", tier="staging")

    def check(n: int) -> None:
        converged(world, *envs)

    assert (
        kill_each(world, matrix, "steps", prepare, lambda **e: daemon_once(world, **e), check) >= 5
    )


def test_update_and_replace_killed_at_every_step_lose_nothing(prod: World) -> None:
    world = prod

    def prepare_update(n: int) -> None:
        world.app.write({"acme_base/fault.txt": f"{n}\n"}, f"change {n}")

    def check(n: int) -> None:
        converged(world, "prod")
        assert marker(world, "prod") == "precious"

    once = lambda **e: daemon_once(world, **e)  # noqa: E731
    assert kill_each(world, Matrix("update"), "steps", prepare_update, once, check) >= 3

    def prepare_replace(n: int) -> None:
        world.declare("prod", branch="main", tier="production", overrides={"workers": 2 + n % 3})

    assert kill_each(world, Matrix("replace"), "steps", prepare_replace, once, check) >= 3


def test_prune_killed_at_every_step_leaves_nothing_behind(world: World) -> None:
    matrix = Matrix("prune")

    world.app.write({}, "a branch to remove", branch="qa-gone")

    def prepare(n: int) -> None:
        world.declare("gone", branch="qa-gone", tier="staging")
        world.declare("keep", branch="release/v1", tier="staging")
        converged(world, "gone", "keep")
        world.remove("gone")

    def check(n: int) -> None:
        converged(world, "keep")
        assert EnvKey(world.project, "gone").database not in world.owned_databases()

    assert (
        kill_each(world, matrix, "steps", prepare, lambda **e: daemon_once(world, **e), check) >= 3
    )


def test_restore_and_clone_killed_at_every_step_finish_or_roll_back(prod: World) -> None:
    world = prod
    world.declare("stage", branch="release/v1", tier="staging")
    converged(world, "prod", "stage")
    engine = world.new_engine()
    engine.refresh()
    backup = engine.data.backup(EnvKey(world.project, "prod"), "before the faults")
    engine.close()
    mark(world, "prod", "after the backup")

    def check_restore(n: int) -> None:
        converged(world, "prod", "stage")
        # Finished (the backup's data) or rolled back (the live data): never neither.
        assert marker(world, "prod") in ("precious", "after the backup")
        mark(world, "prod", "after the backup")

    restore = lambda **e: data_op(world, "restore", "prod", backup["id"], **e)  # noqa: E731
    assert kill_each(world, Matrix("restore"), "moves", lambda n: None, restore, check_restore) >= 6

    def check_clone(n: int) -> None:
        converged(world, "prod", "stage")
        assert marker(world, "prod") == "after the backup"  # the source is never touched

    clone = lambda **e: data_op(world, "clone", "prod", "stage", **e)  # noqa: E731
    assert kill_each(world, Matrix("clone"), "moves", lambda n: None, clone, check_clone) >= 6


def golden_policy(world: World) -> None:
    policies = yaml.safe_load((world.state.dir / "policies.yaml").read_text())
    policies["golden"] = {"refresh": "never"}
    world.state.write({"policies.yaml": yaml.safe_dump(policies)}, "golden copies on")


def test_a_copy_through_the_golden_copy_killed_at_every_step_finishes_or_rolls_back(
    prod: World,
) -> None:
    """``odooops db clone prod --to stage`` with golden copies on: a template copy of the
    golden copy, swapped in as a journalled move, killed at each of the move's boundaries.
    After a restart stage serves masked data of its own, the golden copy is as it was and
    nothing else is left."""
    world = prod
    golden_policy(world)
    world.declare("stage", branch="release/v1", tier="staging", db={"source": "prod"})
    done = daemon_once(world)
    assert done.returncode == 0, done.stdout + done.stderr
    prod_key, stage = EnvKey(world.project, "prod"), EnvKey(world.project, "stage")
    golden = golden_database(prod_key)
    people = world.query(prod_key.database, "SELECT count(*) FROM res_partner")[0][0]

    def check(n: int) -> None:
        restarted = daemon_once(world)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert world.owned_databases() == {prod_key.database, stage.database, golden}
        assert world.query(stage.database, "SELECT count(*) FROM res_partner") == [(people,)]
        assert world.query(golden, "SELECT count(*) FROM res_partner") == [(people,)]
        assert marker(world, "prod") == "precious"
        ledger = Ledger(world.data_dir / "ledger.db", read_only=True)
        try:
            assert ledger.entries() == [], "a journal entry is still open"
        finally:
            ledger.close()
        events = world.new_engine().status.events(str(stage))
        assert any(e["type"] == "Copied" and e["reason"] == "golden-template" for e in events)

    clone = lambda **e: data_op(world, "clone", "prod", "stage", **e)  # noqa: E731
    assert kill_each(world, Matrix("golden-clone"), "moves", lambda n: None, clone, check) >= 5


def test_golden_refresh_killed_at_every_step_keeps_a_usable_golden_copy(prod: World) -> None:
    """A refresh of the golden copy killed at each of its boundaries, then the daemon started
    again: there is always exactly one golden copy, recorded, masked and complete (the
    previous one, or the new one once the swap began), no scratch or set-aside database, no
    stray filestore directory, no open journal; staging, a copy of it, serves on."""
    world = prod
    golden_policy(world)
    world.declare("stage", branch="release/v1", tier="staging", db={"source": "prod"})
    done = daemon_once(world)
    assert done.returncode == 0, done.stdout + done.stderr
    prod_key = EnvKey(world.project, "prod")
    people = world.query(prod_key.database, "SELECT count(*) FROM res_partner")[0][0]

    def check(n: int) -> None:
        restarted = daemon_once(world)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        ledger = Ledger(world.data_dir / "ledger.db", read_only=True)
        try:
            assert ledger.entries() == [], "a journal entry is still open"
            doc = ledger.golden(prod_key)
        finally:
            ledger.close()
        assert doc is not None, "the golden copy is no longer recorded"
        golden = str(doc["database"])
        stage = EnvKey(world.project, "stage").database
        assert world.owned_databases() == {prod_key.database, stage, golden}
        assert world.query(golden, "SELECT count(*) FROM res_partner") == [(people,)]
        flag = "SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'"
        assert world.query(golden, flag) == [("true",)]
        listed = run_once(
            throwaway(
                world.images["ODOOOPS_FIXTURE_ODOO_IMAGE"],
                "filestore",
                entrypoint=["/bin/sh", "-c", "ls /v/filestore"],
                volumes={prod_key.filestore_volume: {"bind": "/v", "mode": "ro"}},
                user="0",
            )
        )
        assert set(listed.stdout.decode().split()) == {prod_key.database, golden}
        status = world.new_engine().status.get(f"{world.project}/stage")
        assert status is not None and (status.sync, status.health) == ("Synced", "Healthy")

    refresh = lambda **e: data_op(world, "golden", "prod", "-", **e)  # noqa: E731
    assert kill_each(world, Matrix("golden"), "golden", lambda n: None, refresh, check) >= 8


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def routed_staging(world: World, images: dict[str, str]) -> None:
    """Staging ``qa`` behind the daemon's proxy, keeping replaced data (``keep_previous``),
    converged, with the marker row. The proxy's CA is never reached (no certificate is
    needed to route)."""
    platform = yaml.safe_load((world.state.dir / "odooops.yaml").read_text())
    platform["ingress"] = {
        "domain": "faults.odooops.test",
        "acme": {"ca": "https://ca.invalid/dir"},
        "proxy": {
            "image": images["ODOOOPS_FIXTURE_CADDY_IMAGE"],
            "listen": "127.0.0.1",
            "http_port": _free_port(),
            "https_port": _free_port(),
        },
    }
    world.state.write({"odooops.yaml": yaml.safe_dump(platform)}, "ingress on")
    # The replaced data is kept: each kill also falls in the keeping and in the removal of
    # the data the previous update kept.
    world.declare("qa", branch="release/v1", tier="staging", overrides={"keep_previous": "1h"})
    converged(world, "qa")
    mark(world, "qa", "precious")


@pytest.mark.parametrize("scope", ["steps", "moves", "lifecycle"])
def test_routed_update_on_a_copy_and_blue_green_killed_at_every_step_lose_nothing(
    world: World, images: dict[str, str], scope: str
) -> None:
    """Staging behind the daemon's proxy, a module update on a copy then a blue/green
    replacement, killed at each boundary of one scope: the run's steps (the blue/green ones
    among them), the journalled move, the copy. After a restart it serves the old or the new
    revision, with the marker row kept and no copy, container or journal entry left. The
    proxy's CA is never reached (no certificate is needed to route)."""
    routed_staging(world, images)
    key = EnvKey(world.project, "qa")
    assert not world.containers()[key.odoo_container].attrs["HostConfig"]["PortBindings"]

    def prepare(n: int) -> None:
        world.app.write({"acme_base/fault.txt": f"{n}\n"}, f"change {n}", branch="release/v1")

    def check(n: int) -> None:
        converged(world, "qa")
        assert marker(world, "qa") == "precious"

    once = lambda **e: daemon_once(world, **e)  # noqa: E731
    assert kill_each(world, Matrix(f"update-{scope}"), scope, prepare, once, check) >= 3


@pytest.mark.parametrize("scope", ["steps", "moves", "lifecycle"])
def test_data_rollback_killed_at_every_step_serves_one_version_on_its_own_data(
    world: World, images: dict[str, str], scope: str
) -> None:
    """``odooops db rollback`` (the kept data marked, the environment pinned to its revision),
    killed at each boundary of one scope. Each round rolls back to the data the previous one
    kept, so the rounds alternate between two revisions. After a restart the environment
    serves the pinned revision, the marker row is kept, exactly one set of data is kept and
    no copy, container or journal entry is left."""
    routed_staging(world, images)
    key = EnvKey(world.project, "qa")
    world.app.write({"acme_base/fault.txt": "updated\n"}, "an update", branch="release/v1")
    converged(world, "qa")

    def prepare(n: int) -> None:
        ledger = Ledger(world.data_dir / "ledger.db")
        try:
            kept = ledger.kept(key)
            assert kept is not None, "the previous round kept no data"
            ledger.put_kept(key, {**kept, "rollback": True})  # what the API route marks
        finally:
            ledger.close()
        pinned = {"revision": kept["revision"], "overrides": {"keep_previous": "1h"}}
        world.declare("qa", f"pin {n}", branch="release/v1", tier="staging", **pinned)

    def check(n: int) -> None:
        converged(world, "qa")
        assert marker(world, "qa") == "precious"
        ledger = Ledger(world.data_dir / "ledger.db", read_only=True)
        try:
            record, kept = ledger.database(key), ledger.kept(key)
        finally:
            ledger.close()
        assert record is not None and kept is not None and not kept.get("rollback")
        running = world.containers()[key.odoo_container].labels["odooops.revision"]
        assert running == record.revision != kept["revision"]

    once = lambda **e: daemon_once(world, **e)  # noqa: E731
    # The run's blue/green steps after the swap are the routed update's test's to kill in.
    only = "data rollback" if scope == "steps" else ""
    matrix = Matrix(f"data-rollback-{scope}")
    assert kill_each(world, matrix, scope, prepare, once, check, only) >= 1


def test_a_test_gate_killed_at_every_step_leaves_no_scratch_database(world: World) -> None:
    """The tests of a gate run on a journalled scratch database: a daemon killed while they
    run, or right after, leaves it behind only until its restart, which drops it, runs the
    gate again and deploys."""
    policies = yaml.safe_load((world.state.dir / "policies.yaml").read_text())
    policies["tests"] = {"on": ["staging"]}
    world.state.write({"policies.yaml": yaml.safe_dump(policies)}, "a test gate on staging")
    manifest = {"name": "ACME checks", "version": "19.0.1.0.0", "depends": ["base"]}

    def prepare(n: int) -> None:
        world.app.write(
            {
                "acme_checks/__init__.py": "",
                "acme_checks/__manifest__.py": repr(manifest),
                "acme_checks/tests/__init__.py": "from . import test_round\n",
                "acme_checks/tests/test_round.py": (
                    "from odoo.tests import TransactionCase\n\n\n"
                    "class TestRound(TransactionCase):\n"
                    f"    def test_round_{n}(self):\n"
                    f"        self.assertEqual({n} + 1, {n + 1})\n"
                ),
                ".odooops.yaml": yaml.safe_dump({"modules": ["acme_checks"]}),
            },
            f"round {n}",
            branch="release/v1",
        )

    world.declare("stage", branch="release/v1", tier="staging")

    def check(n: int) -> None:
        converged(world, "stage")
        assert world.scratch_databases() == set()

    once = lambda **e: daemon_once(world, **e)  # noqa: E731
    assert kill_each(world, Matrix("gate"), "steps", prepare, once, check, only="tests") >= 3


ACME_BASE_V2 = {
    "acme_base/__manifest__.py": repr(
        {
            "name": "ACME Base",
            "version": "19.0.1.1.0",
            "depends": ["contacts"],
            "data": [],
            "license": "LGPL-3",
            "installable": True,
        }
    ),
    "acme_base/migrations/19.0.1.1.0/post-migrate.py": (
        "def migrate(cr, version):\n"
        "    cr.execute(\"UPDATE fault_marker SET value = value || ' (v2)'\")\n"
    ),
}


def pre_update_backup(world: World, env: str, data_revision: str) -> str:
    """The newest good backup of ``env`` taken before an update away from ``data_revision``."""
    folder = world.backup_dir / world.project / env
    found = [
        doc
        for doc in (yaml.safe_load(p.read_text()) for p in folder.glob("*.json"))
        if doc.get("status") == "good"
        and doc.get("data_revision") == data_revision
        and str(doc.get("reason", "")).startswith("before update")
    ]
    assert found, f"no pre-update backup of {env} at {data_revision[:12]}"
    return str(max(found, key=lambda d: str(d["started_at"]))["id"])


@pytest.mark.parametrize("scope", ["steps", "moves"])
def test_rollback_with_data_killed_at_every_step_restores_the_backup_once(
    prod: World, scope: str
) -> None:
    """``odooops rollback --with-data`` from a pre-update backup (the restore marked in the
    ledger, production pinned back to v1), killed at each boundary of one scope: the current
    data backed up, the backup restored, v1 started on it. Each round first updates to v2
    again (its migration rewrites the marker row, and a new pre-update backup is taken).
    After a restart the data is v1's exactly, the mark is gone, and nothing is left behind."""
    world = prod
    key = EnvKey(world.project, "prod")
    v1 = str(world.containers()[key.odoo_container].labels["odooops.revision"])
    v2 = world.app.write(ACME_BASE_V2, "acme_base 1.1: the marker migrated")

    def prepare(n: int) -> None:
        world.declare("prod", f"v2 again {n}", branch="main", tier="production", revision=v2)
        converged(world, "prod")
        assert marker(world, "prod") == "precious (v2)"
        ledger = Ledger(world.data_dir / "ledger.db")
        try:  # what POST .../rollback-version marks before it commits the pin
            ledger.put_restore_mark(
                key,
                {
                    "revision": v1,
                    "backup": pre_update_backup(world, "prod", v1),
                    "data_revision": v2,
                },
            )
        finally:
            ledger.close()
        world.declare("prod", f"roll back {n}", branch="main", tier="production", revision=v1)

    def check(n: int) -> None:
        converged(world, "prod")
        assert marker(world, "prod") == "precious"
        assert world.containers()[key.odoo_container].labels["odooops.revision"] == v1
        ledger = Ledger(world.data_dir / "ledger.db", read_only=True)
        try:
            record, mark = ledger.database(key), ledger.restore_mark(key)
        finally:
            ledger.close()
        assert mark is None and record is not None and record.revision == v1

    once = lambda **e: daemon_once(world, **e)  # noqa: E731
    only = "rollback" if scope == "steps" else ""
    matrix = Matrix(f"rollback-with-data-{scope}")
    assert kill_each(world, matrix, scope, prepare, once, check, only) >= 3


def sleepy_staging(world: World, images: dict[str, str]) -> Callable[[], int]:
    """Staging ``qa`` behind the daemon's proxy (Caddy's internal CA) that sleeps after 2 s,
    converged, with the marker row; returns how to send it a request through the proxy
    (the status, 0 without a connection)."""
    https_port = _free_port()
    platform = yaml.safe_load((world.state.dir / "odooops.yaml").read_text())
    platform["ingress"] = {
        "domain": "sleep-faults.odooops.test",
        "acme": {"ca": "internal"},
        "proxy": {
            "image": images["ODOOOPS_FIXTURE_CADDY_IMAGE"],
            "listen": "127.0.0.1",
            "http_port": _free_port(),
            "https_port": https_port,
        },
    }
    world.state.write({"odooops.yaml": yaml.safe_dump(platform)}, "ingress on")
    world.declare("qa", branch="release/v1", tier="staging", overrides={"sleep_after": "2s"})
    converged(world, "qa")
    mark(world, "qa", "precious")
    host = f"qa.{world.project}.sleep-faults.odooops.test"

    def request() -> int:
        try:
            with httpx.Client(verify=False, timeout=10) as client:  # the internal CA
                return client.get(
                    f"https://127.0.0.1:{https_port}/web/health",
                    headers={"Host": host},
                    extensions={"sni_hostname": host},
                ).status_code
        except httpx.TransportError:
            return 0

    return request


def rest_of(world: World, env: str) -> Rest | None:
    ledger = Ledger(world.data_dir / "ledger.db", read_only=True)
    try:
        activity = ledger.activity(EnvKey(world.project, env))
    finally:
        ledger.close()
    return None if activity is None else activity.state


def odoo_state(world: World, env: str) -> str:
    return str(world.containers()[EnvKey(world.project, env).odoo_container].status)


def asleep_after_a_pass(world: World, env: str) -> None:
    """Idle past its sleep_after, a pass puts it to sleep: stopped, its data kept."""
    time.sleep(2.5)
    done = daemon_once(world)
    assert done.returncode == 0, done.stdout + done.stderr
    assert rest_of(world, env) is Rest.ASLEEP
    assert odoo_state(world, env) == "exited"
    assert marker(world, env) == "precious"


def test_sleep_and_wake_killed_at_every_step_end_asleep_or_awake(
    world: World, images: dict[str, str]
) -> None:
    """Falling asleep (recorded, route switched, Odoo stopped) and waking (recorded, Odoo
    started, route given back), each killed at every boundary: the restart finishes it, so
    the environment ends asleep (stopped, the waking page served) or awake (Odoo served),
    never stopped behind Odoo's route or running behind the waking page, data kept.
    ``sleep_after`` is 2 s only while a test wants it to fall asleep, 1 h while it wants it
    awake: a pass takes longer than 2 s (changing it restarts nothing)."""
    request = sleepy_staging(world, images)
    once = lambda **e: daemon_once(world, **e)  # noqa: E731

    def sleep_after(value: str) -> None:
        world.declare("qa", branch="release/v1", tier="staging", overrides={"sleep_after": value})

    def awake_and_idle(n: int) -> None:
        if rest_of(world, "qa") is not Rest.AWAKE:
            sleep_after("1h")
            assert request() == 503
            converged(world, "qa")  # the pass reads the request and wakes it
        assert rest_of(world, "qa") is Rest.AWAKE
        sleep_after("2s")
        time.sleep(2.5)

    def ends_asleep(n: int) -> None:
        asleep_after_a_pass(world, "qa")
        assert request() == 503  # the waking page, not a stopped Odoo's 502

    falling = kill_each(world, Matrix("sleep"), "steps", awake_and_idle, once, ends_asleep)
    assert falling >= 2

    def asleep_and_asked_for(n: int) -> None:
        if rest_of(world, "qa") is not Rest.ASLEEP:
            sleep_after("2s")
            asleep_after_a_pass(world, "qa")
        sleep_after("1h")  # asleep stays asleep: only a request wakes it
        assert request() == 503

    def ends_awake(n: int) -> None:
        converged(world, "qa")
        assert rest_of(world, "qa") is Rest.AWAKE
        assert request() == 200
        assert marker(world, "qa") == "precious"

    waking = kill_each(world, Matrix("wake"), "steps", asleep_and_asked_for, once, ends_awake)
    assert waking >= 2

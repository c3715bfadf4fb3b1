"""Real Odoo 19's ways of failing with exit code 0 (or half-way), each a failed deploy naming
the module, against the stand-in that reproduces them (ODOO-CONTRACT.md, "How real Odoo 19
fails")."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping

import psycopg
import pytest
import yaml

from reconciler.core.errors import ErrorInfo
from reconciler.core.model import EnvKey
from reconciler.engine.status import Health, Sync
from tests.integration.world import World

pytestmark = pytest.mark.integration

OLD, NEW = "19.0.1.0.0", "19.0.1.1.0"


def manifest(
    name: str, version: str = OLD, depends: tuple[str, ...] = ("base",), **extra: str
) -> str:
    return repr(
        {"name": name, "version": version, "depends": list(depends), "license": "LGPL-3", **extra}
    )


def app_yaml(modules: list[str]) -> str:
    return yaml.safe_dump({"version": 1, "modules": ["acme_sale", *modules]})


def deploy(
    world: World, files: Mapping[str, str], modules: list[str], **fields: object
) -> ErrorInfo:
    """A new staging environment on an app revision with ``files``, installing ``modules``:
    the error its first pass ends with."""
    world.app.write({**files, ".odooops.yaml": app_yaml(modules)}, "add", branch="release/v1")
    world.declare("staging", branch="release/v1", tier="staging", **fields)
    errors = world.reconcile().errors
    key = EnvKey(world.project, "staging")
    assert key in errors, "the deploy was reported good"
    return errors[key]


def states(world: World, *names: str) -> dict[str, tuple[str, str]]:
    key = EnvKey(world.project, "staging")
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=key.database) as conn:
        rows = conn.execute(
            "SELECT name, state, latest_version FROM ir_module_module WHERE name = ANY(%s)",
            [list(names)],
        ).fetchall()
    return {name: (state, version) for name, state, version in rows}


def partially_updated(world: World) -> bool:
    key = EnvKey(world.project, "staging")
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=key.database) as conn:
        row = conn.execute(
            "SELECT 1 FROM ir_config_parameter WHERE key = 'base.partially_updated_database'"
        ).fetchone()
    return row is not None


def refused(world: World, files: Mapping[str, str], modules: list[str]) -> str:
    """A revision the platform refuses before building it: the environment is held with the
    reason, and nothing of it is made."""
    world.app.write({**files, ".odooops.yaml": app_yaml(modules)}, "add", branch="release/v1")
    world.declare("staging", branch="release/v1", tier="staging")
    world.reconcile()
    engine = world.engine()
    key = EnvKey(world.project, "staging")
    assert engine.current is not None and key not in engine.current.environments
    assert key.database not in world.databases()
    assert world.containers() == {}
    return engine.current.held[key]


def test_a_module_whose_manifest_does_not_parse_is_refused_before_the_build(world: World) -> None:
    """Odoo 19 logs an unreadable manifest at DEBUG and exits 0 (the module is simply absent):
    the platform reads every manifest first and refuses the revision, naming the file."""
    reason = refused(
        world,
        {"x_broken/__init__.py": "", "x_broken/__manifest__.py": "{'name': 'broken',"},
        ["x_broken"],
    )
    assert "x_broken/__manifest__.py is not a Python dict literal" in reason


def test_a_module_of_another_series_is_refused_before_the_build(world: World) -> None:
    reason = refused(
        world,
        {"x_old/__init__.py": "", "x_old/__manifest__.py": manifest("x_old", "18.0.1.0.0")},
        ["x_old"],
    )
    assert "module x_old (app: x_old) has version '18.0.1.0.0', not of Odoo 19.0" in reason


def test_an_uninstallable_module_asked_for_fails_the_deploy_naming_it(world: World) -> None:
    """A module marked installable: False is in the image (not refused: OCA repositories keep
    such modules), but asking for it is a failed deploy, not Odoo's silent exit 0."""
    error = deploy(
        world,
        {
            "x_old/__init__.py": "",
            "x_old/__manifest__.py": manifest("x_old", "18.0.1.0.0", installable=False),
        },
        ["x_old"],
    )
    assert error.code == "modules_not_installed"
    assert "x_old (uninstallable)" in error.message
    assert states(world, "x_old")["x_old"][0] == "uninstallable"


def test_a_module_whose_dependency_is_missing_fails_the_deploy_naming_both(world: World) -> None:
    error = deploy(
        world,
        {
            "x_dep/__init__.py": "",
            "x_dep/__manifest__.py": manifest("x_dep", depends=("no_such_module",)),
        },
        ["x_dep"],
    )
    assert error.code == "deploy_failed"
    assert "x_dep (uninstalled)" in error.message
    assert "depends on module 'no_such_module'" in error.message


def test_an_update_failing_on_the_third_of_five_modules_is_reported_half_updated(
    world: World,
) -> None:
    """Odoo commits module by module: the first two stay updated, which their versions say,
    and the previous revision keeps serving."""
    chain = [f"x_m{i}" for i in range(1, 6)]
    first = {f"{m}/__init__.py": "" for m in chain}
    for i, m in enumerate(chain):
        first[f"{m}/__manifest__.py"] = manifest(m, OLD, (chain[i - 1],) if i else ("base",))
    world.app.write(
        {**first, ".odooops.yaml": app_yaml(chain)}, "five modules", branch="release/v1"
    )
    world.declare("staging", branch="release/v1", tier="staging")
    assert world.reconcile().errors == {}
    status = world.engine().status.get(f"{world.project}/staging")
    assert status is not None and (status.sync, status.health) == (Sync.SYNCED, Health.HEALTHY)

    bumped = {f"{m}/__manifest__.py": manifest(m, NEW, (chain[i - 1],) if i else ("base",))
              for i, m in enumerate(chain)}  # fmt: skip
    bumped["x_m3/migrations/19.0.1.1.0/post-migrate.py"] = (
        "def migrate(cr, version):\n    raise ValueError('x_m3 cannot migrate this data')\n"
    )
    world.app.write(bumped, "bump all five", branch="release/v1")
    errors = world.reconcile().errors
    error = errors[EnvKey(world.project, "staging")]
    assert error.code == "partially_updated", error
    assert "x_m1, x_m2 were updated before the failure" in error.message
    assert "x_m3 cannot migrate this data" in error.message  # the log line saying why
    found = states(world, *chain)
    assert [found[m][1] for m in chain] == [NEW, NEW, OLD, OLD, OLD]
    assert all(state == "installed" for state, _ in found.values())
    # Odoo resets the pending states of a run that failed; the flag is for runs that
    # succeed with modules left pending, and it is not set here.
    assert not partially_updated(world)
    with urllib.request.urlopen(f"{status.url}/web/health", timeout=5) as resp:
        assert resp.status == 200  # the previous revision still serves


def test_an_init_over_its_memory_is_reported_as_out_of_memory(world: World) -> None:
    """The one-off container has its own budget (init_memory); a kill at it says so."""
    heavy = (
        "def allocate(env):\n"
        "    hog = b'x' * (600 * 1024 * 1024)\n"
        "    env.cr.execute('SELECT %s', (len(hog),))\n"
    )
    error = deploy(
        world,
        {
            "x_heavy/__init__.py": heavy,
            "x_heavy/__manifest__.py": manifest("x_heavy", post_init_hook="allocate"),
        },
        ["x_heavy"],
        overrides={"resource_limits": {"init_memory": "256Mi"}},
    )
    assert error.code == "out_of_memory", error
    assert "limit of 256Mi (resource_limits.init_memory)" in error.message

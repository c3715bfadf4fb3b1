"""Tests as a gate, for real: the Odoo tests of the modules a deployment changes run in a
one-off container of the new image on a scratch database; a failing or hanging test keeps the
previous version serving and leaves no scratch database or container behind."""

from __future__ import annotations

import urllib.request

import pytest
import yaml

from reconciler.core.model import EnvKey
from tests.integration.world import World

pytestmark = pytest.mark.integration

PASSING = """\
from odoo.tests import TransactionCase, tagged


@tagged("post_install", "-at_install")
class TestCodes(TransactionCase):
    def test_codes_are_upper_case(self):
        self.assertEqual("acme".upper(), "ACME")
"""

FAILING = PASSING.replace('"ACME")', '"acme")  # broken on purpose')

HANGING = """\
import time

from odoo.tests import TransactionCase


class TestSlow(TransactionCase):
    def test_waits_for_ever(self):
        time.sleep(600)
"""


def gate(world: World, **tests: object) -> None:
    policies = yaml.safe_load((world.state.dir / "policies.yaml").read_text())
    policies["tests"] = {"on": ["staging"], **tests}
    world.state.write({"policies.yaml": yaml.safe_dump(policies)}, "test gate")


def with_tests(world: World, body: str, message: str) -> str:
    """A module of the app with its tests (Python only: the stand-in imports a module's code
    to run its tests, and has no ORM for models to import)."""
    manifest = {"name": "ACME checks", "version": "19.0.1.0.0", "depends": ["base"]}
    return world.app.write(
        {
            "acme_checks/__init__.py": "",
            "acme_checks/__manifest__.py": repr(manifest),
            "acme_checks/tests/__init__.py": "from . import test_codes\n",
            "acme_checks/tests/test_codes.py": body,
            ".odooops.yaml": yaml.safe_dump({"modules": ["acme_checks"]}),
        },
        message,
        branch="release/v1",
    )


def health(url: str) -> int:
    with urllib.request.urlopen(f"{url}/web/health", timeout=5) as resp:
        return int(resp.status)


def test_a_failing_test_keeps_the_previous_version_serving(world: World) -> None:
    gate(world)
    with_tests(world, PASSING, "a test that passes")
    world.declare("staging", branch="release/v1")
    engine = world.engine()
    key = EnvKey(world.project, "staging")
    result = world.reconcile()
    assert result.errors == {}, result.errors
    build = engine.builds.list()[0]
    report = build.tests[str(key)]
    assert (report["result"], report["failed"], report["errors"]) == ("passed", 0, 0)
    assert report["passed"] >= 1 and "standard/acme_checks" in report["selector"]
    status = engine.status.get(str(key))
    assert status is not None
    serving = status.serving

    broken = with_tests(world, FAILING, "a test that fails")
    result = world.reconcile()
    error = result.errors[key]
    assert error.code == "tests_failed", error
    assert "FAIL: acme_checks: TestCodes.test_codes_are_upper_case" in error.message
    assert "AssertionError" in error.message
    failed = next(b for b in engine.builds.list() if b.revision == broken)
    assert failed.tests[str(key)]["result"] == "failed"
    status = engine.status.get(str(key))
    assert status is not None and status.serving == serving != broken
    assert health(status.url) == 200
    assert world.scratch_databases() == set()
    # Not run again by itself: only a new commit (or odooops reconcile) does.
    runs = len(engine.ledger.gate_reports(failed.image))
    assert world.reconcile().errors[key].code == "tests_failed"
    assert len(engine.ledger.gate_reports(failed.image)) == runs


def test_a_hanging_test_is_stopped_at_the_gate_timeout(world: World) -> None:
    gate(world, timeout="15s")
    with_tests(world, HANGING, "a test that never ends")
    world.declare("staging", branch="release/v1")
    key = EnvKey(world.project, "staging")
    error = world.reconcile().errors[key]
    assert error.code == "tests_failed", error
    assert "did not finish within 15 s" in error.message
    assert key.odoo_container not in world.containers()
    assert key.init_container not in {c.name for c in world.docker.containers.list(all=True)}
    assert world.scratch_databases() == set()

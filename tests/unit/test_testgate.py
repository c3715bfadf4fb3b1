"""Tests as a gate, the pure parts: the test selector, the reading of Odoo's test log, the
policy in policies.yaml, and where the planner puts the gate."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import yaml

from reconciler.core.config import load_state
from reconciler.core.model import Desired, GatePolicy, Tier
from reconciler.core.observed import Observed
from reconciler.core.planner import Kind, plan
from reconciler.core.testgate import gate_key, parse, selector
from tests.factories import desired, live

TEST = "odoo.addons.acme_sale.tests.test_order"


def line(level: str, logger: str, message: str) -> str:
    """One line as Odoo logs it."""
    return f"2026-12-05 10:00:01,100 7 {level} scratch {logger}: {message}"


LOG = "\n".join(
    [
        line("INFO", "odoo.modules.loading", "loading 12 modules..."),
        line("INFO", TEST, "Starting TestOrder.test_total ..."),
        line("ERROR", TEST, "FAIL: TestOrder.test_total"),
        "Traceback (most recent call last):",
        '  File "/opt/odooops/app/acme_sale/tests/test_order.py", line 9, in test_total',
        "    self.assertEqual(order.total, 10)",
        "AssertionError: 12 != 10",
        line("INFO", TEST, "Starting TestOrder.test_tax ..."),
        line("ERROR", TEST, "ERROR: TestOrder.test_tax"),
        "Traceback (most recent call last):",
        "KeyError: 'tax'",
        line(
            "ERROR",
            "odoo.tests.result",
            "1 failed, 1 error(s) of 5 tests when loading database 'scratch'",
        ),
    ]
)


def test_the_selector_keeps_the_tests_to_the_modules_deployed() -> None:
    assert selector(["acme_sale", "web_x"], ["standard", "-slow"]) == (
        "standard/acme_sale,standard/web_x,-slow"
    )
    assert selector(["acme_sale"], ["-external"]) == "standard/acme_sale,-external"


def test_failures_and_errors_are_read_with_their_output() -> None:
    report = parse(LOG, 1, ["acme_sale"], "standard/acme_sale")
    assert (report.total, report.failed, report.errors, report.passed) == (5, 1, 1, 3)
    assert not report.ok
    first, second = report.failures
    assert (first.kind, first.module, first.test) == ("FAIL", "acme_sale", "TestOrder.test_total")
    assert first.output[-1] == "AssertionError: 12 != 10"
    assert (second.kind, second.output[-1]) == ("ERROR", "KeyError: 'tax'")


def test_a_class_whose_set_up_raised_is_named() -> None:
    log = "\n".join(
        [
            line(
                "ERROR",
                "odoo.tests.suite",
                "ERROR: setUpClass (odoo.addons.acme_sale.tests.test_order.TestOrder)",
            ),
            "Traceback (most recent call last):",
            "ValueError: no company",
            line("ERROR", "odoo.tests.result", "0 failed, 1 error(s) of 1 tests"),
        ]
    )
    (failure,) = parse(log, 1).failures
    assert (failure.module, failure.output[-1]) == ("acme_sale", "ValueError: no company")
    assert failure.test == "setUpClass (odoo.addons.acme_sale.tests.test_order.TestOrder)"


def test_a_run_without_the_summary_line_is_no_pass() -> None:
    quiet = line("INFO", "odoo.modules.loading", "loading 1 modules...") + "\n"
    assert not parse(quiet, 0).ok
    summary = "0 failed, 0 error(s) of 3 tests when loading database 'scratch'"
    passed = quiet + line("INFO", "odoo.tests.result", summary) + "\n"
    assert parse(passed, 0).ok and parse(passed, 0).passed == 3
    assert not parse(passed, 1).ok  # Odoo's own exit code counts too


def test_the_policy_is_read_from_policies_yaml() -> None:
    files = {
        "odooops.yaml": yaml.safe_dump(
            {"database_servers": {"shared": {"host": "127.0.0.1"}}}
        ).encode(),
        "policies.yaml": yaml.safe_dump(
            {
                "branches": [{"match": "main", "tier": "production"}],
                "tests": {"on": ["dev", "ephemeral"], "tags": ["-external"], "timeout": "10m"},
            }
        ).encode(),
    }
    gate = load_state(files, "c" * 40).policies.tests
    assert gate == GatePolicy(
        frozenset({Tier.DEV, Tier.EPHEMERAL}), ("-external",), timedelta(minutes=10)
    )


def test_the_gate_comes_after_the_build_and_before_anything_is_deployed() -> None:
    gate = GatePolicy(frozenset({Tier.DEV}))
    want = replace(desired("dev", Tier.DEV), tests=gate)
    d = Desired("c" * 40, {want.key: want})
    actions = [a.kind for a in plan(d, Observed({}, frozenset())).actions]
    assert actions.index(Kind.BUILD_IMAGE) < actions.index(Kind.RUN_TESTS)
    assert actions.index(Kind.RUN_TESTS) < actions.index(Kind.INIT_DATABASE)

    # A new revision of a running environment: tested before its update and rollout.
    old = live(want, revision="b" * 40, spec_hash="old")
    actions = [a.kind for a in plan(d, Observed({want.key: old}, frozenset({want.image}))).actions]
    assert actions[0] is Kind.RUN_TESTS and Kind.REPLACE_ODOO in actions
    # Once passed (the ledger says so), not again; nor when nothing is deployed.
    passed = replace(old, gates=frozenset({gate_key(want)}))
    actions = [
        a.kind for a in plan(d, Observed({want.key: passed}, frozenset({want.image}))).actions
    ]
    assert Kind.RUN_TESTS not in actions and Kind.REPLACE_ODOO in actions
    running = live(want)
    assert plan(d, Observed({want.key: running}, frozenset({want.image}))).actions == ()

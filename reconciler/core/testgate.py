"""Tests as a gate: which Odoo tests run before an image is deployed, and what their run said.

Odoo.sh runs a branch's tests on every push and shows failing ones by name; a platform that
deploys first and tests later has already broken the environment. Here the tests of the
modules a deployment installs or updates run in a one-off container on a scratch database;
only a run whose summary says nothing failed lets the deployment go on.

Odoo reports tests through its log, not its exit code alone (``odoo/tests/result.py``): a
``FAIL:`` or ``ERROR:`` line per test with the traceback after it, and one summary line of the
``odoo.tests.result`` logger, "N failed, M error(s) of T tests when loading database 'DB'". A
run with no summary line ran no test at all (a module failed to load first): that is a failed
gate too, never a pass by silence.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.core.model import DesiredEnvironment

# Odoo's log line: "2026-12-05 10:00:00,123 42 ERROR db odoo.addons.m.tests.test_x: FAIL: ..."
_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ (?P<level>[A-Z]+) (?P<db>\S+) "
    r"(?P<logger>[\w.]+): (?P<message>.*)$"
)
_OUTCOME = re.compile(r"^(?P<kind>FAIL|ERROR): (?P<test>\S+)")
# A class whose set-up or tear-down raised (``odoo/tests/suite.py``): its tests count as one
# error, logged on ``odoo.tests.suite`` naming the class.
_CLASS_ERROR = re.compile(
    r"^ERROR: (?P<test>(setUpClass|tearDownClass) \(odoo\.addons\.(?P<module>\w+)\.[\w.]+\))"
)
_SUMMARY = re.compile(r"(?P<failed>\d+) failed, (?P<errors>\d+) error\(s\) of (?P<total>\d+) tests")
OUTPUT_LINES = 30  # of each failing test's output kept


@dataclass(frozen=True)
class TestFailure:
    __test__ = False  # not a pytest class

    test: str  # Class.method as Odoo names it
    kind: str  # FAIL (an assertion) or ERROR (an exception)
    module: str
    output: tuple[str, ...]


@dataclass(frozen=True)
class TestReport:
    """What one gate run said: counts from Odoo's summary and each failing test's output."""

    __test__ = False

    total: int
    failed: int
    errors: int
    failures: tuple[TestFailure, ...]
    summary: bool  # Odoo printed its summary line (tests ran to the end)
    exit_code: int
    modules: tuple[str, ...] = ()
    selector: str = ""

    @property
    def passed(self) -> int:
        return max(0, self.total - self.failed - self.errors)

    @property
    def ok(self) -> bool:
        return self.summary and self.exit_code == 0 and not self.failed and not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": "passed" if self.ok else "failed",
            "total": self.total,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "modules": list(self.modules),
            "selector": self.selector,
            "exit_code": self.exit_code,
            "failures": [
                {"test": f.test, "kind": f.kind, "module": f.module, "output": list(f.output)}
                for f in self.failures
            ],
        }


def selector(modules: Sequence[str], tags: Sequence[str]) -> str:
    """Odoo's ``--test-tags`` for ``tags`` within ``modules`` only: each including tag once
    per module (``standard/acme_sale``), excluding tags (``-slow``) as they are."""
    include = [t for t in tags if not t.startswith("-")] or ["standard"]
    exclude = [t for t in tags if t.startswith("-")]
    return ",".join([*(f"{t}/{m}" for m in modules for t in include), *exclude])


def gate_key(want: DesiredEnvironment) -> str:
    """What a passed gate vouches for: this image, in this environment, with these tests."""
    tags = ",".join(want.tests.tags) if want.tests else ""
    return hashlib.sha256(f"{want.key}|{want.image}|{tags}".encode()).hexdigest()[:24]


def parse(logs: str, exit_code: int, modules: Sequence[str] = (), spec: str = "") -> TestReport:
    """Read a ``--test-enable`` run's log."""
    failures: list[TestFailure] = []
    current: tuple[str, str, str] | None = None
    output: list[str] = []
    summary = None

    def close() -> None:
        if current is not None:
            failures.append(TestFailure(*current, tuple(output[:OUTPUT_LINES])))

    for raw in logs.splitlines():
        m = _LINE.match(raw)
        if m is None:
            if current is not None:
                output.append(raw)
            continue
        found = _OUTCOME.match(m["message"])
        if found and m["level"] == "ERROR" and m["logger"].startswith("odoo.addons."):
            close()
            module = m["logger"].split(".")[2]
            current, output = (found["test"], found["kind"], module), []
            continue
        found = _CLASS_ERROR.match(m["message"])
        if found and m["logger"] == "odoo.tests.suite":
            close()
            current, output = (found["test"], "ERROR", found["module"]), []
            continue
        close()
        current, output = None, []
        if m["logger"] == "odoo.tests.result":
            summary = _SUMMARY.search(m["message"]) or summary
    close()
    return TestReport(
        total=int(summary["total"]) if summary else 0,
        failed=int(summary["failed"]) if summary else 0,
        errors=int(summary["errors"]) if summary else 0,
        failures=tuple(failures),
        summary=summary is not None,
        exit_code=exit_code,
        modules=tuple(modules),
        selector=spec,
    )

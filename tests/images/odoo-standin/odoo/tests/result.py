"""The test report: counts and log lines of a test run (odoo/tests/result.py of Odoo 19,
OdooTestResult). Nothing is printed on a stream; everything goes through logging, each line
on the logger of the test's Python module (`odoo.addons.MOD.tests.test_x`):
- before each test, INFO "Starting TestClass.test_method ..." (a subtest is described as
  "Subtest TestClass.test_method (i=1)");
- a failure (the test's failureException, AssertionError) or an error (any other exception,
  also in setUp/tearDown) is INFO "=" * 70, then ERROR "FAIL: TestClass.test_method" or
  "ERROR: TestClass.test_method" followed, on the next lines, by the traceback: the frames of
  unittest itself (modules defining `__unittest`) are left out and, for a failure, so are the
  frames inside the assert method;
- a skipped test is INFO "skipped TestClass.test_method : reason";
- a failing subtest counts as one failure or error of its own (addSubTest).
`str(report)` is "F failed, E error(s) of N tests", the text of the final summary line
(cli.py). log_stats() logs on `odoo.tests.stats`, when that logger is enabled for INFO (the
default), one line per addon: INFO "MOD: N tests 0.12s 3 queries" (time and queries summed
over its tests; queries are those run through the stand-in's Cursor, see sql_db.py).
"""

from __future__ import annotations

import collections
import logging
import re
import time
import traceback
import unittest
from typing import Any, NamedTuple

from odoo import sql_db

__unittest = True  # frames of this module are left out of the tracebacks, as in Odoo

stats_logger = logging.getLogger("odoo.tests.stats")
_logger = logging.getLogger(__name__)
_TEST_ID = re.compile(r"^odoo\.addons\.(?P<module>[^.]+)\.tests\.(?P<class>.+)\.(?P<method>[^.]+)$")


class Stat(NamedTuple):
    time: float = 0.0
    queries: int = 0

    def __add__(self, other: object) -> Stat:  # type: ignore[override]
        if not isinstance(other, Stat):
            return NotImplemented
        return Stat(self.time + other.time, self.queries + other.queries)


class OdooTestResult:
    """unittest's TestResult protocol, counting instead of keeping the failures."""

    _previousTestClass: type | None = None
    _moduleSetUpFailed = False
    shouldStop = False
    failfast = False  # read by unittest's subTest

    def __init__(self, global_report: OdooTestResult | None = None) -> None:
        self.failures_count = 0
        self.errors_count = 0
        self.testsRun = 0
        self.skipped = 0
        self.time_start = 0.0
        self.queries_start = 0
        self.stats: dict[str, Stat] = collections.defaultdict(Stat)
        self.global_report = global_report

    def startTest(self, test: unittest.TestCase) -> None:
        self.testsRun += 1
        self.log(logging.INFO, "Starting %s ...", self.getDescription(test), test=test)
        self.time_start = time.time()
        self.queries_start = sql_db.sql_counter

    def stopTest(self, test: unittest.TestCase) -> None:
        if stats_logger.isEnabledFor(logging.INFO):
            self.stats[test.id()] = Stat(
                time.time() - self.time_start, sql_db.sql_counter - self.queries_start
            )

    def addError(self, test: Any, err: Any) -> None:
        self.errors_count += 1
        self.logError("ERROR", test, err)

    def addFailure(self, test: Any, err: Any) -> None:
        self.failures_count += 1
        self.logError("FAIL", test, err)

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        if err is not None:
            if issubclass(err[0], test.failureException):
                self.addFailure(subtest, err)
            else:
                self.addError(subtest, err)

    def addSuccess(self, test: Any) -> None:
        pass

    def addSkip(self, test: Any, reason: str) -> None:
        self.skipped += 1
        self.log(logging.INFO, "skipped %s : %s", self.getDescription(test), reason, test=test)

    def wasSuccessful(self) -> bool:
        return self.failures_count == self.errors_count == 0

    def update(self, other: OdooTestResult) -> None:
        """Merge another report into this one."""
        self.failures_count += other.failures_count
        self.errors_count += other.errors_count
        self.testsRun += other.testsRun
        self.skipped += other.skipped
        for test_id, stat in other.stats.items():
            self.stats[test_id] += stat

    def __str__(self) -> str:
        return (
            f"{self.failures_count} failed, {self.errors_count} error(s) of {self.testsRun} tests"
        )

    def log(self, level: int, msg: str, *args: Any, test: Any = None) -> None:
        """Log on the logger of the test's module (of this module without a test)."""
        source = test if test is not None else self
        while isinstance(source, unittest.case._SubTest) and source.test_case:
            source = source.test_case
        logging.getLogger(source.__module__).log(level, msg, *args)

    def log_stats(self) -> None:
        if not stats_logger.isEnabledFor(logging.INFO):
            return
        tree: dict[str, Stat] = collections.defaultdict(Stat)
        counts: collections.Counter[str] = collections.Counter()
        for test_id, stat in self.stats.items():
            if match := _TEST_ID.match(test_id):
                tree[match["module"]] += stat
                counts[match["module"]] += 1
        for module, stat in sorted(tree.items()):
            stats_logger.info(
                "%s: %d tests %.2fs %d queries", module, counts[module], stat.time, stat.queries
            )

    def getDescription(self, test: Any) -> str:
        if isinstance(test, unittest.case._SubTest):
            case = test.test_case
            return (
                f"Subtest {type(case).__qualname__}.{case._testMethodName} {test._subDescription()}"
            )
        if isinstance(test, unittest.TestCase):
            return f"{type(test).__qualname__}.{test._testMethodName}"
        return str(test)

    def logError(self, flavour: str, test: Any, error: Any) -> None:
        err = self._exc_info_to_string(error, test)
        self.log(logging.INFO, "=" * 70, test=test)
        self.log(logging.ERROR, "%s: %s\n%s", flavour, self.getDescription(test), err, test=test)

    def _exc_info_to_string(self, err: Any, test: Any) -> str:
        exctype, value, tb = err
        while tb and self._is_relevant_tb_level(tb):
            tb = tb.tb_next
        length = self._count_relevant_tb_levels(tb) if exctype is test.failureException else None
        return "".join(traceback.TracebackException(exctype, value, tb, limit=length).format())

    @staticmethod
    def _is_relevant_tb_level(tb: Any) -> bool:
        return "__unittest" in tb.tb_frame.f_globals

    def _count_relevant_tb_levels(self, tb: Any) -> int:
        length = 0
        while tb and not self._is_relevant_tb_level(tb):
            length += 1
            tb = tb.tb_next
        return length

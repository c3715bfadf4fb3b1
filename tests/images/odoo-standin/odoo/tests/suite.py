"""The suite that runs the selected tests (odoo/tests/suite.py of Odoo 19, OdooSuite): the
part of unittest's TestSuite Odoo vendors, without module-level setUp/tearDown.

Tests run in the order given; setUpClass runs before the first test of a class and
tearDownClass after its last. An exception in setUpClass is an error reported on a
placeholder named "setUpClass (odoo.addons.MOD.tests.test_x.TestClass)" (logged on
`odoo.tests.suite`, not counted as a test run) and the tests of that class are not run; an
exception in tearDownClass is reported the same way ("tearDownClass (...)"). A SkipTest in
setUpClass skips the class. Odoo's own suite also overrides the database's NOW() per class
and shares one cursor between classes; the stand-in has no such cursor (TransactionCase
opens its own, common.py).
"""

from __future__ import annotations

import sys
import unittest
from typing import Any
from unittest import util

from odoo.tests.result import OdooTestResult

__unittest = True


class _ErrorHolder:
    """Stands for a test in the report when setUpClass/tearDownClass fails."""

    failureException = None

    def __init__(self, description: str) -> None:
        self.description = description

    def id(self) -> str:
        return self.description

    def shortDescription(self) -> None:
        return None

    def __str__(self) -> str:
        return self.description

    def countTestCases(self) -> int:
        return 0


class OdooSuite(unittest.BaseTestSuite):
    def run(self, result: Any, debug: bool = False) -> OdooTestResult:
        for test in self:
            self._tearDownPreviousClass(test, result)
            self._handleClassSetUp(test, result)
            result._previousTestClass = type(test)
            if not getattr(type(test), "_classSetupFailed", False):
                test(result)
        self._tearDownPreviousClass(None, result)
        return result

    def has_http_case(self) -> bool:
        from odoo.tests.common import HttpCase  # here: common imports this module

        return any(isinstance(test, HttpCase) for test in self)

    def _handleClassSetUp(self, test: Any, result: Any) -> None:
        current = type(test)
        if current is result._previousTestClass or getattr(current, "__unittest_skip__", False):
            return
        current._classSetupFailed = False
        try:
            current.setUpClass()
        except Exception as exc:
            current._classSetupFailed = True
            self._report(result, exc, "setUpClass", util.strclass(current))
        finally:
            if current._classSetupFailed:
                current.doClassCleanups()
                for info in current.tearDown_exceptions:
                    self._report(result, info[1], "setUpClass", util.strclass(current), info)

    def _tearDownPreviousClass(self, test: Any, result: Any) -> None:
        previous = result._previousTestClass
        if previous is None or previous is type(test):
            return
        if getattr(previous, "_classSetupFailed", False):
            return
        if getattr(previous, "__unittest_skip__", False):
            return
        try:
            previous.tearDownClass()
        except Exception as exc:
            self._report(result, exc, "tearDownClass", util.strclass(previous))
        finally:
            previous.doClassCleanups()
            for info in previous.tearDown_exceptions:
                self._report(result, info[1], "tearDownClass", util.strclass(previous), info)

    @staticmethod
    def _report(result: Any, exc: BaseException, method: str, parent: str,
                info: Any = None) -> None:  # fmt: skip
        holder = _ErrorHolder(f"{method} ({parent})")
        if isinstance(exc, unittest.SkipTest):
            result.addSkip(holder, str(exc))
        else:
            result.addError(holder, info or sys.exc_info())

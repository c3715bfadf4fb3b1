"""Finding and running an addon's tests (odoo/tests/loader.py of Odoo 19).

- The tests of module MOD are the Python modules named `test_*` that the package
  `odoo.addons.MOD.tests` imports (its tests/__init__.py: `from . import test_x`); a file
  test_y.py that nothing imports does not run. In each, the TestCase classes defined there
  (not imported ones), each with its own methods whose name starts with `test`, sorted by
  name (get_module_test_cases); classes in definition order, modules by name.
- make_suite(modules, position) keeps the tests selected both by the position ('at_install'
  or 'post_install', as a tag) and by --test-tags (tag_selector.py), then sorts them by
  `test_sequence` (stably).
- An exception while importing `odoo.addons.MOD.tests` (a test module that does not import)
  is not caught: Odoo 19's _get_tests_modules imports it without a try, so it goes up
  through the loading of the database, which then fails as any loading error does (CRITICAL
  "Failed to initialize database `DB`." with the traceback, exit code 255; loading.py). Older
  Odoo versions logged "Can not `import MOD`." and went on; 19 does not. The module itself
  was committed before its tests ran, so it stays installed.
- run_suite runs a suite into a new report (result.py).
Not reproduced: the test modules Odoo also picks from `odoo.upgrade.MOD`,
`MOD/migrations/tests` and `MOD/upgrades/tests`. The stand-in imports an addon's package
only when it has tests (or a post_init_hook, loading.py); Odoo imports every module it loads.
"""

from __future__ import annotations

import importlib
import inspect
import os
import unittest
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from odoo.modules import Module, import_addon
from odoo.tests import common
from odoo.tests.result import OdooTestResult
from odoo.tests.suite import OdooSuite
from odoo.tests.tag_selector import TagsSelector


def has_tests(mod: Module) -> bool:
    """Whether `odoo.addons.MOD.tests` exists (a tests/ package or a tests.py)."""
    return os.path.isfile(os.path.join(mod.path, "tests", "__init__.py")) or os.path.isfile(
        os.path.join(mod.path, "tests.py")
    )


def get_test_modules(mod: Module) -> list[ModuleType]:
    """The `test_*` modules of the addon's tests package."""
    if not has_tests(mod):
        return []
    package = import_addon(mod)
    tests = importlib.import_module(f"{package.__name__}.tests")
    return [obj for name, obj in inspect.getmembers(tests, inspect.ismodule)
            if name.startswith("test_")]  # fmt: skip


def get_module_test_cases(module: ModuleType) -> Iterator[unittest.TestCase]:
    """One test case per test method of the classes defined in `module`."""
    for obj in list(vars(module).values()):
        if not (isinstance(obj, type) and issubclass(obj, unittest.TestCase)):
            continue
        if obj.__module__ != module.__name__:
            continue
        if getattr(obj, "allow_inherited_tests_method", False):
            methods = inspect.getmembers(obj, callable)
        else:
            methods = sorted(vars(obj).items())
        for name, method in methods:
            if callable(method) and name.startswith("test"):
                yield obj(name)


def make_suite(mods: list[Module], config: Any, position: str = "at_install") -> OdooSuite:
    """The tests of `mods` at `position` that --test-tags selects, in Odoo's order."""
    config_tags = TagsSelector(config["test_tags"])
    position_tag = TagsSelector(position)
    tests = [
        test
        for mod in mods
        for test_module in get_test_modules(mod)
        for test in get_module_test_cases(test_module)
        if position_tag.check(test) and config_tags.check(test)
    ]
    return OdooSuite(sorted(tests, key=lambda test: getattr(test, "test_sequence", 0)))


def run_suite(suite: OdooSuite, config: Any,
              global_report: OdooTestResult | None = None) -> OdooTestResult:  # fmt: skip
    """Run the suite on the current thread's database; its own report."""
    common.CONFIG.clear()
    common.CONFIG.update(config)
    results = OdooTestResult(global_report=global_report)
    suite(results)
    return results

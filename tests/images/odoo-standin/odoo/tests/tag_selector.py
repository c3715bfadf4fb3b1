"""`--test-tags`: which tests run (odoo/tests/tag_selector.py of Odoo 19, TagsSelector).

The spec is a comma-separated list of filters `[-][tag][/module][:class][.method][[params]]`
(a comma inside `[...]` does not split):
- `-` excludes, anything else (`+` or nothing) includes; a test runs when it matches at least
  one include and no exclude; a spec of excludes only also includes `standard`;
- an include without a tag (`/module`, `:Class`, `.method`) implicitly requires `standard`;
  `*` (or no tag in an exclude) matches any tag;
- `/module` compares with the test's module (the addon's name); `/path/to/test_x.py` (a
  `/...` ending in `.py`) matches tests whose Python module ends with that path;
  `:Class` the test's class name, `.method` its method name;
- the module's name counts as a tag of each of its tests (`--test-tags sale` selects the
  tests of `sale`);
- a test without `test_tags` (a plain unittest.TestCase rather than odoo.tests.BaseCase) is
  never selected;
- a filter that does not parse is an ERROR "Invalid tag X" and is ignored.
The loader also uses a selector of the position ('at_install' or 'post_install') to split
the tests between the two moments they run.

Assumption: Odoo's public history holds several versions of this file; this follows the one
taking a single spec argument, as Odoo 19's loader.make_suite calls it
(`TagsSelector(tools.config['test_tags'])`). Test parameters (`[...]`) are parsed and kept on
the test as `_test_params` as Odoo does, but no stand-in test case reads them.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_logger = logging.getLogger(__name__)


class TagsSelector:
    """Test selector based on tags."""

    filter_spec_re = re.compile(
        r"""
        ^
        ([+-]?)                     # operator
        (\*|\w*)                    # tag
        (?:\/([\w\/]*(?:.py)?))?    # module, or a file path ending in .py
        (?::(\w*))?                 # test class
        (?:\.(\w*))?                # test method
        (?:\[(.*)\])?               # parameters
        $""",
        re.VERBOSE,
    )

    def __init__(self, spec: str) -> None:
        parts = re.split(r",(?![^\[]*\])", spec or "")
        self.exclude: set[tuple[Any, ...]] = set()
        self.include: set[tuple[Any, ...]] = set()
        self.parameters: list[tuple[tuple[Any, ...], tuple[str, str]]] = []
        for filter_spec in (part.strip() for part in parts if part.strip()):
            match = self.filter_spec_re.match(filter_spec)
            if not match:
                _logger.error("Invalid tag %s", filter_spec)
                continue
            sign, tag, module, klass, method, parameters = match.groups()
            is_include = sign != "-"
            is_exclude = not is_include
            if not tag and is_include:
                tag = "standard"  # /module:class.method implicitly requires 'standard'
            elif not tag or tag == "*":
                tag = None  # any tag
            module_path = None
            if module and module.endswith(".py"):
                module_path = module[:-3].replace("/", ".")
                module = None
            test_filter = (tag, module or None, klass or None, method or None, module_path)
            if parameters:
                self.parameters.append((test_filter, ("-" if is_exclude else "+", parameters)))
                is_exclude = False
            if is_include:
                self.include.add(test_filter)
            if is_exclude:
                self.exclude.add(test_filter)
        if (self.exclude or self.parameters) and not self.include:
            self.include.add(("standard", None, None, None, None))

    def check(self, test: Any) -> bool:
        """Whether the test matches an include and no exclude."""
        if not hasattr(test, "test_tags"):
            _logger.debug("Skipping test '%s' because no test_tag found.", test)
            return False
        test_module = test.test_module
        test_class = getattr(test, "test_class", type(test).__name__)
        test_tags = test.test_tags | {test_module}  # the module is a tag too
        test_method = test._testMethodName

        def matches(test_filter: tuple[Any, ...]) -> bool:
            tag, module, klass, method, module_path = test_filter
            if tag and tag not in test_tags:
                return False
            if module_path and not test.__module__.endswith(module_path):
                return False
            if not module_path and module and module != test_module:
                return False
            if klass and klass != test_class:
                return False
            return not (method and test_method and method != test_method)

        if any(matches(test_filter) for test_filter in self.exclude):
            return False
        if not any(matches(test_filter) for test_filter in self.include):
            return False
        test._test_params = [param for flt, param in self.parameters if matches(flt)]
        return True

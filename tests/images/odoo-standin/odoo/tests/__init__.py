"""Module tests as Odoo 19 runs them with --test-enable / --test-tags (odoo/tests/).

- common: tagged, BaseCase, TransactionCase, HttpCase (what an addon's tests import)
- tag_selector: the --test-tags syntax
- loader: finding an addon's tests and building the suite of a position
- suite, result: running a suite and logging what happens, as Odoo's OdooSuite and
  OdooTestResult do
When the tests run, which modules' tests and what the run ends with is in loading.py and
cli.py.
"""

from odoo.tests.common import BaseCase, HttpCase, TransactionCase, get_db_name, tagged

__all__ = ["BaseCase", "HttpCase", "TransactionCase", "get_db_name", "tagged"]

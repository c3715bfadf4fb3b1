"""What an addon's tests import: `from odoo.tests import TransactionCase, tagged`
(odoo/tests/common.py of Odoo 19), without the ORM.

- `tagged(*tags)` adds the tags to the class's `test_tags`; a tag written `-x` removes `x`.
  Tags are inherited by subclasses. A class that ends up with both or neither of
  'at_install' and 'post_install' gets Odoo's WARNING "A tests should be either at_install
  or post_install, which is not the case of <class>".
- BaseCase is a plain unittest.TestCase. Each subclass defined in an addon's package
  (`odoo.addons.MOD...`) gets, unless it inherits tags already, `test_tags = {'standard',
  'at_install'}`, and always `test_module` (MOD), `test_class` (its name) and
  `test_sequence = 0` (the loader sorts the tests by it, stably). `env`, `cr` and
  `registry` are None on a BaseCase, as in Odoo.
- TransactionCase opens, per class, its own connection to the database under test and sets
  `cls.cr` (the stand-in's Cursor: execute, fetchone, fetchall, dictfetchall, ...) and
  `cls.env` (odoo.api.Environment: `env.cr`, `env.uid` 1, `env.context`; `env['model']`
  raises KeyError, there is no ORM). Each test runs inside `SAVEPOINT test_N`, rolled back
  after it; the class's transaction is rolled back at the end, so nothing a test writes is
  kept. As in Odoo, calling commit(), rollback() or close() on that cursor raises
  AssertionError "Cannot commit or rollback a cursor from inside a test, ..." (after printing
  the stack on stderr).
- HttpCase is a TransactionCase with `base_url()` (http://127.0.0.1:<http_port>) and
  `url_open(url, data=None, timeout=12, headers=None)` against the stand-in's own HTTP
  service (server.py). Odoo 19 starts that service whenever tests are enabled
  (ThreadedServer.start); the stand-in starts it when the first HttpCase class is set up,
  so a run without HttpCase logs no "HTTP service" line. url_open answers a small
  requests-like response (status_code, headers, content, text, json(), url) instead of a
  requests.Response, and follows redirects; browser tours (start_tour, browser_js) are not
  available.
- get_db_name() is the database whose modules are being tested (the current thread's).
"""

from __future__ import annotations

import itertools
import json as jsonlib
import logging
import threading
import traceback
import unittest
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from odoo import sql_db
from odoo.api import Environment

__all__ = ["BaseCase", "HttpCase", "TransactionCase", "get_db_name", "tagged"]

_logger = logging.getLogger(__name__)
HOST = "127.0.0.1"
# The running server's configuration, set by the loader before it runs tests.
CONFIG: dict[str, Any] = {}
_http: list[Any] = []  # the HTTP service once an HttpCase started it
_http_lock = threading.Lock()
_savepoint_seq = itertools.count()
FORBIDDEN = (
    "Cannot commit or rollback a cursor from inside a test, this will lead to a broken cursor "
    "when trying to rollback the test. Please rollback to a specific savepoint instead or "
    "open another cursor if really necessary"
)


def get_db_name() -> str:
    return getattr(threading.current_thread(), "dbname", None) or "?"


def tagged(*tags: str) -> Any:
    """A decorator to tag BaseCase classes (see the module's docstring)."""
    include = {tag for tag in tags if not tag.startswith("-")}
    exclude = {tag[1:] for tag in tags if tag.startswith("-")}

    def tags_decorator(obj: Any) -> Any:
        obj.test_tags = (getattr(obj, "test_tags", set()) | include) - exclude
        at_install = "at_install" in obj.test_tags
        post_install = "post_install" in obj.test_tags
        if not (at_install ^ post_install):
            _logger.warning(
                "A tests should be either at_install or post_install, which is not the case of %r",
                obj,
            )
        return obj

    return tags_decorator


class BaseCase(unittest.TestCase):
    """An Odoo test case: tagged, and found by the loader in an addon's tests."""

    registry: Any = None
    env: Any = None
    cr: Any = None
    longMessage = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("odoo.addons."):
            if getattr(cls, "test_tags", None) is None:
                cls.test_tags = {"standard", "at_install"}
            cls.test_module = cls.__module__.split(".")[2]
            cls.test_class = cls.__name__
            cls.test_sequence = 0


class _TestCursor(sql_db.Cursor):
    """The class's cursor: commit, rollback and close are forbidden to the tests."""

    def __init__(self, conn: Any, dbname: str) -> None:
        super().__init__(conn, dbname)
        self.commit = self.rollback = self.close = self._forbidden

    @staticmethod
    def _forbidden(*_args: Any, **_kwargs: Any) -> None:
        traceback.print_stack()
        raise AssertionError(FORBIDDEN)


class TransactionCase(BaseCase):
    """Tests sharing one transaction per class, each test in a savepoint."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        conn = sql_db.connect(CONFIG, get_db_name())
        cls.addClassCleanup(conn.close)
        cls.addClassCleanup(conn.rollback)  # cleanups run last-in first-out
        cls.cr = _TestCursor(conn, get_db_name())
        cls.env = Environment(cls.cr)

    def setUp(self) -> None:
        super().setUp()
        savepoint = f"test_{next(_savepoint_seq)}"
        self.cr.execute(f"SAVEPOINT {savepoint}")
        self.addCleanup(self.cr.execute, f"ROLLBACK TO SAVEPOINT {savepoint}")


class _Response:
    """The parts of a requests.Response that tests read."""

    def __init__(self, url: str, status_code: int, headers: Any, content: bytes) -> None:
        self.url, self.status_code, self.headers, self.content = url, status_code, headers, content
        self.text = content.decode("utf-8", errors="replace")
        self.ok = status_code < 400

    def json(self) -> Any:
        return jsonlib.loads(self.text)


class HttpCase(TransactionCase):
    """A TransactionCase that can send requests to the server under test."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        with _http_lock:
            if not _http:
                from odoo import server  # the HTTP service, only for runs with an HttpCase

                _http.extend(server.start(CONFIG))

    @classmethod
    def base_url(cls) -> str:
        return f"http://{HOST}:{CONFIG['http_port']}"

    def url_open(self, url: str, data: Any = None, timeout: float = 12,
                 headers: dict[str, str] | None = None) -> _Response:  # fmt: skip
        if url.startswith("/"):
            url = self.base_url() + url
        body = urllib.parse.urlencode(data).encode() if isinstance(data, dict) else data
        request = urllib.request.Request(url, data=body, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return _Response(answer.url, answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as answer:
            return _Response(url, answer.code, answer.headers, answer.read())

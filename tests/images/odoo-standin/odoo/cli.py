"""`odoo [COMMAND] [options]`: command dispatch and the server command (odoo/cli/).

- A first argument not starting with '-' names a command: `shell`, `neutralize`,
  `server`; others are an error (the stand-in has no `db`, `scaffold`, ...).
- The server command refuses database user `postgres` ("Using the database user
  'postgres' is a security risk, aborting.", exit 1), creates each database named by -d
  when missing, then loads it (-i/-u). With --stop-after-init (implied by --test-enable)
  it exits 0, or 255 when loading failed (Odoo's -1, after CRITICAL "Failed to initialize
  database `DB`." and the traceback); otherwise it serves HTTP until SIGTERM/SIGINT, then
  exits 0. A database that fails to load is logged and the server keeps serving, as Odoo's
  does. With --workers > 0 the process then takes a worker's memory limit (server.py).
- Tests (odoo/service/server.py of Odoo 19, preload_registries and ThreadedServer.run). The
  at_install tests run while each database loads (loading.py). Then, per database, INFO
  "Starting post tests" (logger odoo.service.server), the post_install tests selected by
  --test-tags of the modules installed or upgraded by this run (with -i/-u, or a database -d
  created) or else of every loaded module, INFO "N post-tests in 1.23s, Q queries", and the
  report's stats (odoo.tests.stats, result.py). After every database: one summary line per
  loaded database on logger odoo.tests.result, "F failed, E error(s) of N tests when loading
  database 'DB'": ERROR when a test failed or erred, WARNING when no test ran, INFO
  otherwise; its DB column names the last database preloaded (the main thread keeps it in
  Odoo). The exit code is the number of databases whose tests did not all pass (1 for one
  database: sys.exit(rc)); a database that fails to load still stops the run with 255 (-1),
  after the summaries of the databases loaded before it. A test that hangs hangs the run:
  Odoo sets no timeout of its own on a test. --workers > 0 with tests is Odoo's WARNING
  "Unit testing in workers mode could fail; use --workers 0.".
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from odoo import DESCRIPTION, VERSION, loading, logs, neutralize, server, shell, sql_db
from odoo import config as odoo_config
from odoo.tests import loader

_logger = logging.getLogger("odoo")
_server_logger = logging.getLogger("odoo.service.server")


def _check_postgres_user(config: Any) -> None:
    if (config["db_user"] or os.environ.get("PGUSER")) == "postgres":
        sys.stderr.write("Using the database user 'postgres' is a security risk, aborting.")
        sys.exit(1)


def _report(config: Any) -> None:
    _logger.info("Odoo version %s", VERSION)
    if os.path.isfile(config["rcfile"]):
        _logger.info("Using configuration file at %s", config["rcfile"])
    _logger.info("addons paths: %s", odoo_config.addons_paths(config))
    where = (config[key] or "default" for key in ("db_user", "db_host", "db_port"))
    _logger.info("database: %s@%s:%s", *where)


def _preload(config: Any, created: dict[str, bool], loaded: list[loading.Registry]) -> int:
    """Load each database (into `loaded`) and run its post_install tests; -1 when one fails
    to load, else the number of databases whose tests failed (Odoo's preload_registries)."""
    rc = 0
    for dbname, was_created in created.items():
        try:
            registry = loading.load(config, dbname, was_created)
            loaded.append(registry)
            if config["test_enable"]:
                _post_tests(config, registry)
            if registry.assertion_report and not registry.assertion_report.wasSuccessful():
                rc += 1
        except Exception:
            _server_logger.critical("Failed to initialize database `%s`.", dbname, exc_info=True)
            return -1
        finally:
            logs.use_database(None)
    return rc


def _post_tests(config: Any, registry: loading.Registry) -> None:
    """The post_install tests of the modules this run updated (else of all), then stats."""
    report = registry.assertion_report
    assert report is not None
    started, queries = time.time(), sql_db.sql_counter
    names = registry.updated_modules if registry.update_module else sorted(registry.modules)
    _server_logger.info("Starting post tests")
    before = report.testsRun
    suite = loader.make_suite([registry.modules[name] for name in names], config, "post_install")
    report.update(loader.run_suite(suite, config, global_report=report))
    _server_logger.info(
        "%d post-tests in %.2fs, %s queries",
        report.testsRun - before, time.time() - started, sql_db.sql_counter - queries,
    )  # fmt: skip
    report.log_stats()


def _log_reports(loaded: list[loading.Registry], last: str) -> None:
    """The summary line of each loaded database's tests (ThreadedServer.run); `last` is the
    database preloaded last, which the main thread's log lines still name."""
    result_logger = logging.getLogger("odoo.tests.result")
    logs.use_database(last)
    for registry in loaded:
        report = registry.assertion_report
        assert report is not None
        if not report.wasSuccessful():
            log = result_logger.error
        elif not report.testsRun:
            log = result_logger.warning
        else:
            log = result_logger.info
        log("%s when loading database %r", report, registry.db_name)
    logs.use_database(None)


def run_server(args: list[str]) -> int:
    config = odoo_config.parse(args)
    _check_postgres_user(config)
    logs.setup(config)
    if os.geteuid() == 0:
        _logger.warning("Running as user 'root' is a security risk.")
    _report(config)
    dbnames = odoo_config.names(config["db_name"])
    created = {db: sql_db.create_if_missing(config, db) for db in dbnames}

    if config["workers"] and config["test_enable"]:
        _server_logger.warning("Unit testing in workers mode could fail; use --workers 0.")
    loaded: list[loading.Registry] = []
    if config["stop_after_init"]:
        rc = _preload(config, created, loaded)
        if config["test_enable"] and created:
            dbnames = list(created)
            _log_reports(loaded, dbnames[len(loaded)] if rc == -1 else dbnames[-1])
        return rc

    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stopping.is_set():
            os._exit(0)
        _logger.info("Initiating shutdown")
        _logger.info("Hit CTRL-C again or send a second signal to force the shutdown.")
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    servers = server.start(config) if config["http_enable"] else []
    _preload(config, created, loaded)
    server.limit_memory_hard(config)
    while not stopping.wait(0.5):
        pass
    server.stop(servers)
    return 0


COMMANDS = {"server": run_server, "shell": shell.main, "neutralize": neutralize.main}


def main() -> None:
    args = sys.argv[1:]
    command = "server"
    if args and not args[0].startswith("-"):
        command, args = args[0], args[1:]
    if command not in COMMANDS:
        sys.exit(f"Unknown command {command!r}; the {DESCRIPTION} stand-in has {sorted(COMMANDS)}")
    sys.exit(COMMANDS[command](args))

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
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

from odoo import DESCRIPTION, VERSION, loading, logs, neutralize, server, shell, sql_db
from odoo import config as odoo_config

_logger = logging.getLogger("odoo")


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


def _preload(config: Any, created: dict[str, bool]) -> int:
    """Load each database; -1 when one fails (Odoo's preload_registries)."""
    for dbname, was_created in created.items():
        try:
            loading.load(config, dbname, was_created)
        except Exception:
            logging.getLogger("odoo.service.server").critical(
                "Failed to initialize database `%s`.", dbname, exc_info=True
            )
            return -1
        finally:
            logs.use_database(None)
    return 0


def run_server(args: list[str]) -> int:
    config = odoo_config.parse(args)
    _check_postgres_user(config)
    logs.setup(config)
    if os.geteuid() == 0:
        _logger.warning("Running as user 'root' is a security risk.")
    _report(config)
    dbnames = odoo_config.names(config["db_name"])
    created = {db: sql_db.create_if_missing(config, db) for db in dbnames}

    if config["stop_after_init"]:
        return _preload(config, created)

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
    _preload(config, created)
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

"""Logging in Odoo's format, on stderr (Odoo's StreamHandler) or --logfile.

`2026-01-18 10:00:00,123 1 INFO mydb odoo.modules.loading: message`: time, pid, level,
the database the current thread works on ('?' when none), logger name.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

FORMAT = "%(asctime)s %(pid)s %(levelname)s %(dbname)s %(name)s: %(message)s"
# Odoo's --log-level names, old and new, as logging levels.
ALIASES = {"warn": "WARNING", "test": "INFO", "runbot": "INFO"}


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.pid = os.getpid()
        record.dbname = getattr(threading.current_thread(), "dbname", "?")
        return super().format(record)


def setup(config: Any) -> None:
    """Install the handler once; --log-level sets the root level. Then log what parsing the
    configuration had to say before there was a handler (Odoo flushes it the same way)."""
    handler: logging.Handler = (
        logging.FileHandler(config["logfile"]) if config["logfile"] else logging.StreamHandler()
    )
    handler.setFormatter(_Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    name = config["log_level"] or "info"
    root.setLevel("DEBUG" if name.startswith("debug") else ALIASES.get(name, name.upper()))
    for level, message, args in config.get("log_entries", ()):
        logging.getLogger("odoo.tools.config").log(level, message, *args)


def use_database(dbname: str | None) -> None:
    """Name the database of the current thread in its log lines."""
    threading.current_thread().dbname = dbname or "?"  # type: ignore[attr-defined]

"""Connections to PostgreSQL with the configured db_* values, and database creation.

As in odoo/sql_db.py, an unset db_host/db_port/db_user/db_password is left to libpq,
which then reads the PG* variables or uses its defaults (the local socket).
Connections carry db_app_name as their application_name (PGAPPNAME, by default
`odoo-{pid}`, `{pid}` replaced by the process id), so pg_stat_activity shows who they are.
As in odoo/service/db.py, a database named by -d is created when missing
(ENCODING unicode, LC_COLLATE C with template0) and gets pg_trgm when allowed.
Cursor is the part of Odoo's cursor that SQL-only code (shell, migration scripts, hooks,
tests) uses. As odoo/sql_db.py's module-level `sql_counter`, every query run through a Cursor
is counted; the test reports (odoo/tests) read it for their query counts. The stand-in's own
loading code uses plain psycopg2 cursors, which are not counted.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import psycopg2
from psycopg2 import sql

_logger = logging.getLogger("odoo.service.db")
sql_counter = 0  # queries run through a Cursor in this process (odoo/sql_db.py's counter)


def connect(config: Any, dbname: str) -> Any:
    """A new connection to `dbname` (psycopg2 opens a transaction on first use)."""
    return psycopg2.connect(
        dbname=dbname,
        host=config["db_host"] or None,
        port=config["db_port"] or None,
        user=config["db_user"] or None,
        password=config["db_password"] or None,
        sslmode=config["db_sslmode"],
        application_name=(config["db_app_name"] or "").replace("{pid}", str(os.getpid())),
    )


def create_if_missing(config: Any, dbname: str) -> bool:
    """Create an empty database unless it exists; True when it was created."""
    conn = connect(config, "postgres")
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cr:
            cr.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
            if cr.fetchone():
                return False
            template = config["db_template"]
            collate = "LC_COLLATE 'C'" if template == "template0" else ""
            create = f"CREATE DATABASE {{}} ENCODING 'unicode' {collate} TEMPLATE {{}}"
            cr.execute(sql.SQL(create).format(sql.Identifier(dbname), sql.Identifier(template)))
    finally:
        conn.close()
    _logger.info("Create database `%s`.", dbname)
    try:
        conn = connect(config, dbname)
        with conn, conn.cursor() as cr:
            cr.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        conn.close()
    except psycopg2.Error as exc:
        _logger.warning("Unable to create PostgreSQL extensions : %s", exc)
    return True


def is_initialized(cr: Any) -> bool:
    """Odoo's test: the module registry table exists."""
    cr.execute("SELECT 1 FROM pg_class WHERE relkind = 'r' AND relname = 'ir_module_module'")
    return cr.fetchone() is not None


class Cursor:
    """Odoo's cursor as SQL-only code sees it: execute, fetch*, dictfetchall, commit, rollback.

    It shares the connection's transaction: commit() commits whatever the caller did too.
    """

    def __init__(self, conn: Any, dbname: str) -> None:
        self._conn, self._cr, self.dbname = conn, conn.cursor(), dbname
        self.commit, self.rollback = conn.commit, conn.rollback

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cr, name)  # fetchone, fetchall, rowcount, ...

    def execute(self, query: Any, params: Any = None) -> None:
        global sql_counter
        sql_counter += 1
        self._cr.execute(query, params)

    def dictfetchall(self) -> list[dict[str, Any]]:
        columns = [col.name for col in self._cr.description]
        return [dict(zip(columns, row, strict=True)) for row in self._cr.fetchall()]

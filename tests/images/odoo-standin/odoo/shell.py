"""`odoo shell -d DB`: Python with an `env` on the database (odoo/cli/shell.py).

Code comes from stdin when it is not a terminal (`echo "print(1)" | odoo shell -d DB`),
else an interactive console. As in Odoo, nothing is committed unless the code calls
env.cr.commit(): the transaction is rolled back at the end. The stand-in has no ORM:
`env.cr` (execute, fetchone, fetchall, dictfetchall, commit, rollback) is what it offers.
"""

from __future__ import annotations

import code
import logging
import sys
from typing import Any

import odoo
from odoo import config as odoo_config
from odoo import logs, sql_db
from odoo.api import Environment
from odoo.sql_db import Cursor

_logger = logging.getLogger("odoo.cli.shell")


def main(args: list[str]) -> int:
    config = odoo_config.parse(args, extra=[("--shell-interface", "shell_interface", str, None)])
    logs.setup(config)
    local_vars: dict[str, Any] = {"odoo": odoo, "openerp": odoo}
    dbname = config["db_name"]
    conn = None
    if dbname:
        logs.use_database(dbname)
        conn = sql_db.connect(config, dbname)
        cr = Cursor(conn, dbname)
        if not sql_db.is_initialized(cr):
            _logger.error("Database %s not initialized, you can force it with `-i base`", dbname)
            return 1
        local_vars["env"] = Environment(cr)
    try:
        if sys.stdin.isatty():
            code.interact(banner="Odoo stand-in shell: env.cr is the cursor", local=local_vars)
        else:
            exec(sys.stdin.read(), local_vars)
    finally:
        if conn is not None:
            conn.rollback()
            conn.close()
    return 0

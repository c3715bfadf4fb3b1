"""`odoo neutralize -d DB`: make a copy of a production database safe (odoo/cli/neutralize.py).

It runs data/neutralize.sql of every installed module (state installed, to upgrade or
to remove), each found on the addons paths (custom addons included), in one transaction.
Tables of modules that are not installed are never touched. Without -d, or when anything
fails (a database that does not exist or is not initialised), it logs and exits 1: "THE
DATABASE IS NOT NEUTRALIZED!". --stdout prints the SQL instead of running it: `BEGIN;`,
each script, `COMMIT;` on stdout, while the log stays on stderr as always.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from odoo import config as odoo_config
from odoo import logs, sql_db
from odoo.modules import find

_logger = logging.getLogger("odoo.cli.neutralize")


def installed_modules(cr: Any) -> list[str]:
    cr.execute(
        "SELECT name FROM ir_module_module WHERE state IN ('installed', 'to upgrade', 'to remove')"
    )
    return [row[0] for row in cr.fetchall()]


def queries(config: Any, modules: list[str]) -> list[str]:
    """The data/neutralize.sql of each module that ships one, found like get_module_resource."""
    paths = odoo_config.addons_paths(config)
    found = (find(paths, name) for name in modules)
    files = [Path(path, "data", "neutralize.sql") for path in found if path]
    return [file.read_text(encoding="utf-8").strip() for file in files if file.is_file()]


def main(args: list[str]) -> int:
    config = odoo_config.parse(args, extra=[("--stdout", "to_stdout", "on", False)])
    logs.setup(config)
    dbname = config["db_name"]
    if not dbname:
        _logger.error('Neutralize command needs a database name. Use "-d" argument')
        return 1
    logs.use_database(dbname)
    if not config["to_stdout"]:
        _logger.info("Starting %s database neutralization", dbname)
    try:
        conn = sql_db.connect(config, dbname)
        try:
            with conn, conn.cursor() as cr:
                statements = queries(config, installed_modules(cr))
                if config["to_stdout"]:
                    print(
                        "\n".join(["BEGIN;", *(q.rstrip(";") + ";" for q in statements), "COMMIT;"])
                    )
                    return 0
                for statement in statements:
                    cr.execute(statement)
        finally:
            conn.close()
        logging.getLogger("odoo.modules.neutralize").info("Neutralization finished")
    except Exception:
        _logger.critical(
            "An error occurred during the neutralization. THE DATABASE IS NOT NEUTRALIZED!",
            exc_info=True,
        )
        return 1
    return 0

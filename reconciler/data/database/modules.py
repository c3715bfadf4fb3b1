"""Reading what an ``odoo -i``/``-u`` left: the module table and the partial-update flag.

Read as the environment's own role (the caller's connection), never as an admin: the tables
belong to the workload, and a view put in place of one would run its functions with the
reader's rights.
"""

from __future__ import annotations

from typing import Any

import psycopg

from reconciler.core.modules import PARTIAL_KEY, ModuleSnapshot

__all__ = ["snapshot"]


def snapshot(conn: psycopg.Connection[Any]) -> ModuleSnapshot:
    """The module states and whether ``base.partially_updated_database`` is set; an
    uninitialised database (no module table) is an empty snapshot."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "SELECT to_regclass('ir_module_module') IS NOT NULL,"
            " to_regclass('ir_config_parameter') IS NOT NULL"
        )
        row = cur.fetchone()
        has_modules, has_params = (bool(row[0]), bool(row[1])) if row else (False, False)
        states: dict[str, str] = {}
        versions: dict[str, str] = {}
        if has_modules:
            cur.execute("SELECT name, state, coalesce(latest_version, '') FROM ir_module_module")
            for name, state, version in cur.fetchall():
                states[str(name)], versions[str(name)] = str(state), str(version)
        partial = False
        if has_params:
            cur.execute("SELECT 1 FROM ir_config_parameter WHERE key = %s", [PARTIAL_KEY])
            partial = cur.fetchone() is not None
    return ModuleSnapshot(states, partial, versions)

"""A stand-in for the Odoo 19 server of the official `odoo:19.0` image.

It honours docs/ODOO-CONTRACT.md so the product can be tested offline, and
nothing more: every behaviour here reproduces one the real server has, and the
module docstrings say which. Modules:

- config: the command line, the ODOO_* and PG* variables, $ODOO_RC
- modules: addons paths and manifests
- loading: database creation, module installation (-i) and update (-u), module by module
- module_graph, migration: the loading order, migration scripts
- sql_db, api, exceptions: connections and cursors, `env`, UserError
- server: the HTTP service (/web/health)
- neutralize, shell: the `odoo neutralize` and `odoo shell` commands
- tests: module tests with --test-enable / --test-tags (tagged, TransactionCase, the loader,
  the report and its log lines)
- cli: command dispatch, `odoo --version`
"""

SERIES = "19.0"
VERSION = "19.0"
DESCRIPTION = "Odoo Server"

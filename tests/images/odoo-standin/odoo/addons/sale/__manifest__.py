# Stand-in manifest of Odoo's `sale` module: name, version and dependencies only.
# ruff: noqa: B018 (a manifest is a bare dict literal, read with ast.literal_eval)
{
    "name": "Sales",
    "version": "19.0.1.0",
    "depends": ["mail", "payment"],
    "license": "LGPL-3",
}

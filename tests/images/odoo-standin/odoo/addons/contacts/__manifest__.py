# Stand-in manifest of Odoo's `contacts` module: name, version and dependencies only.
# ruff: noqa: B018 (a manifest is a bare dict literal, read with ast.literal_eval)
{
    "name": "Contacts",
    "version": "19.0.1.0",
    "depends": ["mail"],
    "application": True,
    "license": "LGPL-3",
}

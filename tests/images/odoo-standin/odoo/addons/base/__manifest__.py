# Stand-in manifest of Odoo's `base` module: name, version and dependencies only.
# ruff: noqa: B018 (a manifest is a bare dict literal, read with ast.literal_eval)
{
    "name": "Base",
    "version": "19.0.1.0",
    "depends": [],
    "auto_install": True,
    "license": "LGPL-3",
}

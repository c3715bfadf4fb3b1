# Stand-in manifest of Odoo's `web` module: name, version and dependencies only.
# ruff: noqa: B018 (a manifest is a bare dict literal, read with ast.literal_eval)
{
    "name": "Web",
    "version": "19.0.1.0",
    "depends": ["base"],
    "auto_install": True,
    "license": "LGPL-3",
}

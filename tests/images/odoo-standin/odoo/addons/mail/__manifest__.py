# Stand-in manifest of Odoo's `mail` module: name, version and dependencies only.
# ruff: noqa: B018 (a manifest is a bare dict literal, read with ast.literal_eval)
{
    "name": "Discuss",
    "version": "19.0.1.0",
    "depends": ["base", "web"],
    "license": "LGPL-3",
}

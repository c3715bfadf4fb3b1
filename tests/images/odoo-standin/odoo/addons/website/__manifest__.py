# Stand-in manifest of Odoo's `website` module: name, version and dependencies only.
# ruff: noqa: B018 (a manifest is a bare dict literal, read with ast.literal_eval)
{
    "name": "Website",
    "version": "19.0.1.0",
    "depends": ["web", "mail"],
    "application": True,
    "license": "LGPL-3",
}

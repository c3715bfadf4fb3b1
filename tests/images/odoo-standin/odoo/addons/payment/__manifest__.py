# Stand-in manifest of Odoo's `payment` module: name, version and dependencies only.
# ruff: noqa: B018 (a manifest is a bare dict literal, read with ast.literal_eval)
{
    "name": "Payment Engine",
    "version": "19.0.1.0",
    "depends": ["web"],
    "license": "LGPL-3",
}

# Stand-in manifest of Odoo's `delivery` module: name, version and dependencies only.
# ruff: noqa: B018 (a manifest is a bare dict literal, read with ast.literal_eval)
{
    "name": "Delivery Costs",
    "version": "19.0.1.0",
    "depends": ["sale"],
    "license": "LGPL-3",
}

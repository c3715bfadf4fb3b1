# Stand-in manifest of Odoo's `auth_oauth` module: name, version and dependencies only.
# Odoo 19 also depends on base_setup and auth_signup, which the stand-in does not have.
# ruff: noqa: B018 (a manifest is a bare dict literal, read with ast.literal_eval)
{
    "name": "OAuth2 Authentication",
    "version": "19.0.1.0",
    "depends": ["web"],
    "license": "LGPL-3",
}

# Stand-in manifest of Odoo's `auth_totp` module: name, version and dependencies only.
# Odoo 19 auto-installs it (it depends on web alone); the stand-in installs it only
# when asked, so the databases of other tests keep their module set.
# ruff: noqa: B018 (a manifest is a bare dict literal, read with ast.literal_eval)
{
    "name": "Two-Factor Authentication (TOTP)",
    "version": "19.0.1.0",
    "depends": ["web"],
    "license": "LGPL-3",
}
